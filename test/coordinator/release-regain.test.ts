/**
 * A coordinator whose journal writes are slow while its partitions move away and back (an audit
 * of several coordinators on one bus and store): the release of the lost partitions waits for the
 * write in flight, and meanwhile
 *   - the partition came back after another coordinator had claimed and moved the task on: the
 *     release kept its old runtime (the acquire skipped the task, held in memory), which took the
 *     new owner's reports for stale and dropped them (task finished with a node's stats empty);
 *   - a report was applied to the runtime after the release's write: the runtime was dropped with
 *     it unwritten, and its status batch acknowledged (the batch's metrics lost).
 * Both end with exact metrics now: the old runtime goes (the acquire reloads the task as the store
 * has it), and a runtime dropped with unwritten changes has its status batches delivered again.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Coordinator, MemoryBus, MemoryLogger, MemoryStore, type RoleHandler, type Store, Worker } from 'flowkit'
import { type Gate, gate } from '../helpers/gate.ts'
import { overrideStore } from '../helpers/store-proxy.ts'
import { idOn } from '../helpers/task-ids.ts'
import { waitFor } from '../helpers/wait.ts'

const CFG = { schedulerTickSec: 0.2, sweepIntervalSec: 2, discoveryWindowSec: 0.5 }

/** A store whose journal appends wait while `hold` is set (a slow store); `waiting` counts those held. */
function slowJournal(store: MemoryStore): { store: Store; hold: Gate | null; waiting: number } {
  const s = { store: store as Store, hold: null as Gate | null, waiting: 0 }
  s.store = overrideStore(store, {
    appendJournal: (f) => async (...args: unknown[]) => {
      const h = s.hold
      if (h !== null) {
        s.waiting++
        await h.wait()
        s.waiting--
      }
      return f(...args)
    },
  })
  return s
}

/** Two batches per node, each counted once; node `a` (and `b`) wait for their gates. */
function handler(gates: Record<string, Gate>): RoleHandler {
  return {
    async *iterBatches() {
      yield { batch_uid: 'b0', payload: {} }
      yield { batch_uid: 'b1', payload: {} }
    },
    async processBatch(_b, ctx) {
      await gates[ctx.nodeId]?.wait(ctx.signal)
      return { metrics: { count: 1 } }
    },
  }
}

async function twoCoordinators(store: Store, plain: MemoryStore, bus: MemoryBus, logger = new MemoryLogger()): Promise<{ a: Coordinator; b: Coordinator }> {
  const a = new Coordinator({ bus, store, logger, config: CFG })
  const b = new Coordinator({ bus, store: plain, config: CFG })
  await a.start()
  await b.start()
  await waitFor(() => a.ownership.partitions.join() === '0,1,2,3,4,5' && b.ownership.partitions.join() === '6,7,8,9,10,11', { message: 'partitions never split 0-5 / 6-11' })
  return { a, b }
}

const claimedBy = async (store: Store, taskId: string, claims: number): Promise<boolean> => (await store.readJournal([taskId])).filter((e) => e.events.some((x) => x.startsWith('owner '))).length >= claims

