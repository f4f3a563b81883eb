/**
 * Errors of the Kafka bus: library error trees flattened, secrets redacted, and the mapping to
 * FlowkitError BUS_UNAVAILABLE (retryable) / BUS_ERROR / CLOSED.
 */
import { ErrorCode, FlowkitError } from '../../errors.ts'

interface ErrorLike {
  message?: unknown
  code?: unknown
  apiId?: unknown
  canRetry?: unknown
  errors?: unknown
  cause?: unknown
}

function asErrorLike(err: unknown): ErrorLike | null {
  return err !== null && typeof err === 'object' ? (err as ErrorLike) : null
}

/** Every error in a library error tree (MultipleErrors nest, causes chain). */
export function flattenErrors(err: unknown, out: ErrorLike[] = [], depth = 0): ErrorLike[] {
  const e = asErrorLike(err)
  if (!e || depth > 8) return out
  out.push(e)
  if (Array.isArray(e.errors)) for (const inner of e.errors) flattenErrors(inner, out, depth + 1)
  if (e.cause !== undefined) flattenErrors(e.cause, out, depth + 1)
  return out
}

export function hasApiId(err: unknown, apiId: string): boolean {
  return flattenErrors(err).some((e) => e.apiId === apiId)
}

/** Redacts secrets from free text. */
export class Redactor {
  readonly #secrets: string[]
  constructor(secrets: Array<string | undefined>) {
    this.#secrets = secrets.filter((s): s is string => typeof s === 'string' && s.length > 0)
  }
  text(value: string): string {
    let out = value
    for (const secret of this.#secrets) out = out.split(secret).join('***')
    return out
  }
  /** A one-line description of a (possibly nested) library error, without secrets. */
  describe(err: unknown): string {
    const messages: string[] = []
    for (const e of flattenErrors(err)) {
      // Secrets out before the cut: a secret across the cut would keep its first part.
      const m = typeof e.message === 'string' ? this.text(e.message.trim()) : ''
      const apiId = typeof e.apiId === 'string' ? ` (${e.apiId})` : ''
      const line = `${m.length > 300 ? `${m.slice(0, 300)}…` : m}${apiId}`
      if (line && !messages.includes(line)) messages.push(line)
      if (messages.length >= 6) break
    }
    if (messages.length === 0) messages.push(String(err))
    return this.text(messages.join(' <- '))
  }
}

/**
 * Maps a library error to BUS_UNAVAILABLE (retryable: the cluster or the network is the problem)
 * or BUS_ERROR. The original error is not attached (it may carry connection details); a
 * sanitized copy of its message tree is.
 */
export function toBusError(err: unknown, op: string, redactor: Redactor, closed: boolean): FlowkitError {
  if (err instanceof FlowkitError) return err
  const text = redactor.describe(err)
  const cause = new Error(text)
  const all = flattenErrors(err)
  if (closed || all.some((e) => (e as { closed?: unknown }).closed === true)) {
    return new FlowkitError(ErrorCode.Closed, `kafka bus: ${op} aborted: the bus is closed`, { cause })
  }
  const apiIds = all.map((e) => e.apiId).filter((id): id is string => typeof id === 'string')
  const codes = all.map((e) => e.code).filter((c): c is string => typeof c === 'string')
  const details = { op, apiIds: [...new Set(apiIds)], codes: [...new Set(codes)] }
  if (codes.includes('PLT_KFK_AUTHENTICATION') || apiIds.some((id) => /AUTHORIZATION|SASL|AUTHENTICATION/.test(id))) {
    return new FlowkitError(ErrorCode.BusError, `kafka bus: ${op} failed (authentication/authorization): ${text}`, { cause, details: { ...details, auth: true } })
  }
  if (apiIds.includes('UNKNOWN_TOPIC_OR_PARTITION') || /Unknown topic/i.test(text)) {
    return new FlowkitError(ErrorCode.BusError, `kafka bus: ${op} failed: unknown topic (create it with ensureTopics): ${text}`, {
      cause,
      details,
    })
  }
  const network = codes.includes('PLT_KFK_NETWORK') || codes.includes('PLT_KFK_TIMEOUT')
  const nonRetryable = all.some((e) => e.canRetry === false && e.code !== 'PLT_KFK_NETWORK')
  const retryableProtocol = all.some((e) => e.canRetry === true)
  if (network || (retryableProtocol && !nonRetryable)) {
    return new FlowkitError(ErrorCode.BusUnavailable, `kafka bus: ${op} failed: ${text}`, { cause, details, retryable: true })
  }
  return new FlowkitError(ErrorCode.BusError, `kafka bus: ${op} failed: ${text}`, { cause, details })
}
