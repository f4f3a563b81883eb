/**
 * A start that waits in a busy worker's queue is not "not accepted": while more nodes of a type
 * are dispatched than its live workers announced they can run, the accept timeout is not counted
 * (no resend, no warning, no new attempt after the fourth); once workers have room, an unaccepted
 * start is resent as before.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryLogger, TestClock, type RoleHandler, type Store } from 'flowkit'
import { aroundClaims } from '../helpers/store-proxy.ts'
import { gate } from '../helpers/gate.ts'
import { startRuntime } from '../helpers/runtime.ts'
import { waitFor } from '../helpers/wait.ts'

test('starts queued behind a saturated worker are neither resent nor replaced; they all run at their first epoch', async () => {
  const clock = new TestClock()
  const logger = new MemoryLogger()
  const release = gate()
  let started = 0
  const slow: RoleHandler = {
    async processBatch() {
      started++
      await release.wait()
      return { metrics: { count: 1 } }
    },
  }
  const rt = await startRuntime({ clock, logger, handlers: { slow }, worker: { concurrency: 2, leaseTtlSec: 3600, hbIntervalSec: 600 }, coordinator: { acceptTimeoutSec: 30 } })
  try {
    const ids: string[] = []
    for (let i = 0; i < 6; i++) ids.push(await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'a', type: 'slow' }] } }))
    await waitFor(() => started === 2, { message: 'the worker runs two, the others wait in its queue' })
    // Past the whole resend schedule (30 + 60 + 120 + 240 s): the queued starts are waited for.
    for (let s = 0; s < 500; s += 10) await clock.advance(10_000)
    const events = logger.records.map((r) => r.event)
    assert.equal(events.filter((e) => e === 'node.not_accepted').length, 0, 'no start reported not accepted')
    assert.equal(events.filter((e) => e === 'node.start_resent').length, 0, 'no start resent')
    release.open()
    for (const id of ids) {
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })
      assert.equal(t.status, 'finished')
      assert.equal(t.nodes[0]?.attempt_epoch, 1, 'run at its first epoch (never replaced)')
    }
    assert.equal(started, 6, 'each node ran once')
  } finally {
    release.open()
    await rt.stop()
  }
})

test('a worker serving several types is full when its runs of any type hold its slots: starts of the other types queued behind them are not resent', async () => {
  const clock = new TestClock()
  const logger = new MemoryLogger()
  const release = gate()
  const ran: string[] = []
  const handler = (type: string): RoleHandler => ({
    async processBatch() {
      ran.push(type)
      await release.wait()
      return { metrics: { count: 1 } }
    },
  })
  // One worker, one pool of two slots for both types (its announce says capacity 2 for each).
  const rt = await startRuntime({ clock, logger, handlers: { slow: handler('slow'), other: handler('other') }, worker: { concurrency: 2, leaseTtlSec: 3600, hbIntervalSec: 600 }, coordinator: { acceptTimeoutSec: 30 } })
  try {
    const ids: string[] = []
    for (let i = 0; i < 2; i++) ids.push(await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'a', type: 'slow' }] } }))
    await waitFor(() => ran.length === 2, { message: 'the two slow runs hold both slots' })
    for (let i = 0; i < 3; i++) ids.push(await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'b', type: 'other' }] } }))
    for (let s = 0; s < 500; s += 10) await clock.advance(10_000)
    const events = logger.records.map((r) => r.event)
    assert.equal(events.filter((e) => e === 'node.not_accepted').length, 0, 'no start reported not accepted')
    assert.equal(events.filter((e) => e === 'node.start_resent').length, 0, 'no start resent')
    assert.ok(events.includes('node.start_queued'), 'the waits are logged as queued')
    release.open()
    for (const id of ids) {
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })
      assert.equal(t.status, 'finished')
      assert.equal(t.nodes[0]?.attempt_epoch, 1, 'run at its first epoch (never replaced)')
    }
    assert.deepEqual(ran.sort(), ['other', 'other', 'other', 'slow', 'slow'], 'each node ran once')
  } finally {
    release.open()
    await rt.stop()
  }
})

test('a worker whose run just ended and whose next start is being taken up still counts as busy: the starts queued behind it are not resent', async () => {
  const clock = new TestClock()
  const logger = new MemoryLogger()
  const gates = new Map<string, ReturnType<typeof gate>>()
  const ran: string[] = []
  const slow: RoleHandler = {
    async processBatch(_b, ctx) {
      ran.push(ctx.taskId)
      const g = gates.get(ctx.taskId)
      if (g !== undefined) await g.wait()
      return { metrics: { count: 1 } }
    },
  }
  // Claims of the worker hang while `claims` is closed: its next start is taken, not yet accepted.
  const claims = gate()
  let holdClaims = false
  const workerStore = (store: Store): Store =>
    aroundClaims(store, async (_cs, claim) => {
      if (holdClaims) await claims.wait()
      return claim()
    })
  const rt = await startRuntime({ clock, logger, handlers: { slow }, worker: { concurrency: 2, leaseTtlSec: 3600, hbIntervalSec: 600 }, workerStore, coordinator: { acceptTimeoutSec: 30, steerAfterSec: 0 } })
  try {
    for (const id of ['a', 'b']) gates.set(id, gate())
    for (const id of ['a', 'b']) await rt.coordinator.createTask({ id, graph: { nodes: [{ node_id: 'n', type: 'slow' }] } })
    await waitFor(() => ran.length === 2, { message: 'a and b hold both slots' })
    const queued = ['c', 'd', 'e', 'f']
    for (const id of queued) await rt.coordinator.createTask({ id, graph: { nodes: [{ node_id: 'n', type: 'slow' }] } })
    await clock.advance(25_000)
    holdClaims = true
    gates.get('a')?.open()
    await rt.coordinator.waitForTask('a', { timeoutMs: 10_000 })
    // c is being claimed (not accepted): one accepted run of two slots when the timeouts come.
    await clock.advance(10_000)
    await clock.advance(1_000)
    const events = logger.records.map((r) => r.event)
    assert.equal(events.filter((e) => e === 'node.not_accepted').length, 0, 'no start reported not accepted')
    assert.equal(events.filter((e) => e === 'node.start_resent').length, 0, 'no start resent')
    assert.ok(events.includes('node.start_queued'), 'the waits are logged as queued')
    holdClaims = false
    claims.open()
    gates.get('b')?.open()
    for (const id of queued) assert.equal((await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })).nodes[0]?.attempt_epoch, 1)
    assert.deepEqual([...ran].sort(), ['a', 'b', 'c', 'd', 'e', 'f'], 'each ran once')
  } finally {
    claims.open()
    for (const g of gates.values()) g.open()
    await rt.stop()
  }
})
