/**
 * Several coordinators sharing the load (docs/scaling.md): tasks are owned by partition of the
 * owners' topic; submission, cancel, reads and watch work from any coordinator; hand-over on
 * kill and join loses nothing and applies nothing twice; a stale owner's writes are refused.
 * Runs on the memory runtime and again on real Kafka + the MongoDB-protocol server.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { Coordinator, type Bus, type RoleHandler, type SubscribeOptions, type Subscription, type TaskView } from 'flowkit'
import { startRuntime, type Runtime } from '../helpers/runtime.ts'
import { gate } from '../helpers/gate.ts'
import { idOn } from '../helpers/task-ids.ts'
import { waitFor } from '../helpers/wait.ts'

const CHAIN = ['a', 'b', 'c', 'd', 'e']

function chainGraph(): { nodes: Array<Record<string, unknown>> } {
  return { nodes: CHAIN.map((id, i) => ({ node_id: id, type: 'step', ...(i > 0 ? { depends_on: [CHAIN[i - 1]] } : {}) })) }
}

/** Two batches per node, each counting 1; records every (task, node, epoch, batch) it processes. */
function countingHandler(seen: Map<string, number>, hold?: { wait(signal?: AbortSignal): Promise<void> }): RoleHandler {
  return {
    async *iterBatches() {
      yield { batch_uid: 'b0', payload: {} }
      yield { batch_uid: 'b1', payload: {} }
    },
    async processBatch(batch, ctx) {
      const key = `${ctx.taskId}/${ctx.nodeId}/${ctx.attemptEpoch}/${batch.batch_uid}`
      seen.set(key, (seen.get(key) ?? 0) + 1)
      if (hold !== undefined) await hold.wait(ctx.signal)
      return { metrics: { count: 1 } }
    },
  }
}

/** Per task: after an `owner` entry by X, every later entry until the next claim is X's. */
async function assertNoFencedWrites(rt: Runtime, ids: readonly string[]): Promise<void> {
  const entries = await rt.store.readJournal(ids)
  const byTask = new Map<string, typeof entries>()
  for (const e of entries) byTask.set(e.task_id, [...(byTask.get(e.task_id) ?? []), e])
  for (const [id, list] of byTask) {
    list.sort((x, y) => x.seq - y.seq)
    let owner: string | null = null
    for (const e of list) {
      if (e.events.some((ev) => ev.startsWith('owner '))) owner = e.writer
      else if (owner !== null) assert.equal(e.writer, owner, `task ${id}: entry ${e.seq} by ${e.writer} after ${owner} claimed the task`)
    }
  }
}

function assertExact(t: TaskView): void {
  assert.equal(t.status, 'finished', `task ${t.id} ${t.status}`)
  for (const n of t.nodes) assert.deepEqual(n.stats, { count: 2 }, `task ${t.id} node ${n.node_id}`)
}

function newCoordinator(rt: Runtime, bus: Bus = rt.bus): Coordinator {
  return new Coordinator({ bus, store: rt.store, config: { ...rt.coordinatorBase, discoveryWindowSec: 0.5 } })
}

/**
 * A bus whose owners'-topic assignments can be frozen for one coordinator (it goes on believing
 * it owns what it owned) and whose membership can be reported unconfirmed: a paused process as it
 * wakes up, before its consumer learns it was replaced.
 */
function zombieBus(bus: Bus): { bus: Bus; freeze(): void; thaw(): void; unconfirmed(on: boolean): void } {
  let frozen = false
  let stale = false
  let last: { args: Parameters<NonNullable<SubscribeOptions['onAssignment']>> } | null = null
  let deliver: NonNullable<SubscribeOptions['onAssignment']> | null = null
  const wrapped: Bus = {
    ensureTopics: (t) => bus.ensureTopics(t),
    partitionCount: (t) => bus.partitionCount(t),
    produce: (r) => bus.produce(r),
    close: () => bus.close(),
    async subscribe(o: SubscribeOptions): Promise<Subscription> {
      // Only the owners' topic (status subscriptions report their assignment too).
      if (o.onAssignment === undefined || o.name !== 'coordinator-owners') return bus.subscribe(o)
      deliver = o.onAssignment
      const sub = await bus.subscribe({
        ...o,
        onAssignment: (a, g) => {
          last = { args: [a, g] }
          if (!frozen) deliver?.(a, g)
        },
      })
      const s: Subscription = {
        groupId: sub.groupId,
        pause: () => sub.pause(),
        resume: () => sub.resume(),
        get paused() {
          return sub.paused
        },
        caughtUp: () => sub.caughtUp(),
        close: () => sub.close(),
        confirmedAt: () => (stale ? 0 : Date.now()),
      }
      if (sub.drained) s.drained = () => (sub.drained as () => Promise<void>)()
      return s
    },
  }
  return {
    bus: wrapped,
    freeze: () => {
      frozen = true
    },
    thaw: () => {
      frozen = false
      stale = false
      if (last !== null) deliver?.(...last.args)
    },
    unconfirmed: (on) => {
      stale = on
    },
  }
}

