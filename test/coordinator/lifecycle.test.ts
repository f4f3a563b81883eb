/**
 * Start and stop of a Coordinator and a Worker as an embedding application calls them (a
 * lifecycle audit): overlapping start() calls share one start (two ran every step twice: tasks
 * stayed queued, and after stop() the process spun and never exited); a start that failed is
 * undone and may be retried (it left the object marked started, so a retry did nothing); a run
 * abandoned after its cancel grace stops its heartbeats (its timer held a stopped worker's process
 * for up to hbIntervalSec).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Coordinator, ErrorCode, FlowkitError, MemoryBus, MemoryStore, type RoleHandler, type SubscribeOptions, type Subscription, TestClock, Worker } from 'flowkit'
import { gate } from '../helpers/gate.ts'
import { overrideStore } from '../helpers/store-proxy.ts'
import { waitFor } from '../helpers/wait.ts'

const noop: RoleHandler = { async processBatch() { return { metrics: { count: 1 } } } }
const graph = { nodes: [{ node_id: 'a', type: 'step' }, { node_id: 'b', type: 'step', depends_on: ['a'] }] }

/** A store whose `init` fails the first `times` calls, as an unreachable server does. */
function flakyInit(times: number): ReturnType<typeof overrideStore> {
  let left = times
  return overrideStore(new MemoryStore(), {
    init: (original) => async () => {
      if (left-- > 0) throw new FlowkitError(ErrorCode.StoreUnavailable, 'store not reachable yet', { retryable: true })
      return original()
    },
  })
}

test('overlapping start() calls share one start: tasks run, one subscription per group, stop() ends it all', async () => {
  const bus = new MemoryBus()
  const store = new MemoryStore()
  const c = new Coordinator({ bus, store })
  const w = new Worker({ bus, store, handlers: { step: noop } })
  const starts = [c.start(), c.start(), w.start(), w.start()]
  assert.equal(starts[0], starts[1], 'the second coordinator start() is the first one')
  assert.equal(starts[2], starts[3], 'the second worker start() is the first one')
  await Promise.all(starts)
  try {
    const id = await c.createTask({ graph })
    assert.equal((await c.waitForTask(id, { timeoutMs: 10_000 })).status, 'finished')
    for (const group of ['flowkit.coordinator.status.step', 'workers.step.v1']) {
      const members = new Set(bus.assignments(group).map((a) => a.member))
      assert.equal(members.size, 1, `${group}: ${members.size} members (one start subscribes once)`)
    }
  } finally {
    await w.stop()
    await c.stop()
  }
  await bus.waitForIdle({ timeoutMs: 5_000 })
  await bus.close()
})

test('a coordinator and a worker whose start() failed are undone and start on the next call', async () => {
  const bus = new MemoryBus()
  const store = flakyInit(2) // the coordinator's first init fails, then the worker's
  const c = new Coordinator({ bus, store })
  const w = new Worker({ bus, store, handlers: { step: noop } })
  await assert.rejects(c.start(), /store not reachable yet/)
  await assert.rejects(w.start(), /store not reachable yet/)
  await assert.rejects(c.createTask({ graph }), /not started/, 'a failed start leaves it stopped')
  await c.start()
  await w.start()
  try {
    const id = await c.createTask({ graph })
    assert.equal((await c.waitForTask(id, { timeoutMs: 10_000 })).status, 'finished', 'the retried starts subscribed')
  } finally {
    await w.stop()
    await c.stop()
  }
})

test('a run abandoned after its cancel grace sends no more heartbeats: a stopped worker keeps no timer', async () => {
  const bus = new MemoryBus()
  const store = new MemoryStore()
  const clock = new TestClock(Date.now())
  const deaf: RoleHandler = { processBatch: () => new Promise(() => undefined) } // ignores its abort signal
  const c = new Coordinator({ bus, store })
  const w = new Worker({ bus, store, clock, handlers: { step: deaf }, config: { statusHoldMs: 0, cancelGraceMs: 100, hbIntervalSec: 20 } })
  await c.start()
  await w.start()
  try {
    const id = await c.createTask({ graph: { nodes: [{ node_id: 'a', type: 'step' }] } })
    await waitFor(async () => (await c.getTask(id))?.nodes[0]?.accepted_at_ms != null, { message: 'never accepted' })
    const stopping = w.stop()
    // The cancel grace runs on the worker's clock.
    await waitFor(async () => {
      await clock.advance(50)
      return w.activeRuns().length === 0
    }, { message: 'the run was never abandoned' })
    await stopping
    assert.equal(clock.pending, 0, 'nothing of the worker waits on its clock (the heartbeat timer is gone)')
  } finally {
    await w.stop()
    await c.stop()
  }
})

/** A memory bus whose subscription named `failName` fails (after `delayMs`), and whose subscriptions named `failClose` cannot be closed. */
class FaultyBus extends MemoryBus {
  failName: string | null = null
  failClose: string | null = null
  delayMs = 0
  override async subscribe(o: SubscribeOptions): Promise<Subscription> {
    if (o.name === this.failName) {
      await new Promise((r) => setTimeout(r, this.delayMs))
      throw new FlowkitError(ErrorCode.BusUnavailable, `${o.name}: subscribe failed`, { retryable: true })
    }
    const sub = await super.subscribe(o)
    if (o.name !== this.failClose) return sub
    return Object.assign(Object.create(sub) as Subscription, { close: async () => { throw new Error(`${o.name}: close failed`) } })
  }
}

