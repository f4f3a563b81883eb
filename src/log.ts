/**
 * Structured JSON logs with a stable event name per record (`event`), the ids in every record,
 * a configurable level, quiet by default under test, and redaction of secrets. On a terminal the
 * same records are printed as one readable line each (no pino-pretty needed).
 */
import { channel } from 'node:diagnostics_channel'
import { pino } from 'pino'
import { ErrorCode, FlowkitError } from './errors.ts'
import { MAX_ERROR_CHARS, clip } from './util/text.ts'

/**
 * Every structured log record of flowkit, at any level, is also published on this
 * `node:diagnostics_channel` (only when someone subscribes): `{ level, event, fields, time }`,
 * with the same redaction as the logs. Event names are stable; see docs/observability.md.
 * `fields` is redacted when first read (an accessor): read it, or JSON.stringify the message; a
 * spread (`{ ...message }`) does not copy it.
 */
export const EVENTS_CHANNEL = 'flowkit:events'
const events = channel(EVENTS_CHANNEL)

export interface FlowkitEventMessage {
  level: 'debug' | 'info' | 'warn' | 'error'
  event: string
  fields: LogFields
  time: number
}

/**
 * A published record. Its `fields` are redacted when first read (most subscribers only look at
 * `event`), then kept: `fields` is an accessor, so read it (or JSON.stringify the message) rather
 * than spreading the message.
 */
class EventMessage implements FlowkitEventMessage {
  readonly level: FlowkitEventMessage['level']
  readonly event: string
  readonly time: number
  #bindings: LogFields
  #raw: LogFields | undefined
  #fields: LogFields | null = null
  constructor(level: FlowkitEventMessage['level'], event: string, bindings: LogFields, raw: LogFields | undefined, time: number) {
    this.level = level
    this.event = event
    this.time = time
    this.#bindings = bindings
    this.#raw = raw
  }
  get fields(): LogFields {
    this.#fields ??= redact(this.#raw === undefined ? this.#bindings : { ...this.#bindings, ...this.#raw }) as LogFields
    return this.#fields
  }
  toJSON(): FlowkitEventMessage {
    return { level: this.level, event: this.event, fields: this.fields, time: this.time }
  }
}

/** Whether anyone listens on the events channel (a dropped record is still published there). */
export function eventsObserved(): boolean {
  return events.hasSubscribers
}

function publish(level: FlowkitEventMessage['level'], event: string, bindings: LogFields, fields: LogFields | undefined): void {
  if (!events.hasSubscribers) return
  events.publish(new EventMessage(level, event, bindings, fields, Date.now()))
}

/** The log levels FLOWKIT_LOG_LEVEL and `createLogger({ level })` accept, most verbose first. */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]
/** How records are written: one JSON object per line, or one readable line (`pretty`). */
export const LOG_FORMATS = ['json', 'pretty'] as const
export type LogFormat = (typeof LOG_FORMATS)[number]
export type LogFields = Record<string, unknown>

export interface Logger {
  debug(event: string, fields?: LogFields): void
  info(event: string, fields?: LogFields): void
  warn(event: string, fields?: LogFields): void
  error(event: string, fields?: LogFields): void
  child(bindings: LogFields): Logger
  /**
   * Optional: false when records of `level` are dropped (a wrapper then skips the work of
   * decorating them). Absent: every record may be written.
   */
  enabled?(level: LogMethod): boolean
}

export type LogMethod = 'debug' | 'info' | 'warn' | 'error'

/** The four level methods of a Logger on top of one `write`: every logger of flowkit is one. */
export class LevelLogger {
  protected write(_level: LogMethod, _event: string, _fields?: LogFields): void {}
  debug(event: string, fields?: LogFields): void {
    this.write('debug', event, fields)
  }
  info(event: string, fields?: LogFields): void {
    this.write('info', event, fields)
  }
  warn(event: string, fields?: LogFields): void {
    this.write('warn', event, fields)
  }
  error(event: string, fields?: LogFields): void {
    this.write('error', event, fields)
  }
}

/** Field names whose value is masked whole (`cancel_token` is an id, not a credential). */
const SECRET_KEYS =
  /(passphrase|password|passwd|pwd|secret|token|sasl|credentials?|authorization|cookie|connection_?string|conn_?str|dsn|mongo_?url|uri|api_?key|access_?key|private_?key|secret_?key|session_?key|jwt)$/i
const NOT_SECRET_KEYS = new Set(['cancel_token'])
/** Past this nesting a value is not walked (and not logged): `[Object]` / `[Array]`. */
const MAX_REDACT_DEPTH = 8

