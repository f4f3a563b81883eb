/**
 * A run's status events (`status.{role}.v1`): their records (envelope, dedup id, the worker's own
 * copy of the payload, the bound of their JSON length) and `emitStatus`, which hands one to the
 * worker's StatusEmitter (status-emitter.ts).
 */
import type { BusRecord } from '../ports/bus.ts'
import { encodedLater } from '../ports/bus.ts'
import { DEDUP_ID_LENGTH, makeEnvelope, messageKey } from '../protocol/messages.ts'
import { sha256HexPrefix } from '../util/ids.ts'
import { handOver } from '../ports/store-rules.ts'
import { topicFor } from '../config.ts'
import type { WorkerCore } from './core.ts'
import type { RunInfo } from './handler.ts'
import { checkBusRecord } from './results.ts'
import { observeStatus } from '../observability/worker.ts'

/** What, with the run's ids, identifies a status event (its dedup id). */
export interface DedupParts {
  kind: string
  batch_uid?: string
  n?: number
  restored?: boolean
}

/**
 * The dedup id of a status event: `dedupId` of its fields (task, node, epoch and the parts), with
 * their canonical JSON written directly (keys in code point order, as canonicalJson sorts them).
 */
export function statusDedupId(info: RunInfo, d: DedupParts): string {
  const batch = d.batch_uid === undefined ? '' : `"batch_uid":${JSON.stringify(d.batch_uid)},`
  const n = d.n === undefined ? '' : `"n":${JSON.stringify(d.n)},`
  const restored = d.restored === undefined ? '' : `"restored":${JSON.stringify(d.restored)},`
  const canonical = `{${batch}"epoch":${JSON.stringify(info.attemptEpoch)},"kind":${JSON.stringify(d.kind)},${n}"node":${JSON.stringify(info.nodeId)},${restored}"task":${JSON.stringify(info.taskId)}}`
  return sha256HexPrefix(canonical, DEDUP_ID_LENGTH)
}

/**
 * The record of one status event of a run on `status.{role}.v1` (keyed by task and node, so a
 * run's events share a partition). `now` is the envelope's `ts_ms`: a payload with a deadline
 * computed from the worker's clock passes the same reading, so that `deadline - ts_ms` is exactly
 * the duration meant (a coordinator counts that duration on its own clock from receipt; the
 * worker's absolute time never matters).
 *
 * The envelope goes with the record (BusRecord.decoded), its text made when first read
 * (encodedLater): a coordinator in this process (memory bus) neither parses nor needs it. Its payload is the worker's own: the handler's objects in it (metrics,
 * artifacts_ref) are copied, so a handler changing them after the event was sent changes nothing,
 * as with the text.
 */
export function statusRecord(
  core: WorkerCore,
  info: RunInfo,
  payload: Record<string, unknown>,
  dedupParts: DedupParts,
  now: number = core.clock.now(),
): BusRecord {
  const env = makeEnvelope({
    msg_type: 'event',
    role: 'worker',
    task_id: info.taskId,
    node_id: info.nodeId,
    step_type: info.stepType,
    attempt_epoch: info.attemptEpoch,
    ts_ms: now,
    dedup_id: statusDedupId(info, dedupParts),
    payload: ownPayload(core.workerId, payload),
  })
  const key = messageKey(info.taskId, info.nodeId)
  // Its text is made when first read: a coordinator in this process (memory bus) reads the envelope.
  // The bound of its length, for the size check: the envelope's fields, and the payload's from the
  // texts ownPayload made (no walk through the handler's objects).
  const bound = ENVELOPE_FIELDS_BOUND + 6 * (info.taskId.length + info.nodeId.length + info.stepType.length + env.corr_id.length + env.dedup_id.length) + payloadBound
  const record = encodedLater(topicFor(core.config.topicStatusFmt, info.stepType), key, handOver(env), bound)
  // Observability: the run's trace context travels with its events (W3C headers, additive).
  const headers = observeStatus(core.runs.get(key), info, payload, now)
  if (headers !== undefined) record.headers = headers
  return record
}

/**
 * At least the JSON length of a status envelope without its ids' characters and payload: its keys,
 * punctuation, quotes of the ids, constant strings (`event`, `worker`) and three numbers.
 */
const ENVELOPE_FIELDS_BOUND = 400

/** At least the JSON length of the last payload ownPayload made (set by it). */
let payloadBound = 0

/**
 * `{ worker_id, ...payload }` with the objects in `payload` copied (as their JSON text reads); sets
 * `payloadBound`.
 */
function ownPayload(workerId: string, payload: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { worker_id: workerId }
  let bound = 2 + 15 + 6 * workerId.length
  for (const k of Object.keys(payload)) {
    const v = payload[k]
    if (v === undefined) continue
    bound += 4 + 6 * k.length
    if (v === null || typeof v !== 'object') {
      out[k] = v
      bound += typeof v === 'string' ? 2 + 6 * v.length : 24
    } else if (isEmptyObject(v)) {
      out[k] = {}
      bound += 2
    } else {
      const flat = flatCopy(v)
      if (flat !== null) {
        out[k] = flat
        bound += flatBound
      } else {
        const text = JSON.stringify(v)
        out[k] = JSON.parse(text)
        bound += text.length
      }
    }
  }
  payloadBound = bound
  return out
}

/** At least the JSON length of the last copy flatCopy made (set by it). */
let flatBound = 0

/**
 * A copy of a plain object whose values are all finite numbers, strings, booleans or null (what a
 * handler's metrics are): the same as its JSON round trip, made without the text. Null for any
 * other object (the caller copies it through JSON). Sets `flatBound`.
 */
function flatCopy(v: object): Record<string, unknown> | null {
  if (Array.isArray(v) || Object.getPrototypeOf(v) !== Object.prototype) return null
  const src = v as Record<string, unknown>
  const out: Record<string, unknown> = {}
  let bound = 2
  for (const k in src) {
    // Not own (inherited), or `__proto__` (assigning it would set the copy's prototype): the JSON path.
    if (!Object.hasOwn(src, k) || k === '__proto__') return null
    const x = src[k]
    if (typeof x === 'number') {
      if (!Number.isFinite(x)) return null
      bound += 28 + 6 * k.length
    } else if (typeof x === 'string') bound += 6 + 6 * (k.length + x.length)
    else if (x === null || typeof x === 'boolean') bound += 9 + 6 * k.length
    else return null
    out[k] = x === 0 ? 0 : x // -0 reads 0 through JSON
  }
  flatBound = bound
  return out
}

function isEmptyObject(v: object): boolean {
  if (Array.isArray(v) || Object.getPrototypeOf(v) !== Object.prototype) return false
  for (const _ in v) return false
  return true
}

/**
 * Reports one status event of a run (see statusRecord) and resolves once it is on the bus. An
 * event too large for one bus message is not sent: the promise rejects with a permanent error.
 * `hold`: the event may wait a moment for the run's next one (StatusEmitter.send).
 */
export function emitStatus(
  core: WorkerCore,
  info: RunInfo,
  payload: Record<string, unknown>,
  dedupParts: DedupParts,
  now: number = core.clock.now(),
  hold = false,
): Promise<void> {
  let record: BusRecord
  try {
    record = statusRecord(core, info, payload, dedupParts, now)
    checkBusRecord(`${String(payload['kind'])} status event`, record, core.config.maxMessageBytes)
  } catch (err) {
    return Promise.reject(err)
  }
  return core.status.send(record, hold)
}
