/**
 * Resilience under injected faults (a store that fails one write, a produce that fails once) and
 * edge cases of streaming and worker shutdown. Each test began as a failing review finding.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import {
  Coordinator,
  ErrorCode,
  FlowkitError,
  MemoryBus,
  MemoryLogger,
  MemoryStore,
  PermanentError,
  type NodeGuard,
  type NodePatch,
  type RoleHandler,
  type TaskDoc,
  type TaskView,
} from 'flowkit'
import { startRuntime, noopHandler, sourceHandler } from '../helpers/runtime.ts'
import { gate } from '../helpers/gate.ts'
import { waitFor } from '../helpers/wait.ts'

const nodeOf = (t: TaskView | null, id: string) => t!.nodes.find((n) => n.node_id === id)!

/** Waits for a terminal status; on timeout returns the task as it is instead of throwing. */
async function settle(c: Coordinator, id: string, timeoutMs = 4000): Promise<TaskView> {
  try {
    return await c.waitForTask(id, { timeoutMs })
  } catch (err) {
    if (err instanceof FlowkitError && err.code === ErrorCode.Timeout) return (await c.getTask(id))!
    throw err
  }
}

const summary = (t: TaskView) => `task ${t.status}; ${t.nodes.map((n) => `${n.node_id}=${n.status}@${n.attempt_epoch}`).join(', ')}`

/**
 * A MemoryStore whose transitionNode fails ONCE, with a retryable store error, for the first call
 * matching `trip` (a transient MongoDB hiccup: the write did not happen).
 */
class FlakyStore extends MemoryStore {
  trip: ((taskId: string, nodeId: string, patch: NodePatch) => boolean) | null = null
  tripped = 0
  override async transitionNode(taskId: string, nodeId: string, guard: NodeGuard, patch: NodePatch, now: number): Promise<TaskDoc | null> {
    if (this.trip?.(taskId, nodeId, patch)) {
      this.trip = null
      this.tripped++
      throw new FlowkitError(ErrorCode.StoreUnavailable, 'injected transient store error', { retryable: true })
    }
    return super.transitionNode(taskId, nodeId, guard, patch, now)
  }
}

describe('resilience: store errors on the event path', () => {
  test('resilience: a store error while starting a child is redone on redelivery; the task finishes', async () => {
    const store = new FlakyStore()
    store.trip = (_t, nodeId, patch) => nodeId === 'b' && patch.status === 'running'
    const rt = await startRuntime({ store, handlers: { step: noopHandler() } })
    try {
      const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'a', type: 'step' }, { node_id: 'b', type: 'step', depends_on: ['a'] }] } })
      const t = await settle(rt.coordinator, id)
      assert.equal(store.tripped, 1, 'the injected error happened')
      assert.equal(t.status, 'finished', `the redelivered TASK_DONE of a should start b: ${summary(t)}`)
    } finally {
      await rt.stop()
    }
  })

  test('resilience: a store error in the first scheduling pass of a new task is repaired by the sweep', async () => {
    const store = new FlakyStore()
    store.trip = (_t, nodeId, patch) => nodeId === 'a' && patch.status === 'running'
    const rt = await startRuntime({ store, handlers: { step: noopHandler() } })
    try {
      const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'a', type: 'step' }] } })
      const t = await settle(rt.coordinator, id)
      assert.equal(store.tripped, 1, 'the injected error happened')
      assert.equal(t.status, 'finished', `nothing re-evaluates a queued node after a failed pass: ${summary(t)}`)
    } finally {
      await rt.stop()
    }
  })

  test('resilience: a BATCH_OK redelivered after a store error is counted exactly once', async () => {
    const store = new FlakyStore()
    // The first BATCH_OK's node update fails after its metrics row was written.
    store.trip = (_t, nodeId, patch) => nodeId === 'src' && patch.status === undefined && (patch.batches_seen ?? 0) > 0
    const rt = await startRuntime({ store, handlers: { src: sourceHandler(10, 4) } })
    try {
      const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'src', type: 'src' }] } })
      const t = await settle(rt.coordinator, id)
      assert.equal(store.tripped, 1, 'the injected error happened')
      assert.equal(t.status, 'finished', summary(t))
      assert.equal(nodeOf(t, 'src').stats['count'], 10, 'each of the 10 items is counted once')
    } finally {
      await rt.stop()
    }
  })

  test('resilience: a store error in the cancel after a permanent failure is redone; the task ends failed', async () => {
    const store = new FlakyStore()
    store.trip = (_t, nodeId, patch) => nodeId === 'b' && patch.status === 'cancelled'
    const bad: RoleHandler = { async processBatch() { throw new PermanentError('broken', 'boom') } }
    const rt = await startRuntime({ store, handlers: { bad, step: noopHandler() } })
    try {
      const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'a', type: 'bad' }, { node_id: 'b', type: 'step', depends_on: ['a'] }] } })
      const t = await settle(rt.coordinator, id)
      assert.equal(store.tripped, 1, 'the injected error happened')
      assert.equal(t.status, 'failed', `a permanent failure must end the task: ${summary(t)}`)
    } finally {
      await rt.stop()
    }
  })

  test('resilience: a task left cancelling by a coordinator crash mid-cancel is completed after restart', async () => {
    const bus = new MemoryBus()
    const store = new MemoryStore()
    const first = new Coordinator({ bus, store })
    await first.start()
    const id = await first.createTask({ graph: { nodes: [{ node_id: 'a', type: 'step' }, { node_id: 'b', type: 'step', depends_on: ['a'] }] } })
    await waitFor(async () => nodeOf(await first.getTask(id), 'a').status === 'running')
    await first.stop()
    // What #cancel has written when the process dies right after its first write (task flag),
    // before it reached the nodes.
    await store.updateTask(id, {}, { status: 'cancelling', cancelled: true, cancel_reason: 'cancelled by user' }, Date.now())
    const second = new Coordinator({ bus, store, config: { discoveryWindowSec: 0.1, cancelGraceSec: 0.1, leaseTtlSec: 0.1, schedulerTickSec: 0.1 } })
    await second.start()
    try {
      const t = await settle(second, id)
      assert.equal(t.status, 'cancelled', `recovery must finish the cancel: ${summary(t)}`)
    } finally {
      await second.stop()
    }
  })
})

