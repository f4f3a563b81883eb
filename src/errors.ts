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
  /** An optional dependency (a driver: `@platformatic/kafka`, `mongodb`) is not installed. */
  MissingDependency: 'MISSING_DEPENDENCY',
  Permanent: 'PERMANENT',
  /** A dead letter whose command no longer applies (its attempt ended): not retried. */
  StaleDeadLetter: 'DEAD_LETTER_STALE',
} as const
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode]

/**
 * The one argument form every flowkit error class accepts: a single options object with the
 * code first, `new XError({ code, message, cause })`, plus the class's own fields. The older
 * positional forms still work (see each constructor) so existing call sites keep compiling.
 */
export interface ErrorInit<C extends string = string> {
  /** A stable machine-readable code: an `ErrorCode` for `FlowkitError`, a reason code for handler errors. */
  code: C
  message: string
  cause?: unknown
}

export interface FlowkitErrorOptions {
  cause?: unknown
  retryable?: boolean
  details?: Record<string, unknown>
}

export interface FlowkitErrorInit extends ErrorInit<ErrorCode>, FlowkitErrorOptions {}

function isInit(value: unknown): value is { message?: unknown; cause?: unknown } {
  return typeof value === 'object' && value !== null
}

function errorOptions(cause: unknown): ErrorOptions | undefined {
  return cause === undefined ? undefined : { cause }
}

/**
 * flowkit's own failures, with a stable `code` (ErrorCode) and whether retrying may help.
 *
 * ```ts
 * new FlowkitError({ code: ErrorCode.Config, message: 'worker config: concurrency must be >= 1' })
 * new FlowkitError(ErrorCode.Config, 'worker config: concurrency must be >= 1')   // same, positional
 * ```
 */
export class FlowkitError extends Error {
  readonly code: ErrorCode
  readonly retryable: boolean
  readonly details: Record<string, unknown>

  constructor(init: FlowkitErrorInit)
  /** Positional form, code first: `(code, message, { cause, retryable, details })`. */
  constructor(code: ErrorCode, message: string, options?: FlowkitErrorOptions)
  constructor(codeOrInit: ErrorCode | FlowkitErrorInit, message?: string, options: FlowkitErrorOptions = {}) {
    const init: FlowkitErrorInit = isInit(codeOrInit) ? codeOrInit : { ...options, code: codeOrInit, message: message ?? '' }
    super(init.message, errorOptions(init.cause))
    this.name = 'FlowkitError'
    this.code = init.code
    this.retryable = init.retryable ?? false
    this.details = init.details ?? {}
  }
}

export interface GraphValidationErrorInit extends ErrorInit<ErrorCode> {
  /** The offending field, e.g. `nodes[2].depends_on[0]`. */
  path: string
  details?: Record<string, unknown>
}

/**
 * Raised at `createTask` for a graph that cannot run. `path` names the offending field.
 *
 * `new GraphValidationError({ code, message, path, details })`, or positionally (code first)
 * `new GraphValidationError(code, message, path, details)`.
 */
export class GraphValidationError extends FlowkitError {
  readonly path: string
  constructor(init: GraphValidationErrorInit)
  constructor(code: ErrorCode, message: string, path: string, details?: Record<string, unknown>)
  constructor(codeOrInit: ErrorCode | GraphValidationErrorInit, message?: string, path?: string, details: Record<string, unknown> = {}) {
    const init: GraphValidationErrorInit = isInit(codeOrInit) ? codeOrInit : { code: codeOrInit, message: message ?? '', path: path ?? '', details }
    super({ code: init.code, message: init.message, cause: init.cause, details: { ...init.details, path: init.path } })
    this.name = 'GraphValidationError'
    this.path = init.path
  }
}

/** Options of PermanentError / TransientError: the reason code is optional (a default is used). */
export interface HandlerErrorInit extends Partial<ErrorInit> {
  message: string
}

function handlerInit(first: string | HandlerErrorInit, code: string | undefined, options: { cause?: unknown } | undefined, fallback: string): ErrorInit {
  // An empty code is no code (it became a reason code "" that permanent_on could not name).
  if (isInit(first)) return { code: first.code || fallback, message: first.message, cause: first.cause }
  return { code: code || fallback, message: first, cause: options?.cause }
}

/**
 * Thrown by a handler to say "retrying will not help" (Temporal's non-retryable failure).
 * The default classifier treats it as permanent with its `reasonCode` (also readable as `code`),
 * which is what `retry_policy.permanent_on` matches.
 *
 * ```ts
 * throw new PermanentError({ code: 'bad_input', message: 'row 3 has no id' })
 * throw new PermanentError('row 3 has no id', 'bad_input')   // older positional form, message first
 * ```
 */
