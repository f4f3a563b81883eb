/**
 * A task cancelled while its START waits at a busy worker ends `cancelled` (at its cancel
 * deadline: no worker held it), and when the worker later takes that START up, the run is told to
 * stop at once (a CANCEL signal on its ACCEPTED). Its handler ran to the end before, for a task
 * already cancelled: the START carries the task variables, so the worker had no reason to look.
 * Also when the coordinator restarted in between (the task ended and is read from the store).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Coordinator, type RoleHandler } from 'flowkit'
import { gate } from '../helpers/gate.ts'
import { startRuntime } from '../helpers/runtime.ts'
import { waitFor } from '../helpers/wait.ts'

for (const restart of [false, true])
test(`a run taken up after its task was cancelled is stopped at once${restart ? ' (the coordinator restarted in between: the task is known only from the store)' : ''}`, async () => {
  const hold = gate()
  const late: Array<{ task: string; outcome: 'aborted' | 'completed' }> = []
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
    for (const id of victims) assert.equal((await rt.coordinator.waitForTask(id, { timeoutMs: 10_000 })).status, 'cancelled')
    let coordinator = rt.coordinator
    if (restart) {
      await rt.coordinator.stop()
      coordinator = new Coordinator({ bus: rt.bus, store: rt.store, config: rt.coordinatorBase })
      await coordinator.start()
      second = coordinator
    }
    hold.open()
    assert.equal((await coordinator.waitForTask(holder, { timeoutMs: 10_000 })).status, 'finished')
    // Whatever the worker took up of the cancelled tasks was stopped, not run to its end.
    await waitFor(() => late.length === victims.length, { timeoutMs: 15_000, message: `late runs: ${JSON.stringify(late)}` })
    assert.ok(late.every((r) => r.outcome === 'aborted'), JSON.stringify(late))
  } finally {
    hold.open()
    await second?.stop()
    await rt.stop()
  }
})
