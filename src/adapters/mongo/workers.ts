/**
 * Worker registry and worker run state on MongoDB, keyed by worker id. `worker_state` also carries
 * the Python fields `active_run` (first run or null) and `updated_at` (a Date).
 */
import type { Document } from 'mongodb'
import type { WorkerInfo, WorkerStateDoc } from '../../ports/store.ts'
import { decodeFields, encodeFields, getField, putField, sanitize, toMs } from './codec.ts'
import { isDuplicateKeyError } from './errors.ts'
import { type Collections, num, upsertRetry } from './schema.ts'
import { instanceStamp, supersededBy } from '../../ports/store-rules.ts'

/** Our fields; a document in the Python layout only (`{_id, active_run, updated_at}`) is mapped. */
function decodeWorkerState(doc: Document): WorkerStateDoc {
  const workerId = doc['worker_id'] ?? doc['_id']
  let runs = getField(doc, 'active_runs')
  if (!Array.isArray(runs)) {
    const run = getField(doc, 'active_run')
    runs = run === null || run === undefined ? [] : [run]
  }
  const updated = doc['updated_at_ms']
  const state: WorkerStateDoc = {
    worker_id: String(workerId),
    active_runs: runs as WorkerStateDoc['active_runs'],
    updated_at_ms: typeof updated === 'number' ? updated : toMs(doc['updated_at']),
  }
  if (typeof doc['instance'] === 'string') state.instance = doc['instance']
  return state
}

export async function upsertWorker(c: Collections, info: WorkerInfo): Promise<void> {
  const doc = { _id: info.worker_id, ...encodeFields(info) }
  await upsertRetry(() => c.workers.replaceOne({ _id: info.worker_id }, doc, { upsert: true }))
}

export async function listWorkers(c: Collections): Promise<WorkerInfo[]> {
  return (await c.workers.find({}).sort({ _id: 1 }).toArray()).map((doc) => decodeFields(doc) as unknown as WorkerInfo)
}

export async function saveWorkerState(c: Collections, state: WorkerStateDoc): Promise<boolean> {
  const doc: Document = {
    _id: state.worker_id,
    ...encodeFields({ worker_id: state.worker_id, active_runs: state.active_runs, updated_at_ms: state.updated_at_ms }),
  }
  // The Python worker's layout of its first active run, for a fleet that reuses worker ids across languages.
  const first = state.active_runs?.[0]
  putField(doc, 'active_run', sanitize(first ? { ...first, cancel_token: null, state: 'running', checkpoint: {} } : null))
  const updatedAt = num(state.updated_at_ms)
  doc['updated_at'] = updatedAt === null ? null : new Date(updatedAt)
  const stamp = state.instance === undefined ? null : instanceStamp(state.instance)
  if (stamp === null) {
    await upsertRetry(() => c.workerState.replaceOne({ _id: state.worker_id }, doc, { upsert: true }))
    return true
  }
  doc['instance'] = state.instance
  doc['instance_stamp'] = stamp
  // Replaced unless a newer instance wrote it (a greater stamp): the filter then matches nothing,
  // and the upsert's insert collides with that document. A collision of two first writes is retried.
  const filter = { _id: state.worker_id, $or: [{ instance_stamp: { $exists: false } }, { instance_stamp: { $lte: stamp } }] }
  for (let attempt = 0; ; attempt++) {
    try {
      await c.workerState.replaceOne(filter, doc, { upsert: true })
      return true
    } catch (err) {
      if (!isDuplicateKeyError(err) || attempt >= 2) throw err
      const stored = await c.workerState.findOne({ _id: state.worker_id }, { projection: { instance: 1 } })
      if (stored !== null && supersededBy(typeof stored['instance'] === 'string' ? stored['instance'] : undefined, state.instance)) return false
    }
  }
}

export async function getWorkerState(c: Collections, workerId: string): Promise<WorkerStateDoc | null> {
  const doc = await c.workerState.findOne({ _id: workerId })
  return doc ? decodeWorkerState(doc) : null
}
