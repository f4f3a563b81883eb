/**
 * Checkpoints (issue 8): a handler saves its progress with `ctx.checkpoint(state)`; a retried
 * attempt reads it with `ctx.lastCheckpoint()` and resumes there instead of starting over.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { RoleHandler } from 'flowkit'
import { startRuntime } from '../helpers/runtime.ts'

test('a retried attempt resumes from the last checkpoint of the failed one', async () => {
  const processed: string[] = []
  const handler: RoleHandler = {
    async *iterBatches() {
      for (let i = 0; i < 6; i++) yield { batch_uid: `b${i}`, payload: { i } }
    },
    async processBatch(batch, ctx) {
      const i = batch.payload['i'] as number
      const cp = (await ctx.lastCheckpoint())?.state as { done?: number } | undefined
      // Already done by an earlier attempt: skipped, with the same metrics (the newest report of a
      // batch replaces the earlier one, so `{}` would take the batch out of the node's stats).
      if (cp?.done !== undefined && i <= cp.done) return { metrics: { rows: 1 } }
      processed.push(`${ctx.attemptEpoch}:${i}`)
      if (ctx.attemptEpoch === 1 && i === 3) throw new Error('transient: connection reset')
      await ctx.checkpoint({ done: i })
      return { metrics: { rows: 1 } }
    },
  }
  const rt = await startRuntime({ handlers: { job: handler } })
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'a', type: 'job', retry_policy: { max: 2, backoff_sec: 0 } }] } })
    const t = await rt.coordinator.waitForTask(id)
    assert.equal(t.status, 'finished')
    assert.equal(t.nodes[0]?.attempt_epoch, 2)
    assert.deepEqual(t.nodes[0]?.stats, { rows: 6 }, 'exact stats across the resumed attempt')
    assert.deepEqual(processed, ['1:0', '1:1', '1:2', '1:3', '2:3', '2:4', '2:5'], 'attempt 2 started where attempt 1 stopped')
    assert.deepEqual(await rt.store.getCheckpoint(id, 'a'), { attempt_epoch: 2, state: { done: 5 }, saved_at_ms: (await rt.store.getCheckpoint(id, 'a'))?.saved_at_ms })
  } finally {
    await rt.stop()
  }
})
