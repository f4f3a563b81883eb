/**
 * A running node cancelled while its worker is dead: it ends once the holder's lease expires,
 * not at the cancel deadline (cancelGraceSec + leaseTtlSec, 75 s by default) — until then its
 * concurrency slot stayed taken (a yielded consumer's slot is what its upstream waits for).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { RoleHandler } from 'flowkit'
import { startRuntime } from '../helpers/runtime.ts'
import { gate } from '../helpers/gate.ts'
import { waitFor } from '../helpers/wait.ts'

test('a node cancelled while its worker is dead ends cancelled at its lease expiry, not after the cancel grace', async () => {
  const hold = gate()
  const held: RoleHandler = {
    async processBatch(_b, ctx) {
      await hold.wait(ctx.signal)
      return { metrics: { count: 1 } }
    },
  }
  // Leases of 2 s, heartbeats every 0.25 s; the coordinator's cancel deadline stays 30 s + 45 s.
  const rt = await startRuntime({ handlers: { held }, worker: { leaseTtlSec: 2, hbIntervalSec: 0.25 } })
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'a', type: 'held' }] } })
    await waitFor(async () => (await rt.coordinator.getTask(id))?.nodes[0]?.lease.worker_id != null, { message: 'the node is held' })
    await rt.workers[0]?.kill()
    const t0 = performance.now()
    await rt.coordinator.cancelTask(id, { reason: 'user' })
    const done = await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })
    assert.equal(done.status, 'cancelled')
    assert.equal(done.nodes[0]?.status, 'cancelled')
    assert.equal(done.nodes[0]?.end_reason, 'lease expired while cancelling')
    assert.ok(performance.now() - t0 < 20_000)
  } finally {
    hold.open()
    await rt.stop()
  }
})
