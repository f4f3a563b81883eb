/**
 * A cancel between its request and its application (src/coordinator/cancel-request.ts): the
 * request is written into the task at once and applied once the task's queued events are in (here
 * the new owner recovers the task, its worker does not answer the discovery question, and a long
 * discovery window keeps the cancel waiting). Meanwhile
 * nothing starts, the request is visible, a worker that reads it stops as for a cancel, and a
 * deadline that passes does not change the outcome. Runs on memory and on real Kafka + MongoDB.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { BUILTIN_FUNCTIONS, Coordinator, type CoordinatorFn, type RoleHandler, type TaskEvent } from 'flowkit'
import { buildTask } from '../../src/coordinator/submit.ts'
import { toTaskView } from '../../src/coordinator/view.ts'
import { taskLines } from '../../src/cli/progress.ts'
import { startRuntime, type Runtime } from '../helpers/runtime.ts'
import { type Gate, gate } from '../helpers/gate.ts'
import { waitFor } from '../helpers/wait.ts'
import { overrideMethods } from '../helpers/store-proxy.ts'

/** A handler that holds each run until `hold` opens (or the run is cancelled). */
function held(hold: Gate, runs: string[]): RoleHandler {
  return {
    async processBatch(_b, ctx) {
      runs.push(`${ctx.nodeId}@${ctx.attemptEpoch}`)
      if (ctx.nodeId !== 'quick') await hold.wait(ctx.signal)
      return { metrics: { count: 1 } }
    },
  }
}

/**
 * A coordinator taking over with a discovery window of `discoveryWindowSec`, whose discovery
 * questions never reach the workers: no worker says it still runs an inherited node, so a cancel
 * waits for the whole recovery (with an answer it is applied at once: recovery-cancel.test.ts).
 */
function heir(rt: Runtime, discoveryWindowSec: number, functions?: Record<string, CoordinatorFn>): Coordinator {
  const query = rt.coordinatorBase.topicQuery ?? 'query.tasks.v1'
  const bus = overrideMethods(rt.bus, {
    produce: (f) => (...a: unknown[]) => f((a[0] as Array<{ topic: string }>).filter((r) => r.topic !== query), ...a.slice(1)),
  })
  return new Coordinator({ bus, store: rt.store, config: { ...rt.coordinatorBase, discoveryWindowSec }, ...(functions === undefined ? {} : { functions }) })
}

/** Kills `first` once `id`'s first node is held by a worker; a new coordinator with a long discovery window takes over. */
async function handOver(rt: Runtime, id: string, windowSec: number, functions?: Record<string, CoordinatorFn>, first: Coordinator = rt.coordinator): Promise<Coordinator> {
  await waitFor(async () => (await first.getTask(id))?.nodes[0]?.lease.worker_id != null)
  await first.kill()
  const next = heir(rt, windowSec, functions)
  await next.start()
  return next
}

