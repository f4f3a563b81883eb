/** Translation of MongoDB driver errors into FlowkitError codes (messages never carry credentials). */
import {
  MongoBulkWriteError,
  MongoError,
  MongoNetworkError,
  MongoNetworkTimeoutError,
  MongoNotConnectedError,
  MongoOperationTimeoutError,
  MongoServerClosedError,
  MongoServerSelectionError,
  MongoTopologyClosedError,
} from 'mongodb'
import { ErrorCode, FlowkitError, errorMessage } from '../../errors.ts'
import { redact } from '../../log.ts'

const DUPLICATE_KEY_CODES: ReadonlySet<number> = new Set([11000, 11001, 12582])

/** MaxTimeMSExpired, ExceededTimeLimit. */
const TIMEOUT_CODES: ReadonlySet<number> = new Set([50, 262])

/**
 * The server is (temporarily) unable to serve: HostUnreachable, HostNotFound, NetworkTimeout,
 * ShutdownInProgress, PrimarySteppedDown, SocketException, NotWritablePrimary, InterruptedAtShutdown,
 * InterruptedDueToReplStateChange, NotPrimaryNoSecondaryOk, NotPrimaryOrSecondary, LegacyNotPrimary.
 */
const UNAVAILABLE_CODES: ReadonlySet<number> = new Set([
  6, 7, 89, 91, 189, 9001, 10107, 11600, 11602, 13435, 13436, 10058,
])

function codeOf(err: unknown): number | undefined {
  if (!(err instanceof MongoError)) return undefined
  const code = (err as { code?: unknown }).code
  return typeof code === 'number' ? code : undefined
}

export function isDuplicateKeyError(err: unknown): boolean {
  if (!(err instanceof MongoError)) return false
  const code = codeOf(err)
  if (code !== undefined && DUPLICATE_KEY_CODES.has(code)) return true
  if (err instanceof MongoBulkWriteError) {
    const errors = err.writeErrors
    const list = Array.isArray(errors) ? errors : [errors]
    return list.some((e) => DUPLICATE_KEY_CODES.has(e.code))
  }
  return false
}

/**
 * A bulk operation (insertMany, bulkWrite) that met a driver-side failure (a lost or timed-out
 * connection) throws it wrapped in a MongoBulkWriteError: no write errors, no server code, the
 * driver error's own fields copied onto it (a network error's `beforeHandshake`) but neither its
 * class, its labels nor its cause. Such a wrapper is judged by those fields and its message.
 */
function wrapsNetworkError(err: unknown): boolean {
  if (!(err instanceof MongoBulkWriteError) || codeOf(err) !== undefined) return false
  const errors = err.writeErrors
  if (Array.isArray(errors) ? errors.length > 0 : errors !== undefined && errors !== null) return false
  return typeof (err as { beforeHandshake?: unknown }).beforeHandshake === 'boolean' || NETWORK_MESSAGE.test(err.message)
}

/** The driver's messages for a connection lost or timed out (`connection 7 to 127.0.0.1:27017 closed`). */
const NETWORK_MESSAGE = /\bconnection \d+ to \S+ (?:closed|timed out)\b/i

function isTimeout(err: unknown): boolean {
  if (err instanceof MongoOperationTimeoutError || err instanceof MongoNetworkTimeoutError) return true
  const code = codeOf(err)
  return code !== undefined && TIMEOUT_CODES.has(code)
}

function isUnavailable(err: unknown): boolean {
  if (
    err instanceof MongoServerSelectionError ||
    err instanceof MongoNetworkError ||
    err instanceof MongoNotConnectedError ||
    err instanceof MongoServerClosedError ||
    err instanceof MongoTopologyClosedError ||
    wrapsNetworkError(err)
  ) {
    return true
  }
  if (err instanceof MongoError && (err.hasErrorLabel('RetryableWriteError') || err.hasErrorLabel('ResetPool'))) return true
  const code = codeOf(err)
  if (code !== undefined && UNAVAILABLE_CODES.has(code)) return true
  return socketFailure(err)
}

/** Socket-level failures anywhere in the error's cause chain (a server killed or restarting). */
const SOCKET_CODES: ReadonlySet<string> = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNABORTED'])

function socketFailure(err: unknown): boolean {
  let e: unknown = err
  for (let depth = 0; depth < 6 && e !== null && typeof e === 'object'; depth++) {
    const c = (e as { code?: unknown }).code
    if (typeof c === 'string' && SOCKET_CODES.has(c)) return true
    const m = (e as { message?: unknown }).message
    if (typeof m === 'string' && (/\b(ECONNREFUSED|ECONNRESET|EPIPE|connection (?:closed|reset|refused)|socket hang up)\b/i.test(m) || NETWORK_MESSAGE.test(m))) return true
    e = (e as { cause?: unknown }).cause
  }
  return false
}

/** The driver's message without credentials (URLs are redacted). */
export function safeMessage(err: unknown): string {
  return String(redact(errorMessage(err)))
}

/**
 * Maps a driver error to a FlowkitError: duplicate key → STORE_DUPLICATE_KEY, timeouts →
 * STORE_TIMEOUT (retryable), network / server selection / not primary → STORE_UNAVAILABLE
 * (retryable), anything else → STORE_ERROR. FlowkitErrors pass through.
 */
export function mapMongoError(err: unknown, op: string): FlowkitError {
  if (err instanceof FlowkitError) return err
  const message = `mongo store ${op}: ${safeMessage(err)}`
  const code = codeOf(err)
  const details: Record<string, unknown> = { op }
  if (code !== undefined) details['mongo_code'] = code
  if (isDuplicateKeyError(err)) return new FlowkitError(ErrorCode.DuplicateKey, message, { cause: err, details })
  if (isTimeout(err)) return new FlowkitError(ErrorCode.StoreTimeout, message, { cause: err, retryable: true, details })
  if (isUnavailable(err)) return new FlowkitError(ErrorCode.StoreUnavailable, message, { cause: err, retryable: true, details })
  return new FlowkitError(ErrorCode.StoreError, message, { cause: err, details })
}