/**
 * Secret-looking parts of free text (error messages included), each replaced by `***`:
 * credentials in URLs (`scheme://user:pass@`, a long `scheme://token@`, `user:pass@host` without
 * the `//`), `key=value` / `key: value` / `"key":"value"` pairs
 * whose key names a secret (`password=`, `api_key:`, URL-encoded `password%3D`, `aws_secret_access_key=`, `sasl.password=`,
 * `"token":"…"`, `Authorization: Basic …`), bearer tokens, PEM private keys, and tokens with a
 * well-known shape (AWS access key ids, GitHub and Slack tokens, JWTs).
 */
const TEXT_RULES: ReadonlyArray<readonly [RegExp, string]> = [
  [/-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----[\s\S]*?(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|$)/g, '***'],
  // user:password@ up to the last '@' before the path (a password may hold an unescaped '@');
  // bounded, so that text of many '://' stays linear.
  [/(:\/\/)[^\s"'<>:@/]{0,256}:[^\s"'<>/]{0,512}@/g, '$1***:***@'],
  // A token given as the user alone (`https://<token>@host`, as git hosts take them): a long one.
  [/(:\/\/)[A-Za-z0-9._~%-]{20,256}@/g, '$1***@'],
  // user:password@host without the `//` (a mistyped `mongodb:/user:pw@h`, `mongodb:user:pw@h`, or
  // no scheme at all): the pair before an `@` that a host name follows.
  [/(^|[\s"'(<=,:/])[^\s"'<>:@/]{1,256}:[^\s"'<>/@]{1,512}@(?=[\w[])/g, '$1***:***@'],
  [/\b((?:proxy-)?authorization["']?\s*[:=]\s*["']?)(?:(?:bearer|basic|digest|token|negotiate)\s+)?[^\s"',;]+/gi, '$1***'],
  [/\b(bearer\s+)[A-Za-z0-9._~+/=-]{6,}/gi, '$1***'],
  [
    /((?:passphrase|password|passwd|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key|secret[_-]?key|session[_-]?key|credentials?|(?:set-)?cookie)\\?["']?\s*(?:[:=]|%3[DdAa])\s*)(?:\\"(?:[^"\\\n]|\\[^"\n]){0,4096}\\"|"(?:[^"\\\n]|\\.){0,4096}"|'[^'\n]{0,4096}'|[^\s"',;&)\]}]+)/gi,
    '$1***',
  ],
  [/\b(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA)[A-Z0-9]{16}\b/g, '***'],
  [/\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})/g, '***'],
  [/\bxox[abposr]-[A-Za-z0-9-]{10,}/g, '***'],
  [/\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*/g, '***'],
]
/** Cheap pre-check: text without any of these cannot match a rule. */
const MAY_HOLD_SECRET = /[@=:]|%3[DdAa]|bearer|PRIVATE KEY|AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|gh[pousr]_|github_pat_|xox|eyJ/i

/** Free text with every secret-looking part replaced by `***` (see TEXT_RULES). */
export function redactText(text: string): string {
  if (!MAY_HOLD_SECRET.test(text)) return text
  let out = text
  for (const [rule, replacement] of TEXT_RULES) out = out.replace(rule, replacement)
  return out
}

/**
 * An error's text as a node keeps it (`last_error`: getTask, the CLI, the dashboard) and a worker
 * sends it: secrets masked, at most MAX_ERROR_CHARS (the rest cut, saying how much).
 */
export function errorForNode(text: string): string {
  return clip(redactText(text), MAX_ERROR_CHARS)
}

/**
 * A log record's fields with secrets removed: every string, at any depth (error messages too),
 * goes through `redactText`; fields whose names look secret are masked whole.
 */
export function redact(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return redactText(value)
  if (value === null || typeof value !== 'object') return value
  if (depth > MAX_REDACT_DEPTH) return Array.isArray(value) ? '[Array]' : '[Object]'
  if (value instanceof Error) {
    const out: Record<string, unknown> = { name: value.name, message: redactText(value.message) }
    const code = (value as { code?: unknown }).code
    if (typeof code === 'string' || typeof code === 'number') out['code'] = code
    if (value.cause !== undefined) out['cause'] = redact(value.cause, depth + 1)
    return out
  }
  if (Array.isArray(value)) return value.map((v) => redact(v, depth + 1))
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(value)) {
    out[k] = SECRET_KEYS.test(k) && !NOT_SECRET_KEYS.has(k) ? '***' : redact(v, depth + 1)
  }
  return out
}

/**
 * A log level from text (case and surrounding spaces ignored). Anything else is a configuration
 * error that lists the valid levels: a typo in FLOWKIT_LOG_LEVEL fails at startup, loudly, rather
 * than logging at a level nobody chose.
 */
