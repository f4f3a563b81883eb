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
import { Coordinator, ErrorCode, FlowkitError, MemoryBus, MemoryStore, type RoleHandler, TestClock, Worker } from 'flowkit'
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
