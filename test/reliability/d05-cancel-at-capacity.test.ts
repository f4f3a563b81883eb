/**
 * Defect 5 (issue 7): a cancel never reached a running node whose worker was at capacity — its
 * command subscriptions were paused (TASK_CANCEL waited behind them), and when the cancel was
 * decided before the node's ACCEPTED arrived, no CANCEL signal followed once the holder was known.
 * Now the holder gets the signal (on the worker's own signal topic, never paused) as soon as its
 * ACCEPTED is applied.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryLogger, type RoleHandler } from 'flowkit'
import { startRuntime } from '../helpers/runtime.ts'
import { withBusFaults } from '../helpers/bus-faults.ts'
import { gate } from '../helpers/gate.ts'
import { waitFor } from '../helpers/wait.ts'

/** Runs until cancelled (cooperative). */
const untilCancelled: RoleHandler = {
  async processBatch(_batch, ctx) {
    await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }))
    return { metrics: {} }
  },
}

test('defect 5: a cancel decided before ACCEPTED reaches the node on a worker at capacity', async () => {
  const log = new MemoryLogger()
  const intake = gate()
  let holding = true
  const rt = await startRuntime({
    logger: log,
    handlers: { slow: untilCancelled },
    worker: { concurrency: 1 },
    // A long grace: without the signal the task would only end when the cancel deadline passes.
    coordinator: { cancelGraceSec: 60 },
    // The coordinator has not applied the workers' reports yet when the cancel is decided.
    coordinatorBus: (bus) =>
      withBusFaults(bus, {
        beforeHandle: async (topic) => {
          if (holding && topic.includes('status.')) await intake.wait()
        },
      }),
  })
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'a', type: 'slow' }, { node_id: 'b', type: 'slow' }] } })
    // One node runs on the worker, the other's start waits for its only slot (commands paused).
    await waitFor(() => log.records.some((r) => r.event === 'node.accepted' && r.fields['component'] === 'worker'), { message: 'a node runs' })
    await waitFor(() => log.records.some((r) => r.event === 'worker.at_capacity'), { message: 'the worker is at capacity' })
    assert.equal(await rt.coordinator.cancelTask(id), true)
    holding = false
    intake.open()
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })
    assert.equal(t.status, 'cancelled')
    assert.ok(log.records.some((r) => r.event === 'node.cancelled' && r.fields['component'] === 'worker'), 'the running node was cancelled on its worker')
  } finally {
    intake.open()
    await rt.stop()
  }
})
