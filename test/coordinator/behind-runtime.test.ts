/**
 * A runtime that outlived a hand-over (another coordinator claimed the task and dispatched a newer
 * attempt) took that attempt's reports for stale and dropped them, acknowledged: the task waited
 * for reports that had come and gone. An epoch newer than the runtime's is only written by another
 * coordinator (epochs are durable before their START goes out), so the runtime is loaded again and
 * the reports are applied; a forged epoch makes it load once, then is stale.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryLogger, protocol, type TaskView } from 'flowkit'
import { gate } from '../helpers/gate.ts'
import { startRuntime } from '../helpers/runtime.ts'
import { waitFor } from '../helpers/wait.ts'

const nodeOf = (t: TaskView | null, id: string) => t?.nodes.find((n) => n.node_id === id)

function report(taskId: string, epoch: number, payload: Record<string, unknown>, tag: string): string {
  return protocol.encode(protocol.makeEnvelope({ msg_type: 'event', role: 'worker', task_id: taskId, node_id: 'n', step_type: 'step', attempt_epoch: epoch, ts_ms: Date.now(), dedup_id: `behind-${tag}`, payload }))
}

test("reports of an attempt another coordinator dispatched make a stale runtime load the task again, and count", async () => {
  const held = gate()
  const logger = new MemoryLogger()
  const rt = await startRuntime({ logger, handlers: { step: { async processBatch(_b, ctx) { await held.wait(ctx.signal); return { metrics: { count: 1 } } } } } })
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'step' }] } })
    await waitFor(async () => (await rt.store.getTask(id))?.nodes['n']?.accepted_at_ms != null, { message: 'n never accepted' })
    // Another coordinator's entries (written behind this one's back): n moved to epoch 2, held by "w2".
    const stored = (await rt.store.getTask(id))?.nodes['n']
    assert.ok(stored !== undefined)
    const seq = Math.max(...(await rt.store.readJournal([id])).map((e) => e.seq))
    const now = Date.now()
    const lease = { worker_id: 'w2', lease_id: 'l2', deadline_ts_ms: now + 600_000 }
    const moved = { ...stored, attempt_epoch: 2, status: 'running' as const, lease, dispatched_at_ms: now, accepted_at_ms: now, last_event_at_ms: now, lease_expires_at_ms: now + 600_000 }
    assert.deepEqual(await rt.store.appendJournal([{ task_id: id, seq: seq + 1, at_ms: now, writer: 'another-coordinator', events: ['owner another-coordinator generation 7', 'dispatch n@2'], nodes: [moved] }]), [true])
    // Epoch 2's worker reports a batch and the end; a forged epoch 9 report comes with them.
    const topic = rt.statusTopic('step')
    const key = `${id}:n`
    await rt.bus.produce([
      { topic, key, value: report(id, 2, { kind: 'BATCH_OK', worker_id: 'w2', batch_uid: 'b0', metrics: { count: 5 }, artifacts_ref: null }, 'b0') },
      { topic, key, value: report(id, 9, { kind: 'BATCH_OK', worker_id: 'evil', batch_uid: 'zz', metrics: { count: 1000 }, artifacts_ref: null }, 'forged') },
      { topic, key, value: report(id, 2, { kind: 'TASK_DONE', worker_id: 'w2', metrics: {}, artifacts_ref: null }, 'done') },
    ])
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })
    assert.equal(t.status, 'finished')
    assert.equal(nodeOf(t, 'n')?.attempt_epoch, 2)
    assert.deepEqual(nodeOf(t, 'n')?.stats, { count: 5 }, "epoch 2's batch counted, the forged one not")
    assert.ok(logger.records.some((r) => r.event === 'coordinator.task_behind' && r.fields['attempt_epoch'] === 2))
    assert.ok(logger.records.some((r) => r.event === 'event.stale_epoch' && r.fields['attempt_epoch'] === 9), 'the forged epoch is stale once the task is loaded again')
  } finally {
    held.open()
    await rt.stop()
  }
})
