/**
 * Defect 3 (issue 7): an attempt that had been replaced could still write artifacts, and
 * `merge.generic` and the pull adapters read them next to the new attempt's. Now readers see only
 * the attempt that counts, and the ArtifactsWriter of an aborted or finished run refuses writes.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryLogger, type RoleHandler } from 'flowkit'
import { startRuntime } from '../helpers/runtime.ts'
import { gate } from '../helpers/gate.ts'

test('defect 3: a late partial of a replaced attempt is neither written nor merged', async () => {
  const log = new MemoryLogger()
  const secondWrote = gate()
  const lateDone = gate()
  let store: import('flowkit').Store | null = null
  let lateWrite: 'refused' | 'written' | 'pending' = 'pending'
  const src: RoleHandler = {
    async *iterBatches() {
      yield { batch_uid: 'b0', payload: {} }
      yield { batch_uid: 'b1', payload: {} }
    },
    async processBatch(batch, ctx) {
      if (ctx.attemptEpoch === 1 && batch.batch_uid === 'b1') {
        // Attempt 1 hangs (its lease runs out), ignores its cancel and writes once attempt 2 ran.
        await secondWrote.wait()
        try {
          await ctx.artifacts.writePartial('late', { from: 'attempt 1' })
          lateWrite = 'written'
        } catch {
          lateWrite = 'refused'
        }
        // A zombie that never learnt it was replaced (cut off from the bus) writes to the store.
        await store!.upsertArtifact({ task_id: ctx.taskId, node_id: ctx.nodeId, batch_uid: 'zombie', status: 'partial', meta: { attempt: 1 }, attempt_epoch: 1, worker_id: ctx.workerId }, Date.now())
        lateDone.open()
        return { metrics: {} }
      }
      if (ctx.attemptEpoch === 2 && batch.batch_uid === 'b0') secondWrote.open()
      // Attempt 2 ends only after attempt 1's late writes: the merge that follows sees them.
      if (ctx.attemptEpoch === 2 && batch.batch_uid === 'b1') await lateDone.wait()
      return { metrics: { n: 1 }, meta: { uid: batch.batch_uid, attempt: ctx.attemptEpoch } }
    },
  }
  const rt = await startRuntime({
    logger: log,
    handlers: { src },
    // No heartbeat within the 1 s lease: attempt 1 is declared lost while it still runs.
    worker: { concurrency: 2, leaseTtlSec: 1, hbIntervalSec: 60 },
    coordinator: { defaultBackoffSec: 0 },
  })
  store = rt.store
  try {
    const id = await rt.coordinator.createTask({
      graph: {
        nodes: [
          { node_id: 's', type: 'src', retry_policy: { max: 3, backoff_sec: 0 } },
          { node_id: 'm', type: 'coordinator_fn', depends_on: ['s'], io: { fn: 'merge.generic', fn_args: { from_nodes: ['s'], target: { node_id: 'm' } } } },
        ],
      },
    })
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 30_000 })
    assert.equal(t.status, 'finished')
    const [merged] = await rt.coordinator.listArtifacts(id, { nodeId: 'm' })
    const items = (merged?.meta['merged'] ?? []) as { batch_uid: string; meta: { attempt?: number } }[]
    assert.deepEqual(
      items.map((x) => `${x.batch_uid}@${x.meta.attempt}`),
      ['b0@2', 'b1@2'],
      'only the attempt that counts is merged',
    )
    const visible = await rt.coordinator.listArtifacts(id, { nodeId: 's' })
    assert.ok(visible.every((a) => a.attempt_epoch === 2), 'readers see only attempt 2')
    // Attempt 1 tried to write after it was aborted (cancel signal on lease expiry).
    assert.equal(lateWrite, 'refused', 'the ArtifactsWriter of an aborted run refuses writes')
  } finally {
    secondWrote.open()
    lateDone.open()
    await rt.stop()
  }
})