describe('several coordinators', () => {
  // On Kafka + FerretDB this runs 60 chains through four coordinators and three hand-overs: about
  // 160 s on a slow day of the 2-core CI machine, so it has more than the suite's 180 s per test.
  test('three coordinators share the tasks; one killed, one added and one stopped mid-run: every task finishes, exact metrics, one run per node, epoch and batch, no write after another owner claimed', { timeout: 480_000 }, async () => {
    const seen = new Map<string, number>()
    const rt = await startRuntime({ handlers: { step: countingHandler(seen) }, workers: 2, coordinator: { discoveryWindowSec: 0.5 } })
    const others = [newCoordinator(rt), newCoordinator(rt)]
    const all = [rt.coordinator, ...others]
    try {
      for (const c of others) await c.start()
      const ids: string[] = []
      // Submitted through every coordinator: each hands its tasks to their owners.
      for (let i = 0; i < 60; i++) ids.push(await (all[i % 3] as Coordinator).createTask({ graph: chainGraph() }))
      await waitFor(async () => {
        let running = 0
        for (const id of ids.slice(0, 20)) if ((await rt.coordinator.getTask(id))?.status !== 'queued') running++
        return running >= 5
      })
      await (others[0] as Coordinator).kill()
      const added = newCoordinator(rt)
      await added.start()
      all.push(added)
      for (let i = 0; i < 20; i++) ids.push(await added.createTask({ graph: chainGraph() }))
      // And one stops cleanly while its tasks run: it writes what it applied, then hands them over.
      await (others[1] as Coordinator).stop()
      for (const id of ids) assertExact(await added.waitForTask(id, { timeoutMs: 60_000 }))
      for (const [key, n] of seen) assert.equal(n, 1, `${key} processed ${n} times`)
      await assertNoFencedWrites(rt, ids)
    } finally {
      for (const c of all.slice(1)) await c.stop()
      await rt.stop()
    }
  })

  test('cancelTask, getTask, waitForTask and watch work from a coordinator that does not own the task', async () => {
    const hold = gate()
    const seen = new Map<string, number>()
    const rt = await startRuntime({ handlers: { step: countingHandler(seen, hold) }, worker: { concurrency: 16 }, coordinator: { discoveryWindowSec: 0.5 } })
    const second = newCoordinator(rt)
    try {
      await second.start()
      await waitFor(async () => second.ownership.partitions.length > 0 && rt.coordinator.ownership.partitions.length > 0, { timeoutMs: 30_000 })
      // Submitted through the second coordinator, owned by the first.
      let id = ''
      while (id === '') {
        const candidate = await second.createTask({ graph: { nodes: [{ node_id: 'a', type: 'step' }] } })
        if (rt.coordinator.ownsTask(candidate)) id = candidate
      }
      await waitFor(async () => [...seen.keys()].some((k) => k.startsWith(`${id}/`)))
      const events: string[] = []
      const watching = (async () => {
        for await (const e of second.watch(id)) events.push(e.type === 'task' ? `task:${e.status}` : e.type)
      })()
      await waitFor(async () => events.length > 0)
      assert.equal(await second.cancelTask(id, { reason: 'from a peer' }), true)
      const t = await second.waitForTask(id, { timeoutMs: 20_000 })
      assert.equal(t.status, 'cancelled')
      assert.equal(t.nodes[0]?.status, 'cancelled')
      await watching
      assert.equal(events[0], 'snapshot')
      assert.equal(events.at(-1), 'task:cancelled')
      assert.equal(await second.cancelTask(id), false, 'a finished task is not cancelled again')
    } finally {
      hold.open()
      await second.stop()
      await rt.stop()
    }
  })

  test('a stale owner (its partitions given away while it was paused) writes nothing after the new owner claimed its tasks', async () => {
    const hold = gate()
    const seen = new Map<string, number>()
    const base = await startRuntime({ handlers: { step: countingHandler(seen, hold) }, worker: { concurrency: 16 }, coordinator: { discoveryWindowSec: 0.5 } })
    // The runtime's coordinator is replaced by one whose bus can make it a zombie.
    await base.coordinator.stop()
    const z = zombieBus(base.bus)
    const zombie = newCoordinator(base, z.bus)
    await zombie.start()
    const heir = newCoordinator(base)
    try {
      // One task per owners' partition: whatever part of them the heir is given, it owns some
      // of the tasks and the zombie the others (8 random ids all landed on the heir's side once).
      const count = zombie.ownership.of
      const ids: string[] = []
      for (let p = 0; p < count; p++) ids.push(await zombie.createTask({ id: idOn('stale', p, count), graph: chainGraph() }))
      // Every first node is running on the worker (held there), its start durable and sent.
      await waitFor(async () => ids.every((id) => seen.has(`${id}/a/1/b0`)))
      // Paused: the group gives part of its partitions to a new coordinator; it wakes up unconfirmed.
      z.freeze()
      z.unconfirmed(true)
      await heir.start()
      // A cooperative rebalance gives a joining member its partitions in a second round.
      await waitFor(async () => heir.ownership.partitions.length > 0, { timeoutMs: 30_000 })
      const heirs = ids.filter((id) => heir.ownsTask(id))
      assert.ok(heirs.length > 0 && heirs.length < ids.length, `the heir owns some of the tasks (${heirs.length} of ${ids.length}; its partitions ${heir.ownership.partitions.join(',')})`)
      await waitFor(async () => {
        const entries = await base.store.readJournal(heirs)
        return heirs.every((id) => entries.some((e) => e.task_id === id && e.events.some((ev) => ev.startsWith('owner '))))
      })
      // The first nodes finish; the zombie reads some of their reports and holds its writes.
      hold.open()
      await waitFor(async () => [...seen.keys()].filter((k) => k.includes('/a/')).length === ids.length * 2)
      // The zombie learns of the new assignment: it drops what it no longer owns, writing nothing.
      z.thaw()
      for (const id of ids) assertExact(await heir.waitForTask(id, { timeoutMs: 30_000 }))
      await assertNoFencedWrites(base, ids)
      for (const [key, n] of seen) assert.equal(n, 1, `${key} processed ${n} times`)
    } finally {
      hold.open()
      await heir.stop()
      await zombie.stop()
      await base.stop()
    }
  })
})
