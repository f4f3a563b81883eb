/**
 * The snapshot writer and the rows that hold a large batch ledger (docs/write-path.md, "The batch
 * ledger of a long stream"), found by a review of the change:
 * - a rows write lost for good while an older snapshot of the same task was being written left the
 *   newer snapshot (which waited for those rows) pending; once later rows were written it went out
 *   without its ledger: a coordinator loading it missed the batch;
 * - after a stop gave up on its budget with the store out, the rows kept being retried for good
 *   (the process did not exit).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryStore, type Store, type TaskDoc } from 'flowkit'
import { SnapshotWriter } from '../../src/coordinator/snapshots.ts'
import type { VersionedTask } from '../../src/model/journal.ts'
import { MemoryLogger } from '../../src/log.ts'
import { SystemClock } from '../../src/clock.ts'
import { ErrorCode, FlowkitError } from '../../src/errors.ts'
import { gate } from '../helpers/gate.ts'
import { overrideStore } from '../helpers/store-proxy.ts'
import { makeNodeSpec, makeNodeState, makeTaskDoc } from '../helpers/fixtures.ts'
import { quietPeriod, waitFor } from '../helpers/wait.ts'

const taskDoc = (id: string): TaskDoc =>
  makeTaskDoc({ id, graph: { schema_version: '1.0', nodes: [makeNodeSpec('n', 'step')], edges: [], edges_ex: [] }, nodes: { n: makeNodeState('n', 'step') }, created_at_ms: Date.now() })

test('a snapshot without its ledger whose rows were lost is dropped, also while an older snapshot of its task is being written', async () => {
  const calls: string[] = []
  const snapGate = gate()
  const rowsGate = gate()
  let rowCalls = 0
  const inner = new MemoryStore()
  const store: Store = overrideStore(inner, {
    insertBatchMetrics: (orig) => async (...args) => {
      const n = ++rowCalls
      calls.push(`rows#${n}`)
      if (n === 1) {
        await rowsGate.wait()
        calls.push('rows#1 failed for good')
        throw new FlowkitError(ErrorCode.StoreError, 'injected: a non-retryable server error')
      }
      return orig(...args)
    },
    writeSnapshot: (orig) => async (...args) => {
      const d = args[0] as VersionedTask
      calls.push(`snapshot v${d.v} ${d.batches_in_rows === true ? 'without ledger' : 'with ledger'}`)
      if (d.v === 1) await snapGate.wait()
      return orig(...args)
    },
  })
  const task = taskDoc('t')
  await store.createTask(task)
  await store.createTask(taskDoc('other'))
  const writer = new SnapshotWriter(store, new SystemClock(), new MemoryLogger(), () => undefined, { idleMs: 0 })
  writer.offer({ ...task, v: 1, batches: { n: {} } } as VersionedTask)
  await waitFor(() => calls.includes('snapshot v1 with ledger'))
  // v2's row, then v2 leaving its ledger to the rows; that rows write fails while v1 is written.
  writer.offerRows([{ task_id: 't', node_id: 'n', batch_uid: 'b0', attempt_epoch: 1, metrics: { count: 1 } }])
  writer.offer({ ...task, v: 2, batches_in_rows: true } as VersionedTask)
  await waitFor(() => calls.includes('rows#1'))
  rowsGate.open()
  await waitFor(() => !writer.ledgerInRows, { message: 'rows not marked broken' })
  snapGate.open()
  // A later row of another task: written, and nothing waits for it.
  writer.offerRows([{ task_id: 'other', node_id: 'n', batch_uid: 'x', attempt_epoch: 1, metrics: { count: 1 } }])
  await writer.idle()
  assert.deepEqual(calls, ['snapshot v1 with ledger', 'rows#1', 'rows#1 failed for good', 'rows#2'])
  const doc = (await inner.getTask('t')) as VersionedTask
  assert.equal(doc.v, 1, 'the store keeps v1, which carries its ledger')
  assert.notEqual(doc.batches_in_rows, true)
})

test('after a stop gives up on its budget with the store out, the rows are not retried any more', { timeout: 20_000 }, async () => {
  let calls = 0
  const store: Store = overrideStore(new MemoryStore(), {
    insertBatchMetrics: () => async () => {
      calls++
      throw new FlowkitError(ErrorCode.StoreUnavailable, 'injected: store out', { retryable: true })
    },
  })
  const writer = new SnapshotWriter(store, new SystemClock(), new MemoryLogger(), () => undefined, { idleMs: 0 })
  writer.offerRows([{ task_id: 't', node_id: 'n', batch_uid: 'b0', attempt_epoch: 1, metrics: {} }])
  await writer.drain(300)
  await writer.idle() // the write in flight ends once its retry sees the stop
  const atStop = calls
  await quietPeriod(1500) // proves no retry happens after the stop
  assert.equal(calls, atStop)
})
