/**
 * One error hierarchy with stable string codes. Adapters translate driver errors into these codes
 * so that memory and real backends fail the same way; retry loops read `retryable`.
 */
export const ErrorCode = {
  GraphInvalid: 'GRAPH_INVALID',
  DuplicateNodeId: 'GRAPH_DUPLICATE_NODE_ID',
  InvalidNodeId: 'GRAPH_INVALID_NODE_ID',
  UnknownNode: 'GRAPH_UNKNOWN_NODE',
  Cycle: 'GRAPH_CYCLE',
  BadFanIn: 'GRAPH_BAD_FAN_IN',
  UnknownCoordinatorFn: 'GRAPH_UNKNOWN_COORDINATOR_FN',
  UnknownInputAdapter: 'GRAPH_UNKNOWN_INPUT_ADAPTER',
  BadField: 'GRAPH_BAD_FIELD',
  /** A submission over a configured limit (node count, edges, nesting, sizes, retry ranges). */
  GraphLimit: 'GRAPH_LIMIT',
  TaskNotFound: 'TASK_NOT_FOUND',
  Timeout: 'TIMEOUT',
  DuplicateKey: 'STORE_DUPLICATE_KEY',
  StoreUnavailable: 'STORE_UNAVAILABLE',
  StoreTimeout: 'STORE_TIMEOUT',
  StoreError: 'STORE_ERROR',
  BusUnavailable: 'BUS_UNAVAILABLE',
  BusError: 'BUS_ERROR',
  BadMessage: 'BAD_MESSAGE',
  InvalidKey: 'INVALID_KEY',
  VarsLimit: 'VARS_LIMIT',
  SecretDetected: 'SECRET_DETECTED',
  Closed: 'CLOSED',
  Config: 'CONFIG_INVALID',
  Permanent: 'PERMANENT',
} as const
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode]

export interface FlowkitErrorOptions {
  cause?: unknown
  retryable?: boolean
  details?: Record<string, unknown>
}

export class FlowkitError extends Error {
  readonly code: ErrorCode
  readonly retryable: boolean
  readonly details: Record<string, unknown>

  constructor(code: ErrorCode, message: string, options: FlowkitErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'FlowkitError'
    this.code = code
    this.retryable = options.retryable ?? false
    this.details = options.details ?? {}
  }
}

/** Raised at `createTask` for a graph that cannot run. `path` names the offending field. */
export class GraphValidationError extends FlowkitError {
  readonly path: string
  constructor(code: ErrorCode, message: string, path: string, details: Record<string, unknown> = {}) {
    super(code, message, { details: { ...details, path } })
    this.name = 'GraphValidationError'
    this.path = path
  }
}

/**
 * Thrown by a handler to say "retrying will not help" (Temporal's non-retryable failure).
 * The default classifier treats it as permanent with its `reasonCode`.
 */
export class PermanentError extends Error {
  readonly reasonCode: string
  readonly permanent = true
  constructor(message: string, reasonCode = 'permanent_error', options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'PermanentError'
    this.reasonCode = reasonCode
  }
}

/** Thrown by a handler for a failure worth retrying, with an explicit reason code. */
export class TransientError extends Error {
  readonly reasonCode: string
  readonly permanent = false
  constructor(message: string, reasonCode = 'transient_error', options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'TransientError'
    this.reasonCode = reasonCode
  }
}

export function isFlowkitError(err: unknown, code?: ErrorCode): err is FlowkitError {
  return err instanceof FlowkitError && (code === undefined || err.code === code)
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message
  return String(err)
}
