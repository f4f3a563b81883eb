/**
 * Structured JSON logs with a stable event name per record (`event`), the ids in every record,
 * a configurable level, quiet by default under test, and redaction of secrets.
 */
import { channel } from 'node:diagnostics_channel'
import { pino } from 'pino'

/**
 * Every structured log record of flowkit, at any level, is also published on this
 * `node:diagnostics_channel` (only when someone subscribes): `{ level, event, fields, time }`,
 * with the same redaction as the logs. Event names are stable; see docs/observability.md.
 */
export const EVENTS_CHANNEL = 'flowkit:events'
const events = channel(EVENTS_CHANNEL)

export interface FlowkitEventMessage {
  level: 'debug' | 'info' | 'warn' | 'error'
  event: string
  fields: LogFields
  time: number
}

function publish(level: FlowkitEventMessage['level'], event: string, bindings: LogFields, fields: LogFields | undefined): void {
  if (!events.hasSubscribers) return
  const all = fields === undefined ? bindings : { ...bindings, ...fields }
  events.publish({ level, event, fields: redact(all) as LogFields, time: Date.now() } satisfies FlowkitEventMessage)
}

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent'
export type LogFields = Record<string, unknown>

export interface Logger {
  debug(event: string, fields?: LogFields): void
  info(event: string, fields?: LogFields): void
  warn(event: string, fields?: LogFields): void
  error(event: string, fields?: LogFields): void
  child(bindings: LogFields): Logger
}

const SECRET_KEYS = /(password|passwd|secret|token|sasl|credential|authorization|connection_?string|mongo_?url|uri)$/i
const URL_CREDENTIALS = /([a-z][a-z0-9+.-]*:\/\/)([^:@/\s]+):([^@/\s]+)@/gi

/** Removes credentials from URLs and masks fields whose names look secret. */
export function redact(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return value.includes('@') ? value.replace(URL_CREDENTIALS, '$1***:***@') : value
  if (depth > 6 || value === null || typeof value !== 'object') return value
  if (value instanceof Error) return { name: value.name, message: redact(value.message, depth + 1) }
  if (Array.isArray(value)) return value.map((v) => redact(v, depth + 1))
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(value)) {
    out[k] = SECRET_KEYS.test(k) && k !== 'cancel_token' ? '***' : redact(v, depth + 1)
  }
  return out
}

export function defaultLogLevel(): LogLevel {
  const env = process.env['FLOWKIT_LOG_LEVEL']
  if (env) return env as LogLevel
  if (process.env['NODE_TEST_CONTEXT'] !== undefined || process.env['NODE_ENV'] === 'test') return 'silent'
  return 'info'
}

class PinoLogger implements Logger {
  readonly #p: pino.Logger
  readonly #bindings: LogFields
  constructor(p: pino.Logger, bindings: LogFields = {}) {
    this.#p = p
    this.#bindings = bindings
  }
  #log(level: 'debug' | 'info' | 'warn' | 'error', event: string, fields?: LogFields): void {
    publish(level, event, this.#bindings, fields)
    if (!this.#p.isLevelEnabled(level)) return
    this.#p[level]({ event, ...(fields ? (redact(fields) as LogFields) : {}) })
  }
  debug(event: string, fields?: LogFields): void {
    this.#log('debug', event, fields)
  }
  info(event: string, fields?: LogFields): void {
    this.#log('info', event, fields)
  }
  warn(event: string, fields?: LogFields): void {
    this.#log('warn', event, fields)
  }
  error(event: string, fields?: LogFields): void {
    this.#log('error', event, fields)
  }
  child(bindings: LogFields): Logger {
    return new PinoLogger(this.#p.child(redact(bindings) as LogFields), { ...this.#bindings, ...bindings })
  }
}

export interface LoggerOptions {
  level?: LogLevel
  name?: string
  /** Where to write; defaults to stderr so stdout stays free for program output. */
  destination?: NodeJS.WritableStream
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const p = pino(
    {
      name: options.name ?? 'flowkit',
      level: options.level ?? defaultLogLevel(),
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.epochTime,
    },
    options.destination ?? pino.destination({ dest: 2, sync: true }),
  )
  return new PinoLogger(p)
}

/** A logger that records every call in memory: for tests that assert on log events. */
export class MemoryLogger implements Logger {
  readonly records: { level: string; event: string; fields: LogFields }[]
  readonly #bindings: LogFields
  constructor(records: { level: string; event: string; fields: LogFields }[] = [], bindings: LogFields = {}) {
    this.records = records
    this.#bindings = bindings
  }
  #push(level: 'debug' | 'info' | 'warn' | 'error', event: string, fields?: LogFields): void {
    publish(level, event, this.#bindings, fields)
    this.records.push({ level, event, fields: redact({ ...this.#bindings, ...fields }) as LogFields })
  }
  debug(event: string, fields?: LogFields): void {
    this.#push('debug', event, fields)
  }
  info(event: string, fields?: LogFields): void {
    this.#push('info', event, fields)
  }
  warn(event: string, fields?: LogFields): void {
    this.#push('warn', event, fields)
  }
  error(event: string, fields?: LogFields): void {
    this.#push('error', event, fields)
  }
  child(bindings: LogFields): Logger {
    return new MemoryLogger(this.records, { ...this.#bindings, ...bindings })
  }
  events(): string[] {
    return this.records.map((r) => r.event)
  }
}