describe('a cancel requested and not applied yet', () => {
  test('is visible (getTask, flowkit status, watch) and nothing new starts; it applies after the recovery and the task ends cancelled', async () => {
    const hold = gate()
    const runs: string[] = []
    const rt = await startRuntime({ handlers: { hold: held(hold, runs) }, worker: { concurrency: 4 } })
    let next: Coordinator | null = null
    try {
      const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'a', type: 'hold' }, { node_id: 'b', type: 'hold', depends_on: ['a'] }] } })
      next = await handOver(rt, id, 3)
      const events: string[] = []
      const ac = new AbortController()
      const watching = (async () => {
        for await (const e of (next as Coordinator).watch(id, { signal: ac.signal }) as AsyncGenerator<TaskEvent>) {
          events.push(e.type === 'task' ? `task:${e.status}` : e.type === 'cancel_requested' ? `cancel_requested:${e.reason}` : e.type)
        }
      })().catch(() => undefined)
      const applying = next.cancelTask(id, { reason: 'user asked' })
      await waitFor(async () => (await rt.store.getTask(id))?.coordinator.cancelled === true)
      const view = await next.getTask(id)
      assert.equal(view?.status, 'running')
      assert.equal(view?.cancelled, true)
      assert.equal(view?.cancel_reason, 'user asked')
      assert.match(taskLines(toTaskView((await rt.store.getTask(id)) as never), Date.now())[0] as string, /running \(cancel requested\)/)
      await waitFor(async () => events.includes('cancel_requested:user asked'))
      // `a` finishes meanwhile: `b` does not start (the cancel applies to it).
      hold.open()
      assert.equal(await applying, true)
      const t = await next.waitForTask(id, { timeoutMs: 30_000 })
      assert.equal(t.status, 'cancelled')
      assert.equal(t.nodes.find((n) => n.node_id === 'b')?.status, 'cancelled')
      assert.deepEqual(runs, ['a@1'], 'b never ran')
      ac.abort()
      await watching
      assert.ok(events.indexOf('cancel_requested:user asked') < events.indexOf('task:cancelled'), events.join(', '))
    } finally {
      hold.open()
      await next?.stop()
      await rt.stop()
    }
  })

  test('a deadline that passes while it waits does not change it: the task ends cancelled with the reason asked for', async () => {
    const hold = gate()
    const rt = await startRuntime({ handlers: { hold: held(hold, []) } })
    let next: Coordinator | null = null
    try {
      const id = await rt.coordinator.createTask({ deadlineSec: 2, graph: { nodes: [{ node_id: 'a', type: 'hold' }] } })
      next = await handOver(rt, id, 4)
      assert.equal(await next.cancelTask(id, { reason: 'user asked' }), true)
      const t = await next.waitForTask(id, { timeoutMs: 30_000 })
      assert.equal(t.status, 'cancelled')
      assert.equal(t.error, null)
      assert.equal(t.cancel_reason, 'user asked')
    } finally {
      hold.open()
      await next?.stop()
      await rt.stop()
    }
  })

  test('a worker that reads it from the task (a START without its variables) and gives the run up ends the node cancelled, not failed', async () => {
    const hold = gate()
    const runs: string[] = []
    // Variables too large to travel with the START (256 KiB): the worker reads the task document.
    const functions: Record<string, CoordinatorFn> = {
      big: async () => ({ vars: Object.fromEntries([1, 2, 3, 4, 5].map((i) => [`k${i}`, 'x'.repeat(60_000)])) }),
    }
    const rt = await startRuntime({ handlers: { hold: held(hold, runs) }, worker: { concurrency: 1 } })
    // The runtime's coordinator is replaced by one that has the function.
    await rt.coordinator.stop()
    const first = heir(rt, 0.5, functions)
    let next: Coordinator | null = null
    try {
      await first.start()
      // One worker slot: `x` holds it, `a`'s START waits at the worker for it.
      const id = await first.createTask({
        graph: {
          nodes: [
            { node_id: 'x', type: 'hold' },
            { node_id: 'big', type: 'coordinator_fn', io: { fn: 'big' } },
            { node_id: 'a', type: 'hold', depends_on: ['big'], retry_policy: { max: 1 } },
          ],
        },
      })
      await waitFor(async () => (await first.getTask(id))?.nodes[2]?.status === 'running')
      next = await handOver(rt, id, 3, functions, first)
      const applying = next.cancelTask(id, { reason: 'user asked' })
      // What the worker reads (the task document, which may lag behind the journal) shows it.
      await waitFor(async () => (await rt.store.getRunView(id, 'a'))?.cancelled === true)
      // `x` ends: the worker takes `a`'s START, reads the task, sees the cancel and gives it up.
      hold.open()
      const applied = await applying
      const t = await next.waitForTask(id, { timeoutMs: 30_000 })
      const a = t.nodes.find((n) => n.node_id === 'a')
      assert.equal(t.status, 'cancelled', `task ${t.status}: ${t.error}; a: ${a?.status} ${a?.last_error?.reason_code}`)
      assert.equal(a?.status, 'cancelled', `a: ${a?.status} ${a?.last_error?.reason_code}`)
      assert.equal(applied, true)
      assert.ok(!runs.includes('a@1'), 'a did not run')
    } finally {
      hold.open()
      await next?.stop()
      await first.stop()
      await rt.stop()
    }
  })

  test('a queued task no coordinator holds yet, cancelled: none of its nodes ever starts', async () => {
    const runs: string[] = []
    const rt = await startRuntime({ handlers: { hold: held(gate(), runs) }, coordinator: { sweepIntervalSec: 60 } })
    try {
      // Written as another process (flowkit submit, the dashboard) writes it.
      const task = buildTask({ graph: { nodes: [{ node_id: 'a', type: 'hold' }] } }, { coordinatorFns: new Set(Object.keys(BUILTIN_FUNCTIONS)) } as never, Date.now())
      const [err] = await rt.store.createTasks([task])
      assert.equal(err, null)
      assert.equal(await rt.coordinator.cancelTask(task.id, { reason: 'never mind' }), true)
      const t = await rt.coordinator.waitForTask(task.id, { timeoutMs: 20_000 })
      assert.equal(t.status, 'cancelled')
      assert.equal(t.nodes[0]?.attempt_epoch, 0, 'never dispatched')
      assert.deepEqual(runs, [])
    } finally {
      await rt.stop()
    }
  })
})