export function parseLogLevel(value: string, source = 'log level'): LogLevel {
  const level = value.trim().toLowerCase()
  if ((LOG_LEVELS as readonly string[]).includes(level)) return level as LogLevel
  throw new FlowkitError({
    code: ErrorCode.Config,
    message: `flowkit: ${source}=${JSON.stringify(value)} is not a log level; valid levels: ${LOG_LEVELS.join(', ')}`,
  })
}

/** FLOWKIT_LOG_LEVEL (validated), else `silent` under `node --test` / NODE_ENV=test, else `info`. */
export function defaultLogLevel(env: NodeJS.ProcessEnv = process.env): LogLevel {
  const value = env['FLOWKIT_LOG_LEVEL']
  if (value) return parseLogLevel(value, 'FLOWKIT_LOG_LEVEL')
  if (env['NODE_TEST_CONTEXT'] !== undefined || env['NODE_ENV'] === 'test') return 'silent'
  return 'info'
}

/**
 * FLOWKIT_LOG_FORMAT (`json` or `pretty`, validated); unset (or `auto`): `pretty` when the logs go
 * to a terminal, else `json`.
 */
export function logFormatFor(destination: unknown, env: NodeJS.ProcessEnv = process.env): LogFormat {
  const value = env['FLOWKIT_LOG_FORMAT']?.trim().toLowerCase()
  if (value === 'json' || value === 'pretty') return value
  if (value && value !== 'auto') {
    throw new FlowkitError({
      code: ErrorCode.Config,
      message: `flowkit: FLOWKIT_LOG_FORMAT=${JSON.stringify(env['FLOWKIT_LOG_FORMAT'])} is not a log format; valid formats: ${LOG_FORMATS.join(', ')}, auto`,
    })
  }
  return (destination as { isTTY?: unknown } | null)?.isTTY === true ? 'pretty' : 'json'
}

