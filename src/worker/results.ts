/**
 * What a handler hands back is checked before the worker stores or sends any of it: a malformed
 * result (metrics that are not an object of numbers, a meta that is not an object, …) or one too
 * large for the store or the bus fails the run permanently, with a message that names the field,
 * what is wrong, and for a size the size and the limit. Without these checks such a result was
 * refused downstream (the coordinator drops an event whose metrics are not an object; the store or
 * the broker refuses an oversized document or message with a driver error) and the node hung until
 * its lease expired, or failed with a cryptic driver message.
 */
import { PermanentError, errorMessage } from '../errors.ts'
import { errorForNode, redactText } from '../log.ts'
import { type BusRecord, isTextLater } from '../ports/bus.ts'
import type { Batch, BatchResult, FinalizeResult } from './handler.ts'
import { MAX_EVENT_VALUE_DEPTH, deeperThan } from '../protocol/parse.ts'
import { MAX_REASON_CODE_CHARS, cutReasonCode } from '../protocol/messages.ts'
import { isWellFormed } from '../util/text.ts'
import { MAX_ARTIFACT_META_BYTES, handOver } from '../ports/store-rules.ts'
import { closest } from '../graph/parse-context.ts'
import { Lossy, bsonSizeBound, lossMessage } from './json-loss.ts'

/**
 * Largest message the worker sends on the bus. Kafka's default `max.message.bytes` is 1 MiB (+12);
 * a record also needs room for its batch framing, so a record's key, value and headers together
 * must stay BUS_RECORD_HEADROOM_BYTES under it. (No worker config key sets it yet.)
 */
export const MAX_BUS_MESSAGE_BYTES = 1024 * 1024
export const BUS_RECORD_HEADROOM_BYTES = 1024

export { MAX_ARTIFACT_META_BYTES }

export { MAX_REASON_CODE_CHARS }

/** Longest batch_uid (characters): it goes in every event and artifact of its batch. */
export const MAX_BATCH_UID_CHARS = 2048

/** A handler's result the worker refuses: a permanent failure of the run, whatever classifyError says. */
export class HandlerResultError extends PermanentError {
  constructor(message: string, reasonCode: 'bad_handler_result' | 'result_too_large', options?: { cause?: unknown }) {
    super(message, reasonCode, options)
    this.name = 'HandlerResultError'
  }
}