test('a worker start that fails after its command subscriptions went live hands back the run it took, and ends stopped', async () => {
  const bus = new FaultyBus()
  const store = new MemoryStore()
  const hold = gate()
  let calls = 0
  const h: RoleHandler = { async processBatch(_b, ctx) { calls++; await hold.wait(ctx.signal); return { metrics: { count: 1 } } } }
  const c = new Coordinator({ bus, store })
  await c.start()
  try {
    const id = await c.createTask({ graph: { nodes: [{ node_id: 'a', type: 'step' }] } })
    // Its START waits in the topic; the worker's command subscription takes it while the query one fails.
    bus.failName = 'worker-query'
    bus.delayMs = 300
    const w = new Worker({ bus, store, handlers: { step: h }, config: { hbIntervalSec: 1 } })
    await assert.rejects(w.start(), /worker-query: subscribe failed/)
    assert.equal(calls, 1, 'the run had started')
    assert.deepEqual(w.activeRuns(), [], 'the failed start cancelled it')
    assert.equal(bus.assignments('workers.step.v1').length, 0, 'its command subscription is closed')
    // Handed back: another worker runs it to the end.
    bus.failName = null
    const w2 = new Worker({ bus, store, handlers: { step: { async processBatch() { return { metrics: { count: 1 } } } } } })
    await w2.start()
    try {
      const t = await c.waitForTask(id, { timeoutMs: 10_000 })
      assert.equal(t.status, 'finished')
      assert.equal(t.nodes[0]?.attempt_epoch, 2, 'run again at the next epoch, as a hand-back')
    } finally {
      await w2.stop()
    }
  } finally {
    hold.open()
    await c.stop()
  }
})

test('kill() during a worker start leaves no subscription behind', async () => {
  const bus = new FaultyBus()
  const store = new MemoryStore()
  bus.failName = 'worker-query'
  bus.delayMs = 200
  const w = new Worker({ bus, store, handlers: { step: noop }, config: { workerId: 'w-killed' } })
  const starting = w.start()
  await new Promise((r) => setTimeout(r, 50))
  await w.kill()
  await assert.rejects(starting)
  for (const group of ['workers.step.v1', 'workers.signals.w-killed', 'workers.query.w-killed']) {
    assert.deepEqual(bus.assignments(group), [], `${group} still has a member`)
  }
})

test('a coordinator start undone after a failure stops everything, also past a subscription that cannot be closed; once killed it stays killed', async () => {
  const bus = new FaultyBus()
  const clock = new TestClock(Date.now())
  bus.failName = 'coordinator-owners'
  bus.failClose = 'coordinator-announce'
  const c = new Coordinator({ bus, store: new MemoryStore(), clock })
  await assert.rejects(c.start(), /subscribe failed/)
  assert.equal(clock.pending, 0, 'nothing of the coordinator waits on its clock (outbox, timers, sweep stopped)')
  // Killed while a start fails: it stays killed.
  const starting = c.start()
  await c.kill()
  await assert.rejects(starting)
  bus.failName = null
  await assert.rejects(c.start(), /killed coordinator cannot start again/)
})

test('a forgotten await is named: a Promise as a task id, createTask while start() is still under way', async () => {
  const c = new Coordinator({ bus: new MemoryBus(), store: new MemoryStore() })
  const starting = c.start()
  await assert.rejects(c.createTask({ graph }), /createTask: the coordinator is still starting \(await start\(\) first\)/)
  await starting
  try {
    const pending = c.createTask({ graph })
    for (const call of [() => c.getTask(pending as never), () => c.waitForTask(pending as never), () => c.cancelTask(pending as never)]) {
      await assert.rejects(call(), (err: FlowkitError) => err.code === ErrorCode.InvalidKey && /the task id must be a string, got a Promise \(is an `await` missing before createTask\?\)/.test(err.message))
    }
    assert.throws(() => c.watch(pending as never), /watch: the task id must be a string/)
    await pending
  } finally {
    await c.stop()
  }
})

test('cancelTask on a coordinator that is not running is an error, not false ("the task had ended"); one killed while the cancel is under way says it may not be recorded', async () => {
  const bus = new MemoryBus()
  const store = new MemoryStore()
  const hang: RoleHandler = {
    async processBatch(_b, ctx) {
      await ctx.sleep(60_000)
      return {}
    },
  }
  const c1 = new Coordinator({ bus, store, observability: false })
  const worker = new Worker({ bus, store, observability: false, handlers: { hang }, config: { concurrency: 2 } })
  await c1.start()
  await worker.start()
  const c2 = new Coordinator({ bus, store, observability: false })
  try {
    const id = await c1.createTask({ graph: { nodes: [{ node_id: 'a', type: 'hang' }] } })
    await waitFor(async () => (await c1.getTask(id))?.nodes[0]?.status === 'running')
    await assert.rejects(c2.cancelTask(id), (err: unknown) => err instanceof FlowkitError && err.code === ErrorCode.Config && /not started/.test(err.message))
    // Killed right after the call: the cancel is not recorded, and the answer says it may not be.
    const answer = c1.cancelTask(id)
    await c1.kill()
    await assert.rejects(answer, (err: unknown) => err instanceof FlowkitError && err.code === ErrorCode.Closed && /stopped before the cancel of task .* was applied, and it may not be recorded/.test(err.message))
    await assert.rejects(c1.cancelTask(id), (err: unknown) => err instanceof FlowkitError && /not started/.test(err.message))
    // The task goes on under the next coordinator, and a cancel there works.
    await c2.start()
    await waitFor(async () => (await c2.getTask(id))?.nodes[0]?.status === 'running')
    assert.equal((await c2.getTask(id))?.cancelled, false)
    assert.equal(await c2.cancelTask(id), true)
    assert.equal((await c2.waitForTask(id, { timeoutMs: 20_000 })).status, 'cancelled')
  } finally {
    await worker.stop()
    await c2.stop()
  }
})
