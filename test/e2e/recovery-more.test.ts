import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { protocol, type RoleHandler, type TaskView } from 'flowkit'
import { startRuntime, noopHandler } from '../helpers/runtime.ts'
import { gate } from '../helpers/gate.ts'
import { waitFor } from '../helpers/wait.ts'

const nodeOf = (t: TaskView | null, id: string) => t!.nodes.find((n) => n.node_id === id)!

function hangingHandler(started: ReturnType<typeof gate>): RoleHandler {
  return {
    async processBatch(_b, ctx) {
      started.open()
      await ctx.sleep(60_000)
      return {}
    },
  }
}

describe('more recovery scenarios', () => {
  test('S-025 a node re-dispatched after its worker is replaced moves to exactly epoch + 1, the lease moves, a stale heartbeat is ignored', async () => {
    const started = gate()
    const rt = await startRuntime({ worker: { leaseTtlSec: 1, hbIntervalSec: 0.2 } })
    try {
      const old = await rt.addWorker({ step: hangingHandler(started) }, { workerId: 'old' })
      const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'step', retry_policy: { max: 3, backoff_sec: 0 } }] } })
      await started.wait()
      await waitFor(async () => nodeOf(await rt.coordinator.getTask(id), 'n').lease.worker_id === 'old')
      const oldLease = nodeOf(await rt.coordinator.getTask(id), 'n').lease
      await old.kill()
      rt.workers.splice(rt.workers.indexOf(old), 1)
      const release = gate()
      await rt.addWorker({ step: { async processBatch(_b, ctx) { await release.wait(ctx.signal); return {} } } }, { workerId: 'new' })
      await waitFor(async () => nodeOf(await rt.coordinator.getTask(id), 'n').lease.worker_id === 'new', { timeoutMs: 15000, message: 'lease never moved' })
      const moved = nodeOf(await rt.coordinator.getTask(id), 'n')
      assert.equal(moved.attempt_epoch, 2, 'exactly epoch + 1')
      // Heartbeats of the old epoch arrive late, one from the old worker and one naming the current
      // holder (its epoch alone says it is stale): they change nothing. A batch report of the current
      // epoch after them, on the same key, tells when they were applied.
      const event = (epoch: number, dedup: string, payload: Record<string, unknown>) => ({
        topic: rt.statusTopic('step'),
        key: `${id}:n`,
        value: protocol.encode(protocol.makeEnvelope({ msg_type: 'event', role: 'worker', task_id: id, node_id: 'n', step_type: 'step', attempt_epoch: epoch, ts_ms: Date.now(), dedup_id: dedup, payload })),
      })
      const far = Date.now() + 10_000_000
      await rt.bus.produce([
        event(1, 'late-hb', { kind: 'TASK_HEARTBEAT', worker_id: 'old', lease_id: oldLease.lease_id, lease_deadline_ts_ms: far }),
        event(1, 'late-hb-holder', { kind: 'TASK_HEARTBEAT', worker_id: 'new', lease_id: moved.lease.lease_id, lease_deadline_ts_ms: far }),
        event(2, 'marker', { kind: 'BATCH_OK', worker_id: 'new', batch_uid: 'marker', metrics: {}, artifacts_ref: null }),
      ])
      await waitFor(async () => (nodeOf(await rt.coordinator.getTask(id), 'n').batches_seen ?? 0) > (moved.batches_seen ?? 0), { message: 'marker not applied' })
      const now = nodeOf(await rt.coordinator.getTask(id), 'n')
      assert.ok((now.lease.deadline_ts_ms ?? 0) < far, 'the stale heartbeats did not move the lease')
      assert.ok((now.lease_expires_at_ms ?? 0) < far - 1_000_000, 'nor its expiry')
      release.open()
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10000 })
      assert.equal(t.status, 'finished')
      assert.equal(nodeOf(t, 'n').lease.worker_id, 'new')
      assert.ok((nodeOf(t, 'n').lease.deadline_ts_ms ?? 0) < Date.now() + 1_000_000, 'the stale heartbeat did not move the lease')
    } finally {
      await rt.stop()
    }
  })

  test('S-027 a permanent failure of an upstream (lease_expired, retries exhausted) cascades: downstream cancelled, task failed', async () => {
    const started = gate()
    const rt = await startRuntime({ worker: { leaseTtlSec: 1, hbIntervalSec: 0.2 } })
    try {
      const w = await rt.addWorker({ up: hangingHandler(started), down: noopHandler() }, { workerId: 'doomed' })
      const id = await rt.coordinator.createTask({
        graph: { nodes: [{ node_id: 'up', type: 'up', retry_policy: { max: 1, backoff_sec: 0 } }, { node_id: 'down', type: 'down', depends_on: ['up'] }] },
      })
      await started.wait()
      await waitFor(async () => nodeOf(await rt.coordinator.getTask(id), 'up').lease.worker_id === 'doomed')
      await w.kill()
      rt.workers.splice(rt.workers.indexOf(w), 1)
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 15000 })
      assert.equal(t.status, 'failed')
      assert.equal(nodeOf(t, 'up').status, 'failed')
      assert.equal(nodeOf(t, 'up').last_error?.reason_code, 'retries_exhausted')
      assert.match(nodeOf(t, 'up').last_error?.error ?? '', /lease_expired/)
      assert.equal(nodeOf(t, 'down').status, 'cancelled')
      assert.equal(nodeOf(t, 'down').attempt_epoch, 0)
    } finally {
      await rt.stop()
    }
  })

})
