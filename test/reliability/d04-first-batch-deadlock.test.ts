/**
 * Defect 4 (issue 7): a `first_batch` consumer held the only worker slot while it waited for its
 * upstream, whose retry needed that same slot: nothing moved again and nothing said why. Now a
 * start no worker accepts in time is logged (`node.not_accepted`, or `node.start_queued` when the
 * workers' slots are all taken, as here) and the streaming consumers downstream of it yield their
 * slots (cancelled and queued again, no retry used; `node.yielded`) until it runs.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryLogger, type RoleHandler } from 'flowkit'
import { startRuntime } from '../helpers/runtime.ts'

test('defect 4: a first_batch consumer holding the only slot yields it to its upstream retry', async () => {
  const log = new MemoryLogger()
  const up: RoleHandler = {
    async *iterBatches() {
      for (let i = 0; i < 3; i++) yield { batch_uid: `b${i}`, payload: { items: [i, i] } }
    },
    async processBatch(batch, ctx) {
      // The first attempt fails after its first batch: the consumer's start, queued at the worker
      // since that batch, takes the freed slot before the retry's start arrives.
      if (ctx.attemptEpoch === 1 && batch.batch_uid === 'b1') throw new Error('transient upstream failure')
      return { metrics: { items: 2 }, meta: { items: batch.payload['items'] } }
    },
  }
  const down: RoleHandler = {
    async processBatch(batch) {
      return { metrics: { items: (batch.payload['items'] as unknown[] | undefined)?.length ?? 0 } }
    },
  }
  const rt = await startRuntime({
    logger: log,
    handlers: { up, down },
    worker: { concurrency: 1 },
    coordinator: { acceptTimeoutSec: 0.5, defaultBackoffSec: 0 },
  })
  try {
    const id = await rt.coordinator.createTask({
      graph: {
        nodes: [
          { node_id: 'u', type: 'up', retry_policy: { max: 3, backoff_sec: 0 } },
          {
            node_id: 'd',
            type: 'down',
            depends_on: ['u'],
            io: { start_when: 'first_batch', input_inline: { input_adapter: 'pull.from_artifacts', input_args: { from_nodes: ['u'], poll_ms: 10 } } },
          },
        ],
      },
    })
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 30_000 })
    const u = t.nodes.find((n) => n.node_id === 'u')!
    const d = t.nodes.find((n) => n.node_id === 'd')!
    assert.equal(t.status, 'finished', `task ${t.status}: u=${u.status}@${u.attempt_epoch} d=${d.status}@${d.attempt_epoch}`)
    assert.equal(u.attempt_epoch, 2)
    assert.deepEqual(u.stats, { items: 6 })
    assert.ok(log.records.some((r) => r.event === 'node.yielded' && r.fields['node_id'] === 'd'), 'the consumer yielded, and the log says why')
    // Its START waited behind the consumer that held the worker's only slot: queued (the worker
    // is full), or not accepted (a type judged alone) — either way the consumer yields.
    assert.ok(log.records.some((r) => (r.event === 'node.start_queued' || r.event === 'node.not_accepted') && r.fields['node_id'] === 'u'))
  } finally {
    await rt.stop()
  }
})
