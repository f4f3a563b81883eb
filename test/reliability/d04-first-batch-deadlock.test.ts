/**
 * Defect 4 (issue 7): a `first_batch` consumer held the only worker slot while it waited for its
 * upstream, whose retry needed that same slot: nothing moved again and nothing said why. Now a
 * start no worker accepts in time is logged (`node.not_accepted`, or `node.start_queued` when the
 * workers' slots are all taken, as here) and the streaming consumers downstream of it yield their
 * slots (cancelled and queued again, no retry used; `node.yielded`) until it runs.
 *
 * With the default timings they yield at the upstream's steering check (`steerAfterSec`, 5 s),
 * not its accept timeout (30 s): the differential fuzz found a 3-node streaming graph on one slot
 * taking 60 s (two such waits), 10 s now.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryLogger, TestClock, type RoleHandler } from 'flowkit'
import { startRuntime, type RuntimeOptions } from '../helpers/runtime.ts'

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
const GRAPH = {
  nodes: [
    { node_id: 'u', type: 'up', retry_policy: { max: 3, backoff_sec: 0 } },
    {
      node_id: 'd',
      type: 'down',
      depends_on: ['u'],
      io: { start_when: 'first_batch', input_inline: { input_adapter: 'pull.from_artifacts', input_args: { from_nodes: ['u'], poll_ms: 10 } } },
    },
  ],
}

/** One worker of one slot, the graph above; `wait` until the task has ended; the checks every variant makes. */
async function onOneSlot(options: Partial<RuntimeOptions>, wait: (rt: Awaited<ReturnType<typeof startRuntime>>, id: string) => Promise<void>): Promise<MemoryLogger> {
  const log = new MemoryLogger()
  const rt = await startRuntime({ ...options, logger: log, handlers: { up, down }, worker: { concurrency: 1, ...options.worker } })
  try {
    const id = await rt.coordinator.createTask({ graph: GRAPH })
    await wait(rt, id)
    const t = await rt.coordinator.getTask(id)
    const u = t?.nodes.find((n) => n.node_id === 'u')
    const d = t?.nodes.find((n) => n.node_id === 'd')
    assert.equal(t?.status, 'finished', `task ${t?.status}: u=${u?.status}@${u?.attempt_epoch} d=${d?.status}@${d?.attempt_epoch}`)
    assert.equal(u?.attempt_epoch, 2)
    assert.deepEqual(u?.stats, { items: 6 })
    assert.ok(log.records.some((r) => r.event === 'node.yielded' && r.fields['node_id'] === 'd'), 'the consumer yielded, and the log says why')
    return log
  } finally {
    await rt.stop()
  }
}

test('defect 4: a first_batch consumer holding the only slot yields it to its upstream retry', async () => {
  const log = await onOneSlot({ coordinator: { acceptTimeoutSec: 0.5, defaultBackoffSec: 0 } }, async (rt, id) => {
    await rt.coordinator.waitForTask(id, { timeoutMs: 30_000 })
  })
  // Its START waited behind the consumer that held the worker's only slot: queued (the worker
  // is full), or not accepted (a type judged alone) — either way the consumer yields.
  assert.ok(log.records.some((r) => (r.event === 'node.start_queued' || r.event === 'node.not_accepted') && r.fields['node_id'] === 'u'))
})

test('with the default timings the consumer yields at the steering check (5 s), long before the accept timeout (30 s)', async () => {
  const clock = new TestClock()
  const log = await onOneSlot({ clock, worker: { leaseTtlSec: 3600, hbIntervalSec: 600 }, coordinator: { defaultBackoffSec: 0 } }, async (rt, id) => {
    const start = clock.now()
    while (clock.now() - start < 20_000) {
      await clock.advance(250)
      const status = (await rt.coordinator.getTask(id))?.status
      if (status === 'finished' || status === 'failed') return
    }
  })
  assert.equal(log.records.filter((r) => r.event === 'node.not_accepted').length, 0)
})