describe('resilience: concurrency-limit ledger', () => {
  test('resilience: a store error while starting a node gives its concurrency slot back', async () => {
    const store = new FlakyStore()
    store.trip = (_t, nodeId, patch) => nodeId === 'x' && patch.status === 'running'
    const rt = await startRuntime({ store, handlers: { step: noopHandler() }, coordinator: { maxRunningNodes: 1 } })
    try {
      await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'x', type: 'step' }] } })
      await waitFor(() => store.tripped === 1, { message: 'injected error never happened' })
      const other = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'y', type: 'step' }] } })
      const t = await settle(rt.coordinator, other)
      assert.equal(t.status, 'finished', `nothing runs, yet task B waits for a slot: ${summary(t)}`)
    } finally {
      await rt.stop()
    }
  })
})

describe('streaming consumers whose upstream died', () => {
  const pull = (from: string[]) => ({ input_adapter: 'pull.from_artifacts', input_args: { from_nodes: from, poll_ms: 10 } })

  test('streaming: a first_batch consumer of a skipped upstream ends its stream; the task finishes', async () => {
    const rt = await startRuntime({ handlers: { src: sourceHandler(4, 2), sink: noopHandler() }, worker: { concurrency: 4 } })
    try {
      const id = await rt.coordinator.createTask({
        graph: {
          nodes: [
            { node_id: 'u1', type: 'src' },
            // An optional branch: skipped because the variable is not set.
            { node_id: 'u2', type: 'src', when: { var: 'enable_u2', op: 'exists', value: true } },
            { node_id: 'c', type: 'sink', depends_on: ['u1', 'u2'], fan_in: 'any', io: { start_when: 'first_batch', input_inline: pull(['u1', 'u2']) } },
          ],
        },
      })
      const t = await settle(rt.coordinator, id)
      assert.equal(nodeOf(t, 'u2').status, 'skipped')
      assert.notEqual(t.status, 'running', `the task must end once u1 is done and u2 can never produce: ${summary(t)}`)
    } finally {
      await rt.stop()
    }
  })

  test('streaming: a consumer of an upstream whose failure routing handles ends its stream', async () => {
    const consumerStarted = gate()
    const upstream: RoleHandler = {
      async *iterBatches() {
        yield { batch_uid: 'b0', payload: {} }
        yield { batch_uid: 'b1', payload: {} }
      },
      async processBatch(batch) {
        if (batch.batch_uid === 'b0') return { metrics: { count: 1 }, meta: { v: 0 } }
        await consumerStarted.wait()
        throw new PermanentError('upstream broke after its first batch', 'broken')
      },
    }
    const sink: RoleHandler = {
      async processBatch() {
        consumerStarted.open()
        return { metrics: { count: 1 } }
      },
    }
    const rt = await startRuntime({ handlers: { up: upstream, sink, ok: noopHandler() }, worker: { concurrency: 4 } })
    try {
      const id = await rt.coordinator.createTask({
        graph: {
          nodes: [
            { node_id: 'u', type: 'up', routing: { on_failure: ['fallback'] } },
            { node_id: 'fallback', type: 'ok' },
            { node_id: 'c', type: 'sink', depends_on: ['u'], io: { start_when: 'first_batch', input_inline: pull(['u']) } },
          ],
        },
      })
      const t = await settle(rt.coordinator, id)
      assert.equal(nodeOf(t, 'u').status, 'failed')
      assert.equal(nodeOf(t, 'fallback').status, 'finished')
      assert.notEqual(t.status, 'running', `c can never complete its input; the task must end: ${summary(t)}`)
    } finally {
      consumerStarted.open()
      await rt.stop()
    }
  })
})