class PinoLogger extends LevelLogger implements Logger {
  readonly #p: pino.Logger
  readonly #bindings: LogFields
  constructor(p: pino.Logger, bindings: LogFields = {}) {
    super()
    this.#p = p
    this.#bindings = bindings
  }
  protected override write(level: LogMethod, event: string, fields?: LogFields): void {
    publish(level, event, this.#bindings, fields)
    if (!this.#p.isLevelEnabled(level)) return
    this.#p[level]({ event, ...(fields ? (redact(fields) as LogFields) : {}) })
  }
  enabled(level: LogMethod): boolean {
    // pino's isLevelEnabled goes through its level comparison function: numbers are enough here.
    return (this.#p.levels.values[level] ?? 0) >= this.#p.levelVal
  }
  child(bindings: LogFields): Logger {
    return new PinoLogger(this.#p.child(redact(bindings) as LogFields), { ...this.#bindings, ...bindings })
  }
}

const LEVEL_VALUES: Record<LogLevel, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Number.POSITIVE_INFINITY }
const LEVEL_STYLE: Record<FlowkitEventMessage['level'], readonly [label: string, color: string]> = {
  debug: ['DEBUG', '\x1b[90m'],
  info: ['INFO ', '\x1b[32m'],
  warn: ['WARN ', '\x1b[33m'],
  error: ['ERROR', '\x1b[31m'],
}

/** A C0 or C1 control character, or DEL: terminal escape sequences begin with them. */
function isControl(c: number): boolean {
  return c < 0x20 || (c >= 0x7f && c <= 0x9f)
}

function hasControl(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (isControl(s.charCodeAt(i))) return true
  return false
}

/** `text` with every control character written as `\uXXXX`. */
function escapeControls(text: string): string {
  if (!hasControl(text)) return text
  let out = ''
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    out += isControl(c) ? `\\u${c.toString(16).padStart(4, '0')}` : text[i]
  }
  return out
}

/**
 * A field's value in a pretty line: as is when plain, else as JSON, with every control character
 * escaped (JSON leaves DEL and C1 alone): a value from a request (a dead letter's id in a URL, a
 * node's error) cannot move the cursor, rewrite earlier lines or set the clipboard (OSC 52) of
 * the terminal showing the log.
 */
function prettyValue(v: unknown): string {
  if (typeof v === 'string') return /^[^\s"=]+$/.test(v) && !hasControl(v) ? v : escapeControls(JSON.stringify(v))
  if (v === undefined) return 'undefined'
  return escapeControls(typeof v === 'object' && v !== null ? (JSON.stringify(v) ?? String(v)) : String(v))
}

/** One record as a readable line: `12:03:04.123 INFO  node.done task_id=t1 node_id=a count=3`. */
export function formatPretty(level: FlowkitEventMessage['level'], event: string, fields: LogFields, time: Date, color = false): string {
  const pad = (n: number, w = 2) => String(n).padStart(w, '0')
  const clock = `${pad(time.getHours())}:${pad(time.getMinutes())}:${pad(time.getSeconds())}.${pad(time.getMilliseconds(), 3)}`
  const [label, tint] = LEVEL_STYLE[level]
  const kv = Object.entries(fields).map(([k, v]) => `${k}=${prettyValue(v)}`)
  const head = color ? `\x1b[2m${clock}\x1b[0m ${tint}${label}\x1b[0m \x1b[1m${event}\x1b[0m` : `${clock} ${label} ${event}`
  return kv.length > 0 ? `${head} ${kv.join(' ')}` : head
}

/** The logger used on a terminal: same records, levels and redaction as the JSON one. */
class PrettyLogger extends LevelLogger implements Logger {
  readonly #out: NodeJS.WritableStream
  readonly #level: LogLevel
  readonly #color: boolean
  readonly #bindings: LogFields
  constructor(out: NodeJS.WritableStream, level: LogLevel, color: boolean, bindings: LogFields = {}) {
    super()
    this.#out = out
    this.#level = level
    this.#color = color
    this.#bindings = bindings
  }
  protected override write(level: LogMethod, event: string, fields?: LogFields): void {
    publish(level, event, this.#bindings, fields)
    if (LEVEL_VALUES[level] < LEVEL_VALUES[this.#level]) return
    const all = redact(fields === undefined ? this.#bindings : { ...this.#bindings, ...fields }) as LogFields
    this.#out.write(`${formatPretty(level, event, all, new Date(), this.#color)}\n`)
  }
  enabled(level: LogMethod): boolean {
    return LEVEL_VALUES[level] >= LEVEL_VALUES[this.#level]
  }
  child(bindings: LogFields): Logger {
    return new PrettyLogger(this.#out, this.#level, this.#color, { ...this.#bindings, ...bindings })
  }
}

export interface LoggerOptions {
  /** Default: FLOWKIT_LOG_LEVEL, else `info` (`silent` under test). */
  level?: LogLevel
  name?: string
  /** Where to write; defaults to stderr so stdout stays free for program output. */
  destination?: NodeJS.WritableStream
  /** Default: FLOWKIT_LOG_FORMAT, else `pretty` when the destination is a terminal, else `json`. */
  format?: LogFormat
}

/**
 * A logger writing to stderr (or `destination`): JSON lines, or readable lines on a terminal.
 * Throws a FlowkitError (CONFIG_INVALID) listing the valid values for a bad level or format.
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level === undefined ? defaultLogLevel() : parseLogLevel(options.level, 'level')
  const format = options.format ?? logFormatFor(options.destination ?? process.stderr)
  if (!(LOG_FORMATS as readonly string[]).includes(format)) {
    throw new FlowkitError({ code: ErrorCode.Config, message: `flowkit: format=${JSON.stringify(format)} is not a log format; valid formats: ${LOG_FORMATS.join(', ')}` })
  }
  if (format === 'pretty') {
    const out = options.destination ?? process.stderr
    const color = (out as { isTTY?: unknown }).isTTY === true && !process.env['NO_COLOR']
    return new PrettyLogger(out, level, color)
  }
  const p = pino(
    {
      name: options.name ?? 'flowkit',
      level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.epochTime,
    },
    options.destination ?? pino.destination({ dest: 2, sync: true }),
  )
  return new PinoLogger(p)
}

/** A logger that records every call in memory: for tests that assert on log events. */
export class MemoryLogger extends LevelLogger implements Logger {
  readonly records: { level: string; event: string; fields: LogFields }[]
  readonly #bindings: LogFields
  constructor(records: { level: string; event: string; fields: LogFields }[] = [], bindings: LogFields = {}) {
    super()
    this.records = records
    this.#bindings = bindings
  }
  protected override write(level: LogMethod, event: string, fields?: LogFields): void {
    publish(level, event, this.#bindings, fields)
    this.records.push({ level, event, fields: redact({ ...this.#bindings, ...fields }) as LogFields })
  }
  child(bindings: LogFields): Logger {
    // A subclass (e.g. one that overrides `enabled`) makes children of its own kind.
    const Kind = this.constructor as typeof MemoryLogger
    return new Kind(this.records, { ...this.#bindings, ...bindings })
  }
  events(): string[] {
    return this.records.map((r) => r.event)
  }
}
