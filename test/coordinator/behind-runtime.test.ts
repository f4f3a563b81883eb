/**
 * A runtime that outlived a hand-over (another coordinator claimed the task and dispatched a newer
 * attempt) took that attempt's reports for stale and dropped them, acknowledged: the task waited
 * for reports that had come and gone. An epoch newer than the runtime's is only written by another
 * coordinator (epochs are durable before their START goes out), so the runtime is loaded again and
 * the reports are applied; a forged epoch makes it load once, then is stale.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { type JournalEntry, MemoryBus, MemoryLogger, MemoryStore, protocol, type TaskView } from 'flowkit'
import { gate } from '../helpers/gate.ts'
import { overrideStore } from '../helpers/store-proxy.ts'
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

test('a report of a newer epoch while changes of the runtime are unwritten keeps them: a forged failure of the epoch before changes nothing', async () => {
  // Task t: n fails its first attempt; its retry (epoch 2) is dispatched by a timer while the
  // flush in flight (task x's batch, held in the store) keeps t's dispatch unwritten. Then a forged
  // report of epoch 99 and a forged permanent failure of epoch 1 arrive for t.
  const logger = new MemoryLogger()
  const holdX = gate()
  const xBatch = gate()
  let xId = ''
  let holding = false
  const store = overrideStore(new MemoryStore(), {
    appendJournal: (f) => async (...a: unknown[]) => {
      const entries = a[0] as JournalEntry[]
      if (holding && entries.some((e) => e.task_id === xId)) await holdX.wait()
      return f(...a)
    },
  })
  const rt = await startRuntime({
    bus: new MemoryBus(),
    store,
    logger,
    worker: { concurrency: 4 },
    handlers: {
      step: {
        async processBatch(_b, ctx) {
          if (ctx.attemptEpoch === 1) throw new Error('transient on the first attempt')
          return { metrics: { count: 1 } }
        },
      },
      other: {
        async *iterBatches() {
          yield { batch_uid: 'x0', payload: {} }
          yield { batch_uid: 'x1', payload: {} }
        },
        async processBatch(batch, ctx) {
          if (batch.batch_uid === 'x0') await xBatch.wait(ctx.signal)
          else await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }))
          return { metrics: { count: 1 } }
        },
      },
    },
  })
  try {
    xId = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'x', type: 'other' }] } })
    await waitFor(async () => (await rt.store.getTask(xId))?.nodes['x']?.accepted_at_ms != null, { message: 'x never accepted' })
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'step', retry_policy: { max: 3, backoff_sec: 1 } }] } })
    await waitFor(async () => (await rt.store.getTask(id))?.nodes['n']?.status === 'deferred', { message: 'n never deferred' })
    // x's batch: its entry is held in the store, so the next flush waits.
    holding = true
    xBatch.open()
    await waitFor(async () => nodeOf(await rt.coordinator.getTask(xId), 'x')?.stats['count'] === 1, { message: "x's batch never applied" })
    await waitFor(async () => nodeOf(await rt.coordinator.getTask(id), 'n')?.attempt_epoch === 2, { message: 'n never dispatched again', timeoutMs: 20_000 })
    assert.equal((await rt.store.getTask(id))?.nodes['n']?.attempt_epoch, 1, "t's dispatch of epoch 2 is not written yet")
    const topic = rt.statusTopic('step')
    const key = `${id}:n`
    await rt.bus.produce([
      { topic, key, value: report(id, 99, { kind: 'TASK_DONE', worker_id: 'evil', metrics: {}, artifacts_ref: null }, 'dirty-99') },
      { topic, key, value: report(id, 1, { kind: 'TASK_FAILED', worker_id: 'evil', reason_code: 'forged', permanent: true, error: 'forged' }, 'dirty-1') },
    ])
    await waitFor(() => logger.records.some((r) => (r.event === 'event.stale_epoch' || r.event === 'coordinator.task_behind') && r.fields['attempt_epoch'] === 99), { message: 'the forged report never applied' })
    holdX.open()
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })
    assert.equal(t.status, 'finished', `t ${t.status}: ${nodeOf(t, 'n')?.last_error?.error ?? ''}`)
    assert.equal(nodeOf(t, 'n')?.attempt_epoch, 2)
    assert.ok(!logger.records.some((r) => r.event === 'coordinator.task_behind' && r.fields['task_id'] === id), 'the runtime with unwritten changes is not loaded again')
  } finally {
    holding = false
    holdX.open()
    xBatch.open()
    await rt.stop()
  }
})
