/**
 * Defect 1 (issue 7): a node that already finished was declared dead when the coordinator fell
 * behind — its lease was judged on the coordinator's clock while the worker's heartbeats and
 * TASK_DONE still waited in the status topic; the late report was then dropped as stale. Now a
 * lease is judged only after what is queued for it is applied, and a node whose complete artifact
 * of this attempt exists finishes from it.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryLogger, type RoleHandler } from 'flowkit'
import { startRuntime } from '../helpers/runtime.ts'
import { envelopeOf, withBusFaults } from '../helpers/bus-faults.ts'
import { gate } from '../helpers/gate.ts'
import { waitFor } from '../helpers/wait.ts'

const twoBatches = (go: Promise<void>): RoleHandler => ({
  async *iterBatches() {
    yield { batch_uid: 'b0', payload: { n: 2 } }
    yield { batch_uid: 'b1', payload: { n: 3 } }
  },
  async processBatch(batch) {
    await go
    return { metrics: { items: batch.payload['n'] as number } }
  },
})

const events = (log: MemoryLogger, component: string, event: string) => log.records.filter((r) => r.event === event && r.fields['component'] === component)

test('defect 1: a finished node whose reports wait behind a slow coordinator is not declared dead', async () => {
  const log = new MemoryLogger()
  const go = gate()
  const backlog = gate()
  let holding = false
  const rt = await startRuntime({
    logger: log,
    handlers: { src: twoBatches(go.wait()) },
    // The worker's lease lasts 1 s; its heartbeats come every 250 ms.
    worker: { leaseTtlSec: 1, hbIntervalSec: 0.25 },
    // The coordinator falls behind: its status intake stalls (as under a backlog) while holding.
    coordinatorBus: (bus) =>
      withBusFaults(bus, {
        beforeHandle: async (topic) => {
          if (holding && topic.includes('status.')) await backlog.wait()
        },
      }),
  })
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'a', type: 'src' }] } })
    await waitFor(() => events(log, 'coordinator', 'node.accepted').length === 1, { message: 'node a accepted' })
    holding = true
    go.open()
    await waitFor(() => events(log, 'worker', 'node.done').length === 1, { message: 'the worker finished node a' })
    // The coordinator stays behind for well past the lease (1 s) on its own clock.
    const behindUntil = performance.now() + 2500
    await waitFor(() => performance.now() >= behindUntil, { timeoutMs: 5000 })
    backlog.open()
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })
    const a = t.nodes.find((n) => n.node_id === 'a')!
    assert.equal(t.status, 'finished')
    assert.equal(a.attempt_epoch, 1, 'the first attempt counts: it finished')
    assert.deepEqual(a.stats, { items: 5 })
    assert.equal(events(log, 'coordinator', 'node.lease_expired').length, 0, 'no lease expired')
  } finally {
    go.open()
    backlog.open()
    await rt.stop()
  }
})

test('defect 1: a node whose TASK_DONE was lost finishes from its complete artifact when its lease runs out', async () => {
  const log = new MemoryLogger()
  const rt = await startRuntime({
    logger: log,
    handlers: { src: twoBatches(Promise.resolve()) },
    worker: { leaseTtlSec: 1, hbIntervalSec: 0.25 },
    // The worker's TASK_DONE never reaches the coordinator (lost with a broker failure).
    workerBus: (bus) =>
      withBusFaults(bus, {
        produce: (records) => records.filter((r) => (envelopeOf(r.value)?.['payload'] as { kind?: string } | undefined)?.kind !== 'TASK_DONE'),
      }),
  })
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'a', type: 'src' }] } })
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })
    const a = t.nodes.find((n) => n.node_id === 'a')!
    assert.equal(t.status, 'finished')
    assert.equal(a.attempt_epoch, 1, 'not run again: the work is done')
    assert.deepEqual(a.stats, { items: 5 })
    assert.equal(events(log, 'coordinator', 'node.recovered_complete').length, 1)
    assert.equal(events(log, 'worker', 'node.accepted').length, 1, 'the node ran once')
  } finally {
    await rt.stop()
  }
})
