/**
 * CLI errors and exit codes. Every failure ends as ONE line on stderr (`flowkit: <message>`) plus
 * an optional hint line; the full stack only with `--debug`. Exit codes are stable (docs/cli.md):
 *
 *   0 ok · 1 task failed/cancelled, graph invalid, operation refused · 2 usage or configuration
 *   error · 3 cannot connect (MongoDB, Kafka) · 4 not found (task, dead letter, file) · 130 interrupted
 */
import { ErrorCode, FlowkitError, GraphValidationError, errorMessage } from '../errors.ts'
import { redactText } from '../log.ts'

export const EXIT = {
  ok: 0,
  failed: 1,
  usage: 2,
  connect: 3,
  notFound: 4,
  interrupted: 130,
} as const
export type ExitCode = (typeof EXIT)[keyof typeof EXIT]

export interface CliErrorOptions {
  hint?: string
  cause?: unknown
  /** Machine-readable code for `--json` (defaults from the exit code). */
  code?: string
  details?: Record<string, unknown>
}

export class CliError extends Error {
  readonly exitCode: ExitCode
  readonly hint: string | undefined
  readonly code: string
  readonly details: Record<string, unknown>
  constructor(exitCode: ExitCode, message: string, options: CliErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'CliError'
    this.exitCode = exitCode
    this.hint = options.hint
    this.details = options.details ?? {}
    this.code = options.code ?? DEFAULT_CODES[exitCode]
  }
}

const DEFAULT_CODES: Record<ExitCode, string> = {
  0: 'OK',
  1: 'FAILED',
  2: 'USAGE',
  3: 'CANNOT_CONNECT',
  4: 'NOT_FOUND',
  130: 'INTERRUPTED',
}

export function usageError(message: string, command?: string): CliError {
  return new CliError(EXIT.usage, message, { hint: `see \`flowkit ${command === undefined ? '' : `${command} `}--help\`` })
}

/** Where a connection failure happened, for the hint. */
export interface ConnectContext {
  /** 'mongo' | 'kafka' */
  service?: string
  /** Redacted address (URL without credentials, broker list). */
  address?: string
}

const CONNECT_CODES: ReadonlySet<string> = new Set([ErrorCode.StoreUnavailable, ErrorCode.StoreTimeout, ErrorCode.BusUnavailable])

/** Maps anything thrown by a command to a CliError (exit code, one-line message, hint). */
/** What to check when Kafka refuses the client (authentication or authorization). */
export const KAFKA_AUTH_HINT = 'check the SASL and TLS settings: FLOWKIT_KAFKA_SASL_MECHANISM, FLOWKIT_KAFKA_USERNAME, FLOWKIT_KAFKA_PASSWORD, FLOWKIT_KAFKA_TLS (or kafka.sasl / kafka.tls in the config file), and the ACLs of this user'

export function toCliError(err: unknown, ctx: ConnectContext = {}): CliError {
  if (err instanceof CliError) return err
  if (err instanceof GraphValidationError) {
    return new CliError(EXIT.failed, `invalid graph: ${err.message}`, { code: err.code, cause: err, details: err.details })
  }
  if (err instanceof FlowkitError) {
    if (CONNECT_CODES.has(err.code)) {
      const kafka = err.code === ErrorCode.BusUnavailable
      const where = ctx.address === undefined ? '' : ` at ${ctx.address}`
      return new CliError(EXIT.connect, `cannot connect to ${kafka ? 'Kafka' : 'MongoDB'}${where}: ${firstLine(err.message)}`, {
        code: err.code,
        cause: err,
        hint: kafka ? 'is Kafka running? check FLOWKIT_KAFKA_BROKERS / --brokers' : 'is MongoDB running? check FLOWKIT_MONGO_URL / --mongo-url',
      })
    }
    if (err.code === ErrorCode.BusError && err.details['auth'] === true) {
      // The broker answers but refuses this client: its credentials or TLS setting are wrong.
      return new CliError(EXIT.connect, `cannot use Kafka: ${firstLine(err.message)}`, { code: err.code, cause: err, hint: KAFKA_AUTH_HINT })
    }
    if (err.code === ErrorCode.TaskNotFound) return new CliError(EXIT.notFound, firstLine(err.message), { code: err.code, cause: err })
    // An optional driver not installed: the setup to fix, as a bad setting is (exit 2).
    if (err.code === ErrorCode.MissingDependency) return new CliError(EXIT.usage, firstLine(err.message), { code: err.code, cause: err })
    if (err.code === ErrorCode.Config) return new CliError(EXIT.usage, firstLine(err.message), { code: err.code, cause: err, hint: 'check the config file, the FLOWKIT_* environment and the flags' })
    return new CliError(EXIT.failed, firstLine(err.message), { code: err.code, cause: err })
  }
  const sys = (err as { code?: unknown } | null)?.code
  if (sys === 'ENOENT') return new CliError(EXIT.notFound, firstLine(errorMessage(err)), { cause: err })
  return new CliError(EXIT.failed, firstLine(errorMessage(err)), { cause: err, code: 'INTERNAL', hint: 'run again with --debug for the stack' })
}

/** The first line of a message, without secrets, at most 400 characters. */
export function firstLine(text: string): string {
  const line = redactText(text).split('\n', 1)[0] ?? ''
  return line.length > 400 ? `${line.slice(0, 400)}…` : line
}

/** A URL without its credentials, for messages. */
export function redactUrl(url: string): string {
  return redactText(url).replace(/(\/\/)[^@/]*@/, '$1***@')
}
