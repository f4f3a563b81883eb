/**
 * Which running nodes give their slot to an upstream that cannot run (yield.ts):
 * - under a concurrency limit (`maxRunningNodes`), a `first_batch` consumer took the slot its
 *   failed upstream freed, and the upstream's retry waited for capacity for ever (the task hung:
 *   only a START no worker accepted made consumers yield);
 * - a running dependent that does not wait for the upstream's data (a plain `fan_in: any` child)
 *   was cancelled and run again when that upstream's START was not accepted.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryLogger, type RoleHandler } from 'flowkit'
import { startRuntime } from '../helpers/runtime.ts'

/** Streams 3 batches; its first attempt fails at the second. */
const flaky: RoleHandler = {
  async *iterBatches() {
    for (let i = 0; i < 3; i++) yield { batch_uid: `b${i}`, payload: { items: [i, i] } }
  },
  async processBatch(batch, ctx) {
    if (ctx.attemptEpoch === 1 && batch.batch_uid === 'b1') throw new Error('transient upstream failure')
    return { metrics: { items: 2 }, meta: { items: batch.payload['items'] } }
  },
}
const count: RoleHandler = {
  async processBatch(batch) {
    // What pull.from_artifacts hands over: the upstream batch's meta.
    const meta = batch.payload['meta'] as { items?: unknown[] } | undefined
    return { metrics: { items: meta?.items?.length ?? 0 } }
  },
}

for (const limit of [1, 2]) {
  test(`maxRunningNodes ${limit}: first_batch consumers holding every slot yield to their upstream's retry`, async () => {
    const log = new MemoryLogger()
    const rt = await startRuntime({ logger: log, handlers: { flaky, count }, worker: { concurrency: 8 }, coordinator: { maxRunningNodes: limit } })
    try {
      const consumers = Array.from({ length: limit }, (_, i) => ({
        node_id: `c${i}`,
        type: 'count',
        depends_on: ['u'],
        io: { start_when: 'first_batch', input_inline: { input_adapter: 'pull.from_artifacts', input_args: { from_nodes: ['u'], poll_ms: 10 } } },
      }))
      const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'u', type: 'flaky', retry_policy: { max: 3, backoff_sec: 0.05 } }, ...consumers] } })
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })
      const u = t.nodes.find((n) => n.node_id === 'u')
      assert.equal(t.status, 'finished', `task ${t.status}: ${t.nodes.map((n) => `${n.node_id}=${n.status}@${n.attempt_epoch}`).join(' ')}`)
      assert.equal(u?.attempt_epoch, 2)
      assert.deepEqual(u?.stats, { items: 6 })
      for (const c of consumers) assert.deepEqual(t.nodes.find((n) => n.node_id === c.node_id)?.stats['items'], 6, `${c.node_id} read every item once`)
      assert.ok(log.records.some((r) => r.event === 'node.yielded' && r.fields['upstream'] === 'u'))
    } finally {
      await rt.stop()
    }
  })
}

test('a running fan_in any child that does not read the waiting parent keeps running when that parent gets no worker', async () => {
  const log = new MemoryLogger()
  let cRuns = 0
  let release: () => void = () => {}
  const held = new Promise<void>((r) => {
    release = r
  })
  const fast: RoleHandler = { async processBatch() { return {} } }
  const slow: RoleHandler = {
    async processBatch(_b, ctx) {
      cRuns++
      await ctx.sleep(1500)
      return {}
    },
  }
  // `busy` holds the only slot of the worker serving `lb`, so b's START is not accepted in time.
  const lb: RoleHandler = {
    async processBatch(_b, ctx) {
      if (ctx.nodeId === 'hold') await held
      return {}
    },
  }
  const rt = await startRuntime({ logger: log, handlers: { fast, slow }, worker: { concurrency: 4 }, coordinator: { acceptTimeoutSec: 0.3 } })
  await rt.addWorker({ lb }, { concurrency: 1 })
  try {
    const id = await rt.coordinator.createTask({
      graph: {
        nodes: [
          { node_id: 'hold', type: 'lb' },
          { node_id: 'a', type: 'fast' },
          { node_id: 'x', type: 'fast', depends_on: ['a'] },
          { node_id: 'b', type: 'lb', depends_on: ['x'] },
          { node_id: 'c', type: 'slow', depends_on: ['a', 'b'], fan_in: 'any' },
        ],
      },
    })
    // (Its worker busy with `hold`, b's start waits in that worker's queue: `node.start_queued`.)
    const waited = (): boolean => log.records.some((r) => (r.event === 'node.not_accepted' || r.event === 'node.start_queued') && r.fields['node_id'] === 'b')
    const deadline = Date.now() + 10_000
    while (!waited() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
    assert.ok(waited(), "b's START was not accepted in time")
    release()
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })
    assert.equal(t.status, 'finished')
    assert.equal(t.nodes.find((n) => n.node_id === 'c')?.attempt_epoch, 1, 'c ran once')
    assert.equal(cRuns, 1)
    assert.ok(!log.records.some((r) => r.event === 'node.yielded'), 'nothing yielded')
  } finally {
    release()
    await rt.stop()
  }
})