export class PermanentError extends Error {
  readonly reasonCode: string
  readonly permanent = true
  constructor(init: HandlerErrorInit)
  /** @deprecated Message-first positional form; prefer `new PermanentError({ code, message, cause })`. */
  constructor(message: string, reasonCode?: string, options?: { cause?: unknown })
  constructor(messageOrInit: string | HandlerErrorInit, reasonCode?: string, options?: { cause?: unknown }) {
    const init = handlerInit(messageOrInit, reasonCode, options, 'permanent_error')
    super(init.message, errorOptions(init.cause))
    this.name = 'PermanentError'
    this.reasonCode = init.code
  }
  /** The reason code (same as `reasonCode`), so every flowkit error reads `code`. */
  get code(): string {
    return this.reasonCode
  }
}

/**
 * Thrown by a handler for a failure worth retrying, with an explicit reason code.
 * `new TransientError({ code: 'rate_limited', message, cause })`; the older positional form is
 * message first: `new TransientError(message, reasonCode, { cause })`.
 */
export class TransientError extends Error {
  readonly reasonCode: string
  readonly permanent = false
  constructor(init: HandlerErrorInit)
  /** @deprecated Message-first positional form; prefer `new TransientError({ code, message, cause })`. */
  constructor(message: string, reasonCode?: string, options?: { cause?: unknown })
  constructor(messageOrInit: string | HandlerErrorInit, reasonCode?: string, options?: { cause?: unknown }) {
    const init = handlerInit(messageOrInit, reasonCode, options, 'transient_error')
    super(init.message, errorOptions(init.cause))
    this.name = 'TransientError'
    this.reasonCode = init.code
  }
  /** The reason code (same as `reasonCode`), so every flowkit error reads `code`. */
  get code(): string {
    return this.reasonCode
  }
}

/**
 * The error for a feature whose optional dependency is not installed:
 * `flowkit: KafkaBus needs the optional dependency @platformatic/kafka: npm install @platformatic/kafka`.
 */
export function missingDependency(feature: string, pkg: string, cause?: unknown): FlowkitError {
  return new FlowkitError({
    code: ErrorCode.MissingDependency,
    message: `flowkit: ${feature} needs the optional dependency ${pkg}: npm install ${pkg}`,
    cause,
    details: { dependency: pkg },
  })
}

/** Whether `err` is the module loader saying package `pkg` itself is not installed. */
export function isMissingPackage(err: unknown, pkg: string): boolean {
  const code = (err as { code?: unknown } | null)?.code
  if (code !== 'ERR_MODULE_NOT_FOUND' && code !== 'MODULE_NOT_FOUND') return false
  const text = err instanceof Error ? err.message : String(err)
  return text.includes(`'${pkg}'`) || text.includes(`'${pkg}/`)
}

/** Throws `missingDependency(feature, pkg)` unless `pkg` can be resolved (nothing is loaded). */
export function assertDependency(feature: string, pkg: string): void {
  try {
    import.meta.resolve(pkg)
  } catch (err) {
    if (isMissingPackage(err, pkg)) throw missingDependency(feature, pkg, err)
    throw err
  }
}

/**
 * `load()` (a dynamic import of a module that imports `pkg`), with the loader's "cannot find
 * package" turned into `missingDependency(feature, pkg)`.
 */
export async function importDependency<T>(feature: string, pkg: string, load: () => Promise<T>): Promise<T> {
  try {
    return await load()
  } catch (err) {
    if (isMissingPackage(err, pkg)) throw missingDependency(feature, pkg, err)
    throw err
  }
}

export function isFlowkitError(err: unknown, code?: ErrorCode): err is FlowkitError {
  return err instanceof FlowkitError && (code === undefined || err.code === code)
}

/** Whether `err` says a later attempt may succeed (a store or bus briefly out of reach). */
export function isRetryable(err: unknown): boolean {
  return err instanceof FlowkitError && err.retryable
}

/** The level of a failure a loop will try again: warn when it is retryable (an outage), else error. */
export function failureLevel(err: unknown): 'warn' | 'error' {
  return isRetryable(err) ? 'warn' : 'error'
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message
  if (typeof err === 'object' && err !== null) {
    // A plain object thrown or rejected (the shape of many clients' errors, and one the worker's
    // classification reads): its `message`, else its JSON, rather than "[object Object]".
    const message = (err as { message?: unknown }).message
    if (typeof message === 'string') return message
    const text = String(err)
    if (text !== '[object Object]') return text
    let json: string | undefined
    try {
      json = JSON.stringify(err)
    } catch {
      return text
    }
    if (json === undefined || json === '{}') return text
    return json.length > MAX_OBJECT_MESSAGE ? `${json.slice(0, MAX_OBJECT_MESSAGE)}…` : json
  }
  return String(err)
}

/** Longest JSON text of a thrown plain object taken as its message. */
const MAX_OBJECT_MESSAGE = 2048