function describe(v: unknown): string {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'array'
  if (typeof v === 'number' && !Number.isFinite(v)) return String(v)
  if (v === '') return 'an empty string'
  return typeof v
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

function bad(label: string, message: string): HandlerResultError {
  return new HandlerResultError(`${label}: ${message}`, 'bad_handler_result')
}

function checkMetrics(label: string, metrics: unknown): Record<string, number> | undefined {
  if (metrics === undefined || metrics === null) return undefined
  if (!isObject(metrics)) throw bad(label, `metrics must be an object of numbers, got ${describe(metrics)}`)
  for (const [k, v] of Object.entries(metrics)) {
    if (typeof v !== 'number') throw bad(label, `metrics must be an object of numbers, got ${describe(v)} for metrics.${k}`)
    if (!Number.isFinite(v)) throw bad(label, `metrics.${k} must be a finite number, got ${describe(v)}`)
  }
  return metrics as Record<string, number>
}

function checkObject(label: string, field: string, v: unknown): Record<string, unknown> | undefined {
  if (v === undefined || v === null) return undefined
  if (!isObject(v)) throw bad(label, `${field} must be an object, got ${describe(v)}`)
  return v
}

/** `artifacts_ref` goes in a status event as it is: plain JSON, nested at most as a coordinator reads it. */
function checkRef(label: string, v: unknown): Record<string, unknown> | undefined {
  const ref = checkObject(label, 'artifacts_ref', v)
  if (ref === undefined) return undefined
  if (deeperThan(ref, MAX_EVENT_VALUE_DEPTH)) throw bad(label, `artifacts_ref is nested deeper than ${MAX_EVENT_VALUE_DEPTH} levels (a coordinator refuses such an event)`)
  try {
    JSON.stringify(ref)
  } catch (err) {
    throw new HandlerResultError(`${label}: artifacts_ref cannot be encoded as JSON: ${err instanceof Error ? err.message : 'not JSON'}`, 'bad_handler_result', { cause: err })
  }
  return ref
}

/**
 * An exception from reading a handler's result itself (a getter that throws, a Proxy) makes it a
 * malformed result, permanent like the others (not a handler error that a retry might cure: the
 * same code builds the same object again).
 */
function unreadable(label: string, err: unknown): HandlerResultError {
  return err instanceof HandlerResultError ? err : new HandlerResultError(`${label} could not be read: ${errorMessage(err)}`, 'bad_handler_result', { cause: err })
}

/** Checks what processBatch returned; `undefined` (nothing) is an empty success. */
export function checkBatchResult(res: unknown): BatchResult {
  try {
    return batchResult(res)
  } catch (err) {
    throw unreadable('processBatch result', err)
  }
}

function batchResult(res: unknown): BatchResult {
  const label = 'processBatch result'
  if (res === undefined || res === null) return {}
  if (!isObject(res)) throw new HandlerResultError(`${label} must be an object (or nothing), got ${describe(res)}`, 'bad_handler_result')
  const out: BatchResult = {}
  if (res['success'] !== undefined) {
    if (typeof res['success'] !== 'boolean') throw bad(label, `success must be a boolean, got ${describe(res['success'])}`)
    out.success = res['success']
  }
  const metrics = checkMetrics(label, res['metrics'])
  if (metrics) out.metrics = metrics
  const meta = checkObject(label, 'meta', res['meta'])
  if (meta) out.meta = meta
  const ref = checkRef(label, res['artifacts_ref'])
  if (ref) out.artifacts_ref = ref
  const code = res['reason_code']
  if (code !== undefined && code !== null) {
    if (typeof code !== 'string' || code.length === 0) throw bad(label, `reason_code must be a non-empty string, got ${describe(code)}`)
    out.reason_code = cutReasonCode(code)
  }
  if (res['permanent'] !== undefined && res['permanent'] !== null) {
    if (typeof res['permanent'] !== 'boolean') throw bad(label, `permanent must be a boolean, got ${describe(res['permanent'])}`)
    out.permanent = res['permanent']
  }
  const error = res['error']
  if (error !== undefined && error !== null) {
    if (typeof error !== 'string') throw bad(label, `error must be a string, got ${describe(error)}`)
    out.error = error
  }
  return out
}

/** Checks what finalize returned; `undefined` (nothing) is an empty result. */
export function checkFinalizeResult(res: unknown): FinalizeResult {
  try {
    return finalizeResult(res)
  } catch (err) {
    throw unreadable('finalize result', err)
  }
}

function finalizeResult(res: unknown): FinalizeResult {
  const label = 'finalize result'
  if (res === undefined || res === null) return {}
  if (!isObject(res)) throw new HandlerResultError(`${label} must be an object (or nothing), got ${describe(res)}`, 'bad_handler_result')
  const out: FinalizeResult = {}
  const metrics = checkMetrics(label, res['metrics'])
  if (metrics) out.metrics = metrics
  const meta = checkObject(label, 'meta', res['meta'])
  if (meta) out.meta = meta
  const ref = checkRef(label, res['artifacts_ref'])
  if (ref) out.artifacts_ref = ref
  return out
}

/**
 * Checks a batch uid a handler gave (a batch's, or one it writes a partial artifact for): at most
 * MAX_BATCH_UID_CHARS, and well-formed Unicode. A lone surrogate (half of a UTF-16 pair) cannot be
 * written as UTF-8: MongoDB stores U+FFFD in its place, so `p\ud800` and `p\ud801` became one
 * artifact there (the memory store kept both) and a reader lost batches.
 */
export function checkBatchUid(label: string, uid: string): void {
  if (uid.length > MAX_BATCH_UID_CHARS) throw bad(label, `batch_uid is ${uid.length} characters long, more than ${MAX_BATCH_UID_CHARS} (it goes in every event and artifact of the batch)`)
  if (!isWellFormed(uid)) throw bad(label, `batch_uid ${JSON.stringify(uid)} is not well-formed Unicode (a lone surrogate): it cannot be stored as UTF-8`)
}

/** Checks one batch of iterBatches (or loadInput's single batch); `index` counts from 0. */
export function checkBatch(batch: unknown, index: number): Batch {
  const label = `iterBatches batch #${index}`
  if (!isObject(batch)) throw new HandlerResultError(`${label} must be an object { batch_uid?, payload }, got ${describe(batch)}`, 'bad_handler_result')
  const uid = batch['batch_uid']
  if (typeof uid === 'string') checkBatchUid(label, uid)
  // (A number was replaced by the batch's position, silently: a retry that yields in another
  // order would then count the same data under other uids.)
  else if (uid !== undefined && uid !== null) throw bad(label, `batch_uid must be a string, got ${describe(uid)}${typeof uid === 'number' ? ` (use String(${uid}))` : ''}`)
  if (batch['payload'] !== undefined && !isObject(batch['payload'])) throw bad(label, `payload must be an object, got ${describe(batch['payload'])}`)
  return batch as unknown as Batch
}

/**
 * Checks that a meta can be stored as an artifact: an object, encodable as JSON, and within
 * MAX_ARTIFACT_META_BYTES as the store encodes it (an upper bound of its BSON size).
 */
export function checkArtifactMeta(what: string, meta: unknown): Record<string, unknown> {
  if (!isObject(meta)) throw new HandlerResultError(`${what} must be an object, got ${describe(meta)}`, 'bad_handler_result')
  let json: string
  try {
    json = JSON.stringify(meta)
  } catch (err) {
    throw new HandlerResultError(`${what} cannot be encoded as JSON: ${err instanceof Error ? err.message : String(err)}`, 'bad_handler_result', { cause: err })
  }
  // Stored as BSON when it can be, else as JSON text: either way at most this many bytes. The walk
  // also refuses what JSON would store changed without a word (NaN, a Map's entries).
  let bound: number
  try {
    bound = bsonSizeBound(meta, 0)
  } catch (err) {
    if (!(err instanceof Lossy)) throw err
    throw new HandlerResultError(lossMessage(what, 'meta', err), 'bad_handler_result')
  }
  const bytes = Math.max(Buffer.byteLength(json, 'utf8') + 16, bound)
  if (bytes > MAX_ARTIFACT_META_BYTES) {
    throw new HandlerResultError(
      `${what} is too large: ${bytes} bytes encoded for the store, more than the limit of ${MAX_ARTIFACT_META_BYTES} bytes (the store's 16 MiB document limit, less room for the artifact's other fields)`,
      'result_too_large',
    )
  }
  // The worker's own copy, taken now: a handler that reuses the object for its next batch changes
  // nothing (the artifact is written later, batched). Handed over: a store in this process keeps it.
  return handOver(JSON.parse(json) as Record<string, unknown>)
}

/** Checks that a record fits in one bus message of `maxBytes` (the worker's `maxMessageBytes`). */
export function checkBusRecord(what: string, record: BusRecord, maxBytes: number = MAX_BUS_MESSAGE_BYTES): void {
  const limit = maxBytes - BUS_RECORD_HEADROOM_BYTES
  // A UTF-16 code unit takes at most 3 UTF-8 bytes: a record whose characters fit three times over
  // needs no exact count. A record whose text is not made yet (encodedLater) is measured by a bound
  // of its text's length, from its object: made only when the bound does not fit.
  let chars = record.key === null ? 0 : record.key.length
  for (const k in record.headers ?? {}) chars += k.length + (record.headers?.[k]?.length ?? 0)
  if (isTextLater(record) && (chars + (record.lengthBound ?? jsonLengthBound(record.decoded, 0))) * 3 <= limit) return
  chars += record.value.length
  if (chars * 3 <= limit) return
  let bytes = Buffer.byteLength(record.value, 'utf8') + (record.key === null ? 0 : Buffer.byteLength(record.key, 'utf8'))
  for (const [k, v] of Object.entries(record.headers ?? {})) bytes += Buffer.byteLength(k, 'utf8') + Buffer.byteLength(v, 'utf8')
  if (bytes > limit) {
    throw new HandlerResultError(
      `${what} is too large: ${bytes} bytes encoded, more than the bus message limit of ${limit} bytes (worker config maxMessageBytes ${maxBytes}, less ${BUS_RECORD_HEADROOM_BYTES} bytes of record framing)`,
      'result_too_large',
    )
  }
}

/**
 * The text of a run's failure as it is sent (and stored in the node's `last_error`, shown by
 * getTask and the CLI): secret-looking values redacted, cut to MAX_ERROR_CHARS.
 */
export function failureText(err: unknown): string {
  let text: string
  try {
    text = errorMessage(err)
  } catch {
    // A thrown value that cannot be turned into text (an object without a prototype, say).
    text = Object.prototype.toString.call(err)
  }
  return errorForNode(text)
}

/** Most stack frames a failure's log record carries. */
const MAX_STACK_FRAMES = 12

/**
 * Where a handler's error was thrown, for the worker's `node.failed` record (not sent: the node's
 * error stays its message): the frames of its stack, at most MAX_STACK_FRAMES, secret-looking
 * text masked; undefined for a thrown value without one.
 */
export function failureStack(err: unknown): string | undefined {
  let stack: unknown
  try {
    stack = err instanceof Error ? err.stack : undefined
  } catch {
    return undefined
  }
  if (typeof stack !== 'string') return undefined
  const frames = stack.split('\n').filter((l) => /^\s+at /.test(l)).slice(0, MAX_STACK_FRAMES).map((l) => l.trim())
  return frames.length === 0 ? undefined : redactText(frames.join('\n'))
}


/**
 * At least the length of `JSON.stringify(v)` for a JSON-like value: a string counts 6 characters
 * per code unit (the longest escape, `\u001f`) and its quotes, a number 24, other scalars 5, and
 * objects and arrays their keys, punctuation and members. `depth` stops runaway recursion (an
 * unbounded result: the caller then measures the text itself).
 */
export function jsonLengthBound(v: unknown, depth: number): number {
  if (depth > 64) return Number.POSITIVE_INFINITY
  switch (typeof v) {
    case 'string':
      return 2 + 6 * v.length
    case 'number':
      return 24
    case 'object': {
      if (v === null) return 5
      let n = 2
      if (Array.isArray(v)) {
        for (const x of v) n += 1 + jsonLengthBound(x, depth + 1)
        return n
      }
      const o = v as Record<string, unknown>
      for (const k in o) n += 4 + 6 * k.length + jsonLengthBound(o[k], depth + 1)
      return n
    }
    default:
      return 5 // booleans, and what JSON leaves out or writes as null
  }
}

/**
 * Refuses a value that JSON would store changed without a word (NaN, a Map, an Error, a typed
 * array, … at any depth): `what` names where it came from (`checkpoint`), the message the path.
 */
export function checkLossless(what: string, value: unknown): void {
  try {
    bsonSizeBound(value, 0)
  } catch (err) {
    if (!(err instanceof Lossy)) throw err
    throw new HandlerResultError(lossMessage(what, what, err), 'bad_handler_result')
  }
}

/** The fields a processBatch result may have, and a finalize result. */
export const BATCH_RESULT_FIELDS: ReadonlySet<string> = new Set(['success', 'metrics', 'meta', 'artifacts_ref', 'reason_code', 'permanent', 'error'])
export const FINALIZE_RESULT_FIELDS: ReadonlySet<string> = new Set(['metrics', 'meta', 'artifacts_ref'])

/**
 * A field of a handler's result that flowkit does not read (`metric` for `metrics`: the stats would
 * silently stay 0), with the known field it most likely meant; null when there is none. Cheap on
 * the usual result (a for-in over its few keys).
 */
export function unknownResultField(res: unknown, known: ReadonlySet<string>): { field: string; didYouMean: string | null } | null {
  if (res === null || typeof res !== 'object' || Array.isArray(res)) return null
  for (const k in res) {
    if (!known.has(k)) return { field: k.slice(0, 100), didYouMean: closest(k, [...known]) }
  }
  return null
}