test('a partition given back while its release waits on a slow write: the task is loaded again as the new owner left it, not kept stale', async () => {
  const bus = new MemoryBus()
  const plain = new MemoryStore()
  const slow = slowJournal(plain)
  const gates = { a: gate(), b: gate() }
  const worker = new Worker({ bus, store: plain, handlers: { step: handler(gates) }, config: { concurrency: 8, leaseTtlSec: 10, hbIntervalSec: 3 } })
  const logger = new MemoryLogger()
  const { a, b } = await twoCoordinators(slow.store, plain, bus, logger)
  await worker.start()
  let c: Coordinator | null = null
  try {
    const n = a.ownership.of
    const T = idOn('regain', 4, n)
    await a.createTask({ id: T, graph: { nodes: [{ node_id: 'a', type: 'step' }, { node_id: 'b', type: 'step', depends_on: ['a'] }] } })
    await waitFor(async () => (await plain.getTask(T))?.nodes['a']?.accepted_at_ms != null, { message: 'a never accepted' })
    // The first coordinator's writes hang: a flush of another task is in flight.
    slow.hold = gate()
    await a.createTask({ id: idOn('other', 0, n), graph: { nodes: [{ node_id: 'x', type: 'step' }] } })
    await waitFor(() => slow.waiting > 0, { message: 'no write held' })
    // A third coordinator joins: partition 4 goes to the second, which claims T; node a ends, b starts.
    c = new Coordinator({ bus, store: plain, config: CFG })
    await c.start()
    await waitFor(() => b.ownsTask(T), { message: 'T never moved' })
    await waitFor(() => claimedBy(plain, T, 1), { message: 'T never claimed' })
    gates.a.open()
    await waitFor(async () => (await plain.getTask(T))?.nodes['b']?.accepted_at_ms != null, { message: 'b never accepted under the new owner' })
    // The third leaves: partition 4 comes back to the first, whose release still waits.
    await c.stop()
    c = null
    await waitFor(() => a.ownsTask(T), { message: 'T never came back' })
    const released = () => logger.records.filter((r) => r.event === 'coordinator.released').length
    const before = released()
    const held = slow.hold
    slow.hold = null
    held.open()
    // b's batches once the first coordinator's release is over (it held the old runtime then).
    await waitFor(() => released() > before, { message: 'the release never ended' })
    gates.b.open()
    const t = await a.waitForTask(T, { timeoutMs: 30_000 })
    assert.equal(t.status, 'finished')
    assert.deepEqual(
      t.nodes.map((x) => [x.node_id, x.status, x.stats]),
      [
        ['a', 'finished', { count: 2 }],
        ['b', 'finished', { count: 2 }],
      ],
      'every batch of b counted (its reports were taken for stale)',
    )
  } finally {
    slow.hold?.open()
    gates.a.open()
    gates.b.open()
    await worker.stop()
    await c?.stop()
    await a.stop()
    await b.stop()
  }
})

test('a report applied after the release wrote, before the task left memory, is delivered again to the next owner (it was acknowledged unwritten)', async () => {
  const bus = new MemoryBus()
  const plain = new MemoryStore()
  const slow = slowJournal(plain)
  const gates = { a: gate() }
  const worker = new Worker({ bus, store: plain, handlers: { step: handler(gates) }, config: { concurrency: 8, leaseTtlSec: 30, hbIntervalSec: 10 } })
  const { a, b } = await twoCoordinators(slow.store, plain, bus)
  await worker.start()
  const extra: Coordinator[] = []
  try {
    const n = a.ownership.of
    const T = idOn('dirty', 4, n)
    await a.createTask({ id: T, graph: { nodes: [{ node_id: 'a', type: 'step' }] } })
    await waitFor(async () => (await plain.getTask(T))?.nodes['a']?.accepted_at_ms != null, { message: 'a never accepted' })
    slow.hold = gate()
    await a.createTask({ id: idOn('other', 0, n), graph: { nodes: [{ node_id: 'x', type: 'step' }] } })
    await waitFor(() => slow.waiting > 0, { message: 'no write held' })
    // Partition 4 goes away (its release waits for the write) and comes back.
    const c1 = new Coordinator({ bus, store: plain, config: CFG })
    extra.push(c1)
    await c1.start()
    await waitFor(() => !a.ownsTask(T), { message: 'T never moved' })
    await waitFor(() => claimedBy(plain, T, 1), { message: 'T never claimed by the third coordinator' })
    await c1.stop()
    extra.pop()
    await waitFor(() => a.ownsTask(T), { message: 'T never came back' })
    // Node a reports: the first report is applied in memory (its write waits).
    gates.a.open()
    await waitFor(async () => (await a.getTask(T))?.nodes[0]?.stats['count'] === 1, { message: 'no report applied in memory' })
    // The partition goes away again, then the store answers.
    const c2 = new Coordinator({ bus, store: plain, config: CFG })
    extra.push(c2)
    await c2.start()
    await waitFor(() => !a.ownsTask(T), { message: 'T never moved again' })
    const held = slow.hold
    slow.hold = null
    held.open()
    const t = await b.waitForTask(T, { timeoutMs: 30_000 })
    assert.equal(t.status, 'finished')
    assert.deepEqual(t.nodes[0]?.stats, { count: 2 }, 'both batches counted')
  } finally {
    slow.hold?.open()
    gates.a.open()
    await worker.stop()
    for (const c of extra) await c.stop()
    await a.stop()
    await b.stop()
  }
})