/** One batch of two items (a source). */
const source: RoleHandler = {
  async processBatch() {
    return { metrics: { items: 2 }, meta: { items: [1, 2] } }
  },
}
const pullFrom = (from: string) => ({ input_adapter: 'pull.from_artifacts', input_args: { from_nodes: [from], poll_ms: 10 } })

test('a node that pulls another one without depending on it yields the only worker slot to it (a fuzzer found it held the slot for ever)', async () => {
  const log = new MemoryLogger()
  const rt = await startRuntime({ logger: log, handlers: { src: source, count }, worker: { concurrency: 1 }, coordinator: { acceptTimeoutSec: 0.3 } })
  try {
    // x comes first and takes the slot; it waits for y's data, y waits for a slot.
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'x', type: 'count', io: { input_inline: pullFrom('y') } }, { node_id: 'y', type: 'src' }] } })
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })
    assert.equal(t.status, 'finished', `task ${t.status}: ${t.nodes.map((n) => `${n.node_id}=${n.status}@${n.attempt_epoch}`).join(' ')}`)
    assert.deepEqual(t.nodes.find((n) => n.node_id === 'x')?.stats['items'], 2, "x read y's batch")
    assert.ok(log.records.some((r) => r.event === 'node.yielded' && r.fields['upstream'] === 'y'))
  } finally {
    await rt.stop()
  }
})

test('maxRunningNodes 1: a puller accepted after its upstream started waiting for capacity yields to it (it was dispatched, not yet accepted, when the check ran)', async () => {
  const rt = await startRuntime({ handlers: { src: source, count }, worker: { concurrency: 8 }, coordinator: { maxRunningNodes: 1 } })
  try {
    // c (a function) finishes at once: d (fan_in any) starts and pulls b, which waits behind a for the one slot.
    const id = await rt.coordinator.createTask({
      graph: {
        nodes: [
          { node_id: 'a', type: 'src' },
          { node_id: 'c', type: 'coordinator_fn', io: { fn: 'noop' } },
          { node_id: 'd', type: 'count', depends_on: ['c', 'b'], fan_in: 'any', io: { input_inline: pullFrom('b') } },
          { node_id: 'b', type: 'src', depends_on: ['a'] },
        ],
      },
    })
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })
    assert.equal(t.status, 'finished', `task ${t.status}: ${t.nodes.map((n) => `${n.node_id}=${n.status}@${n.attempt_epoch}`).join(' ')}`)
    assert.deepEqual(t.nodes.find((n) => n.node_id === 'd')?.stats['items'], 2, "d read b's batch")
  } finally {
    await rt.stop()
  }
})

test('a puller of a node that waits behind a plain parent yields the only worker slot to that parent (it held it for ever)', async () => {
  const log = new MemoryLogger()
  const rt = await startRuntime({ logger: log, handlers: { src: source, count }, worker: { concurrency: 1 }, coordinator: { acceptTimeoutSec: 0.3 } })
  try {
    // x comes first and takes the slot; it waits for b's data, b waits for a, a waits for a slot.
    const id = await rt.coordinator.createTask({
      graph: {
        nodes: [
          { node_id: 'x', type: 'count', io: { input_inline: pullFrom('b') } },
          { node_id: 'a', type: 'src' },
          { node_id: 'b', type: 'src', depends_on: ['a'] },
        ],
      },
    })
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })
    assert.equal(t.status, 'finished', `task ${t.status}: ${t.nodes.map((n) => `${n.node_id}=${n.status}@${n.attempt_epoch}`).join(' ')}`)
    assert.deepEqual(t.nodes.find((n) => n.node_id === 'x')?.stats['items'], 2, "x read b's batch")
    assert.ok(log.records.some((r) => r.event === 'node.yielded' && r.fields['upstream'] === 'a'), 'x yielded to a')
  } finally {
    await rt.stop()
  }
})

test("maxRunningNodes 1: a puller of a node waiting behind a plain parent's retry yields the one slot to that retry", async () => {
  const log = new MemoryLogger()
  const rt = await startRuntime({ logger: log, handlers: { flaky, src: source, count }, worker: { concurrency: 8 }, coordinator: { maxRunningNodes: 1 } })
  try {
    // a fails at its second batch and waits for its retry; x (pulling b, which depends on a) takes
    // the one slot a freed; the retry waits for capacity behind x.
    const id = await rt.coordinator.createTask({
      graph: {
        nodes: [
          { node_id: 'a', type: 'flaky', retry_policy: { max: 3, backoff_sec: 0.05 } },
          { node_id: 'x', type: 'count', io: { input_inline: pullFrom('b') } },
          { node_id: 'b', type: 'src', depends_on: ['a'] },
        ],
      },
    })
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })
    assert.equal(t.status, 'finished', `task ${t.status}: ${t.nodes.map((n) => `${n.node_id}=${n.status}@${n.attempt_epoch}`).join(' ')}`)
    assert.equal(t.nodes.find((n) => n.node_id === 'a')?.attempt_epoch, 2)
    assert.deepEqual(t.nodes.find((n) => n.node_id === 'x')?.stats['items'], 2, "x read b's batch")
  } finally {
    await rt.stop()
  }
})
