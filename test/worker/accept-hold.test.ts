/**
 * A run's TASK_ACCEPTED is held a moment for the run's next event (StatusEmitter hold): a run
 * whose first batch ends soon reports both in one produce, and its coordinator applies and writes
 * them as one journal entry; a run whose first batch takes longer still reports its acceptance
 * on its own, within the hold time, while the batch runs.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { type BusRecord, MemoryBus, MemoryStore, type RoleHandler, Worker } from 'flowkit'
import { startRuntime } from '../helpers/runtime.ts'
import { gate } from '../helpers/gate.ts'
import { waitFor } from '../helpers/wait.ts'

/** A memory bus that records the status kinds of each produce call on `status.*` topics. */
class ProduceSpy extends MemoryBus {
  readonly produced: string[][] = []
  override async produce(records: BusRecord[]): Promise<void> {
    const status = records.filter((r) => r.topic.startsWith('status.'))
    if (status.length > 0) this.produced.push(status.map((r) => (JSON.parse(r.value) as { payload: { kind: string } }).payload.kind))
    return super.produce(records)
  }
}

const oneBatch: RoleHandler = {
  async processBatch() {
    return { metrics: { count: 1 } }
  },
}

test('a run whose first batch ends soon sends TASK_ACCEPTED with its BATCH_OK in one produce; the coordinator writes them as one entry', async () => {
  const bus = new ProduceSpy()
  const store = new MemoryStore()
  // "Soon" is within statusHoldMs. The default, 5 ms, is a loaded machine's scheduling jitter: a
  // hold of a second makes the pairing certain here (the next test shows the hold running out).
  const rt = await startRuntime({ bus, store, handlers: { a: oneBatch }, worker: { statusHoldMs: 1000 } })
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'a' }] } })
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10_000 })
    assert.equal(t.status, 'finished')
    assert.deepEqual(bus.produced.flat(), ['TASK_ACCEPTED', 'BATCH_OK', 'TASK_DONE'])
    assert.deepEqual(bus.produced[0], ['TASK_ACCEPTED', 'BATCH_OK'], 'the acceptance went out with the first BATCH_OK')
    // No journal entry has the node accepted without its first batch.
    const entries = await store.readJournal([id], 0)
    const accepted = entries.find((e) => e.nodes.some((n) => n.node_id === 'n' && n.accepted_at_ms !== null))
    assert.ok(accepted !== undefined)
    assert.ok(accepted.batches?.some(([node, uid]) => node === 'n' && uid === 'b0'), 'the entry that records the acceptance records the batch too')
  } finally {
    await rt.stop()
  }
})

test('statusHoldMs: 0 sends the acceptance at once; more than 1000 is refused', async () => {
  const bus = new ProduceSpy()
  const rt = await startRuntime({ bus, handlers: { a: oneBatch }, worker: { statusHoldMs: 0 } })
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'a' }] } })
    assert.equal((await rt.coordinator.waitForTask(id, { timeoutMs: 10_000 })).status, 'finished')
    assert.deepEqual(bus.produced[0], ['TASK_ACCEPTED'], 'nothing held: the acceptance went out alone')
  } finally {
    await rt.stop()
  }
  assert.throws(() => new Worker({ bus: new MemoryBus(), store: new MemoryStore(), handlers: { a: oneBatch }, config: { statusHoldMs: 1001 } }), /statusHoldMs must be at most 1000/)
  assert.throws(() => new Worker({ bus: new MemoryBus(), store: new MemoryStore(), handlers: { a: oneBatch }, config: { statusHoldMs: -1 } }), /statusHoldMs/)
})

test('a run whose first batch takes longer reports its acceptance on its own while the batch runs', async () => {
  const bus = new ProduceSpy()
  const slow = gate()
  const handler: RoleHandler = {
    async processBatch() {
      await slow.wait()
      return { metrics: { count: 1 } }
    },
  }
  const rt = await startRuntime({ bus, handlers: { a: handler } })
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'a' }] } })
    await waitFor(async () => (await rt.coordinator.getTask(id))?.nodes.find((n) => n.node_id === 'n')?.accepted_at_ms != null, {
      timeoutMs: 10_000,
    })
    assert.deepEqual(bus.produced, [['TASK_ACCEPTED']], 'accepted while its batch is still running')
    slow.open()
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10_000 })
    assert.equal(t.status, 'finished')
    assert.deepEqual(bus.produced.flat(), ['TASK_ACCEPTED', 'BATCH_OK', 'TASK_DONE'])
  } finally {
    slow.open()
    await rt.stop()
  }
})

test('a run that fails before its first batch reports TASK_ACCEPTED then TASK_FAILED, in order', async () => {
  const bus = new ProduceSpy()
  const failing: RoleHandler = {
    async processBatch() {
      throw Object.assign(new Error('boom'), { permanent: true })
    },
    classifyError: () => ({ reasonCode: 'boom', permanent: true }),
  }
  const rt = await startRuntime({ bus, handlers: { a: failing } })
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'a' }] } })
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10_000 })
    assert.equal(t.status, 'failed')
    assert.deepEqual(bus.produced.flat(), ['TASK_ACCEPTED', 'BATCH_FAILED', 'TASK_FAILED'])
  } finally {
    await rt.stop()
  }
})
