/**
 * A task cancelled while its START waits at a busy worker (its partition paused, the TASK_CANCEL
 * behind the START) ends `cancelled` at once, and that START is never run: the coordinator claims
 * the unaccepted attempt for nobody, so the worker drops it when a slot frees
 * (`worker.attempt_held_elsewhere`). Before, the handler ran — up to the whole queue's time after
 * the cancel (9.4 s in a worker audit), its signal aborted only after the run had begun — for a
 * task already cancelled. Also when the coordinator restarted in between (the task ended and is
 * read from the store). The same for a START no live worker of its type could take (none is up:
 * a mistyped type, a deployment not up yet): before, its task stayed cancelling for the cancel
 * deadline and the lease after it, 75 s by default.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Coordinator, MemoryLogger, type RoleHandler } from 'flowkit'
import { HANDED_BACK_HOLDER } from '../../src/ports/store.ts'
import { gate } from '../helpers/gate.ts'
import { startRuntime } from '../helpers/runtime.ts'
import { waitFor } from '../helpers/wait.ts'

for (const restart of [false, true])
test(`a START waiting at a busy worker when its task is cancelled is never run${restart ? ' (the coordinator restarted in between: the task is known only from the store)' : ''}`, async () => {
  const hold = gate()
  const late: Array<{ task: string; outcome: 'aborted' | 'completed' }> = []
  const logger = new MemoryLogger()
  let holder = ''
  const step: RoleHandler = {
    async processBatch(_b, ctx) {
      if (ctx.taskId === holder) {
        await hold.wait(ctx.signal)
        return {}
      }
      const outcome = await new Promise<'aborted' | 'completed'>((resolve) => {
        const t = setTimeout(() => resolve('completed'), 5000)
        ctx.signal.addEventListener('abort', () => {
          clearTimeout(t)
          resolve('aborted')
        }, { once: true })
      })
      late.push({ task: ctx.taskId, outcome })
      return {}
    },
  }
  let second: Coordinator | null = null
  const rt = await startRuntime({
    logger,
    handlers: { step },
    worker: { concurrency: 1, leaseTtlSec: 1, hbIntervalSec: 0.2 },
    coordinator: { cancelGraceSec: 0.2, leaseTtlSec: 1 },
  })
  try {
    const graph = { nodes: [{ node_id: 'n', type: 'step' }] }
    holder = await rt.coordinator.createTask({ graph })
    await waitFor(async () => (await rt.coordinator.getTask(holder))?.nodes[0]?.accepted_at_ms != null)
    // Their STARTs wait: the worker's only slot is taken.
    const victims = [await rt.coordinator.createTask({ graph }), await rt.coordinator.createTask({ graph })]
    for (const id of victims) assert.equal(await rt.coordinator.cancelTask(id), true)
    // Cancelled at once, not at a cancel deadline: nobody will run their STARTs.
    for (const id of victims) assert.equal((await rt.coordinator.waitForTask(id, { timeoutMs: 10_000 })).status, 'cancelled')
    assert.equal(logger.records.filter((r) => r.event === 'node.withdrawn').length, victims.length)
    let coordinator = rt.coordinator
    if (restart) {
      await rt.coordinator.stop()
      coordinator = new Coordinator({ bus: rt.bus, store: rt.store, config: rt.coordinatorBase })
      await coordinator.start()
      second = coordinator
    }
    hold.open()
    assert.equal((await coordinator.waitForTask(holder, { timeoutMs: 10_000 })).status, 'finished')
    // The worker took their STARTs up when its slot freed, and dropped them: no handler ran.
    const dropped = () => logger.records.filter((r) => r.event === 'worker.attempt_held_elsewhere' && victims.includes(String(r.fields['task_id']))).length
    await waitFor(() => dropped() === victims.length, { timeoutMs: 15_000, message: `dropped ${dropped()}; late runs: ${JSON.stringify(late)}` })
    assert.deepEqual(late, [])
  } finally {
    hold.open()
    await second?.stop()
    await rt.stop()
  }
})

test('a cancelled START of a type no live worker serves is withdrawn at once, and the worker of that type started later never runs it (before: cancelling until the cancel deadline and the lease after it, 75 s by default)', async () => {
  const logger = new MemoryLogger()
  const ran: string[] = []
  const late: RoleHandler = {
    async processBatch(_b, ctx) {
      ran.push(ctx.taskId)
      return { metrics: { count: 1 } }
    },
  }
  // Default cancel grace and lease: the cancel must not wait for them.
  const rt = await startRuntime({ logger, handlers: { other: late } })
  try {
    await waitFor(async () => (await rt.coordinator.listWorkers()).some((w) => w.status === 'online'), { message: 'the worker announced' })
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'late' }] } })
    await waitFor(async () => (await rt.coordinator.getTask(id))?.nodes[0]?.status === 'running', { message: 'the node was dispatched' })
    const cancelledAt = Date.now()
    assert.equal(await rt.coordinator.cancelTask(id), true)
    const view = await rt.coordinator.waitForTask(id, { timeoutMs: 15_000 })
    assert.equal(view.status, 'cancelled')
    assert.ok(Date.now() - cancelledAt < 15_000)
    assert.equal(logger.records.filter((r) => r.event === 'node.withdrawn' && r.fields['task_id'] === id).length, 1)
    assert.equal(await rt.store.attemptHolder(id, 'n', 1), HANDED_BACK_HOLDER)
    // The worker the node waited for comes up: it finds the START in its partition and drops it.
    await rt.addWorker({ late })
    await waitFor(() => logger.records.some((r) => r.event === 'worker.attempt_held_elsewhere' && r.fields['task_id'] === id), { message: 'the START dropped' })
    assert.deepEqual(ran, [], 'its handler never ran')
  } finally {
    await rt.stop()
  }
})
