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

test('a resumed attempt that skips the batches an earlier attempt did returns their output (ctx.earlierPartial): downstream readers get every batch\'s rows once', async () => {
  const earlier: Array<[string, number, unknown]> = []
  const rows: string[] = []
  const crawl: RoleHandler = {
    async *iterBatches() {
      for (let i = 0; i < 5; i++) yield { batch_uid: `page-${i}`, payload: { i } }
    },
    async processBatch(batch, ctx) {
      const i = batch.payload['i'] as number
      const uid = batch.batch_uid as string
      const cp = (await ctx.lastCheckpoint())?.state as { done?: number } | undefined
      const prev = await ctx.earlierPartial(uid)
      earlier.push([uid, ctx.attemptEpoch, prev])
      if (cp?.done !== undefined && i <= cp.done && prev !== null) return { metrics: { pages: 1 }, meta: prev.meta }
      if (ctx.attemptEpoch === 1 && i === 3) throw new Error('transient: API timeout')
      await ctx.checkpoint({ done: i })
      return { metrics: { pages: 1 }, meta: { rows: [`${i}a`, `${i}b`] } }
    },
  }
  const load: RoleHandler = {
    async processBatch(batch) {
      rows.push(...(batch.payload['items'] as string[]))
      return { metrics: { rows: (batch.payload['items'] as string[]).length } }
    },
  }
  const rt = await startRuntime({ handlers: { crawl, load }, worker: { concurrency: 2 } })
  try {
    const id = await rt.coordinator.createTask({
      graph: {
        nodes: [
          { node_id: 'crawl', type: 'crawl', retry_policy: { max: 2, backoff_sec: 0 } },
          { node_id: 'load', type: 'load', depends_on: ['crawl'], io: { input_inline: { input_adapter: 'pull.from_artifacts.rechunk:size', input_args: { from_nodes: ['crawl'], size: 3, meta_list_key: 'rows' } } } },
        ],
      },
    })
    const t = await rt.coordinator.waitForTask(id)
    assert.equal(t.status, 'finished')
    assert.deepEqual(rows, ['0a', '0b', '1a', '1b', '2a', '2b', '3a', '3b', '4a', '4b'])
    assert.deepEqual(t.nodes.map((n) => n.stats), [{ pages: 5 }, { rows: 10 }])
    // Attempt 1 had no earlier partials; attempt 2 had attempt 1's for the pages it did, none for the page it failed on.
    assert.deepEqual(
      earlier.map(([uid, epoch, prev]) => [uid, epoch, prev === null ? null : (prev as { attemptEpoch: number }).attemptEpoch]),
      [['page-0', 1, null], ['page-1', 1, null], ['page-2', 1, null], ['page-3', 1, null], ['page-0', 2, 1], ['page-1', 2, 1], ['page-2', 2, 1], ['page-3', 2, null], ['page-4', 2, null]],
    )
  } finally {
    await rt.stop()
  }
})
