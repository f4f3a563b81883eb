import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { Coordinator, MemoryBus, MemoryStore, PermanentError, TestClock, type RoleHandler, type TaskView } from 'flowkit'
import { startRuntime, noopHandler } from '../helpers/runtime.ts'
import { gate } from '../helpers/gate.ts'
import { waitFor } from '../helpers/wait.ts'

const nodeOf = (t: TaskView | null, id: string) => t!.nodes.find((n) => n.node_id === id)!

describe('cancellation', () => {
  test('S-004 cancelling a running task: the handler sees the abort, the worker reports CANCELLED, downstream never starts', async () => {
    let sawAbort = false
    let downstreamCalls = 0
    const started = gate()
    const long: RoleHandler = {
      async processBatch(_b, ctx) {
        started.open()
        try {
          await ctx.sleep(60_000)
        } catch (err) {
          sawAbort = ctx.signal.aborted
          throw err
        }
        return {}
      },
    }
    const down: RoleHandler = { async processBatch() { downstreamCalls++; return {} } }
    const rt = await startRuntime({ handlers: { long, down } })
    try {
      const id = await rt.coordinator.createTask({
        graph: { nodes: [{ node_id: 'a', type: 'long' }, { node_id: 'b', type: 'down', depends_on: ['a'] }] },
      })
      await started.wait()
      assert.equal(await rt.coordinator.cancelTask(id, { reason: 'user asked' }), true)
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10000 })
      assert.equal(t.status, 'cancelled')
      assert.equal(sawAbort, true, 'handler saw the AbortSignal')
      assert.equal(nodeOf(t, 'a').status, 'cancelled')
      // The worker's CANCELLED carries the reason (a TASK_FAILED while cancelling would read "failed while cancelling").
      assert.equal(nodeOf(t, 'a').end_reason, 'user asked', 'ended by the worker reporting CANCELLED')
      assert.equal(nodeOf(t, 'b').status, 'cancelled')
      assert.equal(nodeOf(t, 'b').attempt_epoch, 0)
      assert.equal(downstreamCalls, 0)
      assert.equal(t.cancelled, true)
      assert.equal(await rt.coordinator.cancelTask(id), false, 'cancelling a terminal task is a no-op')
    } finally {
      await rt.stop()
    }
  })

  test('S-006 cancelling before any node is dispatched: nothing ever runs', async () => {
    const bus = new MemoryBus()
    const store = new MemoryStore()
    let calls = 0
    // One slot for the role, held by a node no worker serves: the second task's node waits for it.
    const rt = await startRuntime({ bus, store, coordinator: { maxRunningByType: { step: 1 } }, handlers: { other: { async processBatch() { return {} } } } })
    try {
      const holder = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'h', type: 'step' }] } })
      const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'a', type: 'step' }] } })
      assert.equal(nodeOf(await rt.coordinator.getTask(id), 'a').status, 'queued')
      await rt.coordinator.cancelTask(id)
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 5000 })
      assert.equal(t.status, 'cancelled')
      assert.equal(nodeOf(t, 'a').attempt_epoch, 0)
      await rt.addWorker({ step: { async processBatch() { calls++; return {} } } })
      await rt.coordinator.cancelTask(holder)
      await rt.coordinator.waitForTask(holder, { timeoutMs: 10000 })
      const starts = bus.records('cmd.step.v1').filter((r) => r.value.includes(id) && r.value.includes('TASK_START'))
      assert.equal(starts.length, 0, 'no command was ever sent for the cancelled task')
      assert.ok(calls <= 1)
    } finally {
      await rt.stop()
    }
  })

  test('S-007 cancelling while a node waits for its retry: the retry never happens', async () => {
    const clock = new TestClock()
    let calls = 0
    const flaky: RoleHandler = { async processBatch() { calls++; throw new Error('transient') } }
    const rt = await startRuntime({ clock, handlers: { step: flaky } })
    try {
      const id = await rt.coordinator.createTask({
        graph: { nodes: [{ node_id: 'a', type: 'step', retry_policy: { max: 5, backoff_sec: 2 } }] },
      })
      await waitFor(async () => nodeOf(await rt.coordinator.getTask(id), 'a').status === 'deferred')
      await rt.coordinator.cancelTask(id)
      await clock.advance(10_000)
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 5000 })
      assert.equal(t.status, 'cancelled')
      assert.equal(nodeOf(t, 'a').status, 'cancelled')
      assert.equal(nodeOf(t, 'a').attempt_epoch, 1)
      assert.equal(calls, 1)
    } finally {
      await rt.stop()
    }
  })

  test('S-039 an explicit cancel moves a running node to cancelling, then cancelled when the worker confirms', async () => {
    const started = gate()
    const release = gate()
    const signals: { node: string; signal: AbortSignal }[] = []
    const stubborn: RoleHandler = {
      async processBatch(_b, ctx) {
        signals.push({ node: ctx.nodeId, signal: ctx.signal })
        started.open()
        await release.wait() // ignores the signal on purpose: cancellation is cooperative
        return {}
      },
    }
    const rt = await startRuntime({ handlers: { step: stubborn } })
    try {
      const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'a', type: 'step' }, { node_id: 'b', type: 'step' }] } })
      await started.wait()
      await rt.coordinator.cancelTask(id)
      const mid = await rt.coordinator.getTask(id)
      assert.equal(mid!.status, 'cancelling')
      assert.ok(mid!.nodes.some((n) => n.status === 'cancelling'), 'the running node is cancelling')
      // The worker got the cancel (the handler goes on regardless); when it returns, the worker
      // confirms with CANCELLED, not TASK_DONE.
      await waitFor(() => signals[0]?.signal.aborted === true, { message: 'the cancel never reached the worker' })
      const running = signals[0]?.node
      release.open()
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10000 })
      assert.equal(t.status, 'cancelled')
      assert.ok(t.nodes.every((n) => n.status === 'cancelled'))
      // The worker confirms with the reason it was told: the task's (cancelTask's default here),
      // also when the cancel was decided before the coordinator knew which worker held the node.
      assert.equal(t.nodes.find((n) => n.node_id === running)?.end_reason, 'cancelled by user', 'ended by the worker confirming (not "finished while cancelling")')
    } finally {
      release.open()
      await rt.stop()
    }
  })

  test('cancelTask on a task already stopping because a node failed answers false, and the task ends failed (it answered true: a cancel that never applied)', async () => {
    const stopping = gate()
    const release = gate()
    const slow: RoleHandler = {
      async processBatch(_b, ctx) {
        try {
          await ctx.sleep(60_000)
        } catch (err) {
          stopping.open()
          await release.wait() // the task stays cancelling until the test lets this run stop
          throw err
        }
        return {}
      },
    }
    const boom: RoleHandler = {
      async processBatch() {
        throw new PermanentError({ code: 'broken', message: 'broken for good' })
      },
    }
    const rt = await startRuntime({ handlers: { slow, boom }, worker: { concurrency: 4 } })
    try {
      const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'slow', type: 'slow' }, { node_id: 'boom', type: 'boom', retry_policy: { max: 1 } }] } })
      await waitFor(() => stopping.opened, { timeoutMs: 15_000, message: 'the failure stops slow' })
      assert.equal((await rt.coordinator.getTask(id))?.status, 'cancelling')
      assert.equal(await rt.coordinator.cancelTask(id, { reason: 'operator' }), false)
      release.open()
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })
      assert.equal(t.status, 'failed')
      // A task a user's cancel is stopping answers true again.
      const again = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'slow', type: 'slow' }] } })
      await waitFor(async () => nodeOf(await rt.coordinator.getTask(again), 'slow').status === 'running')
      assert.equal(await rt.coordinator.cancelTask(again), true)
      assert.equal(await rt.coordinator.cancelTask(again), true)
      assert.equal((await rt.coordinator.waitForTask(again, { timeoutMs: 20_000 })).status, 'cancelled')
    } finally {
      release.open()
      await rt.stop()
    }
  })

  test('cancelTask on an unknown task is a TASK_NOT_FOUND error', async () => {
    const rt = await startRuntime({ handlers: { step: noopHandler() } })
    try {
      await assert.rejects(rt.coordinator.cancelTask('nope'), { code: 'TASK_NOT_FOUND' })
    } finally {
      await rt.stop()
    }
  })
})

describe('coordinator lifecycle', () => {
  test('one Coordinator instance can be stopped and started again, and finishes what it had', async () => {
    const { Worker } = await import('flowkit')
    const bus = new MemoryBus()
    const store = new MemoryStore()
    const c = new Coordinator({ bus, store, config: { maxRunningNodes: 1 } })
    const release = gate()
    const w = new Worker({ bus, store, handlers: { step: { async processBatch(_b, ctx) { await release.wait(ctx.signal); return {} } } } })
    try {
      await c.start()
      await w.start()
      const id = await c.createTask({ graph: { nodes: [{ node_id: 'a', type: 'step' }, { node_id: 'b', type: 'step' }] } })
      await waitFor(async () => nodeOf(await c.getTask(id), 'a').status === 'running' || nodeOf(await c.getTask(id), 'b').status === 'running')
      await c.stop()
      await c.start()
      release.open()
      const t = await c.waitForTask(id, { timeoutMs: 10000 })
      assert.equal(t.status, 'finished')
    } finally {
      release.open()
      await w.stop()
      await c.stop()
    }
  })
})
