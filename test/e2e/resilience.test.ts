/**
 * Resilience under injected faults (a store that fails one write, a produce that fails once) and
 * edge cases of streaming and worker shutdown. Each test began as a failing review finding.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import {
  type Coordinator,
  ErrorCode,
  FlowkitError,
  MemoryBus,
  MemoryLogger,
  PermanentError,
  type RoleHandler,
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
      // A hang is for ever; 15 s leaves room for a loaded machine and a real broker's group leaves.
      const outcome = await Promise.race([stopped, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 15_000))])
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