describe('worker stop and pre-accept failures', () => {
  test('worker: stop() returns while a start command waits for a slot (runs are cancelled first)', async () => {
    const logger = new MemoryLogger()
    const hold = gate()
    const h: RoleHandler = {
      async processBatch(_b, ctx) {
        await hold.wait(ctx.signal) // ends when the run is cancelled
        return {}
      },
    }
    const rt = await startRuntime({ logger, handlers: { step: h }, worker: { concurrency: 1 } })
    try {
      await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n1', type: 'step' }, { node_id: 'n2', type: 'step' }] } })
      await waitFor(() => logger.events().includes('worker.at_capacity'), { message: 'second start never waited for a slot' })
      const worker = rt.workers[0]!
      const stopped = worker.stop().then(() => 'stopped' as const)
      const outcome = await Promise.race([stopped, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 3000))])
      assert.equal(outcome, 'stopped', 'stop() must cancel the running node and return')
    } finally {
      hold.open() // lets the run end so the test can clean up
      await rt.stop()
    }
  })

  test('worker: a run that fails before TASK_ACCEPTED runs again when the start is resent', async () => {
    const bus = new MemoryBus()
    let tripped = false
    bus.setInterceptor((rec) => {
      if (!tripped && rec.value.includes('"TASK_ACCEPTED"')) {
        tripped = true
        throw new Error('injected broker hiccup')
      }
      return { action: 'pass' }
    })
    const logger = new MemoryLogger()
    const rt = await startRuntime({ bus, logger, handlers: { step: noopHandler() }, coordinator: { acceptTimeoutSec: 0.2 } })
    try {
      const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'step' }] } })
      const t = await settle(rt.coordinator, id)
      assert.ok(tripped, 'the injected error happened')
      const n = nodeOf(t, 'n')
      const dups = logger.events().filter((e) => e === 'worker.start_duplicate').length
      assert.equal(t.status, 'finished', `${String(n.resends ?? '?')} resends, ${dups} dropped by the worker as duplicates: ${summary(t)}`)
    } finally {
      bus.setInterceptor(null)
      await rt.stop()
    }
  })
})

describe('poison messages', () => {
  test('a message whose handling fails for a non-retryable reason is parked, and its partition keeps flowing', async () => {
    const { MemoryLogger: Logger, MemoryStore: Store } = await import('flowkit')
    // A store that fails one task's node updates with a non-retryable error (as a bug would).
    class PoisonStore extends Store {
      poisonTask = ''
      override async transitionNode(taskId: string, nodeId: string, guard: NodeGuard, patch: NodePatch, now: number): Promise<TaskDoc | null> {
        if (taskId === this.poisonTask && patch.lease !== undefined && patch.status === undefined) {
          throw new FlowkitError(ErrorCode.StoreError, 'document cannot be stored')
        }
        return super.transitionNode(taskId, nodeId, guard, patch, now)
      }
    }
    const store = new PoisonStore()
    const logger = new Logger()
    const bus = new MemoryBus()
    const coordinator = new Coordinator({ bus, store, logger, config: { topicPartitions: 1 } })
    const { Worker } = await import('flowkit')
    const worker = new Worker({ bus, store, logger, handlers: { step: { async processBatch() { return {} } } }, config: { topicPartitions: 1 } })
    try {
      await coordinator.start()
      await worker.start()
      const first = await coordinator.createTask({ id: 'poisoned', graph: { nodes: [{ node_id: 'n', type: 'step' }] } })
      store.poisonTask = first
      const second = await coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'step' }] } })
      assert.equal((await coordinator.waitForTask(second, { timeoutMs: 10000 })).status, 'finished', 'the partition kept flowing')
      assert.ok(logger.records.some((r) => r.event === 'bus.message_parked' && String(r.fields['value']).includes('poisoned')))
    } finally {
      await worker.stop()
      await coordinator.stop()
    }
  })
})
