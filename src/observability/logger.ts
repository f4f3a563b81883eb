/**
 * A Logger that adds the trace to every record (`trace_id`, `span_id`) when one applies — the span
 * of the run, node attempt or task the record names (`task_id`, `node_id`), else the active span
 * of the OpenTelemetry context — and lets the instance's metrics see every record (counters by
 * event name). The records themselves, their levels and redaction are the wrapped logger's.
 */
import { type SpanContext, isSpanContextValid, trace } from '@opentelemetry/api'
import type { LogFields, Logger } from '../log.ts'

type Level = 'debug' | 'info' | 'warn' | 'error'

export interface LogObserver {
  /** Every record, whatever the level (for counters). */
  record?(level: Level, event: string, fields: LogFields | undefined): void
  /** The span a record about (task, node) belongs to; undefined: none known. Absent: no tracing. */
  spanOf?(taskId: string, nodeId: string | undefined): SpanContext | undefined
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined
}

export class ObservedLogger implements Logger {
  readonly #inner: Logger
  readonly #obs: LogObserver
  readonly #taskId: string | undefined
  readonly #nodeId: string | undefined

  constructor(inner: Logger, obs: LogObserver, bound: LogFields = {}) {
    this.#inner = inner
    this.#obs = obs
    this.#taskId = str(bound['task_id'])
    this.#nodeId = str(bound['node_id'])
  }

  #fields(fields: LogFields | undefined): LogFields | undefined {
    const spanOf = this.#obs.spanOf
    if (spanOf === undefined) return fields
    const taskId = str(fields?.['task_id']) ?? this.#taskId
    let sc = taskId === undefined ? undefined : spanOf(taskId, str(fields?.['node_id']) ?? this.#nodeId)
    sc ??= trace.getActiveSpan()?.spanContext()
    if (sc === undefined || !isSpanContextValid(sc)) return fields
    return { ...fields, trace_id: sc.traceId, span_id: sc.spanId }
  }

  #log(level: Level, event: string, fields: LogFields | undefined): void {
    this.#obs.record?.(level, event, fields)
    const f = this.#fields(fields)
    if (f === undefined) this.#inner[level](event)
    else this.#inner[level](event, f)
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
    const bound: LogFields = {}
    const t = str(bindings['task_id']) ?? this.#taskId
    const n = str(bindings['node_id']) ?? this.#nodeId
    if (t !== undefined) bound['task_id'] = t
    if (n !== undefined) bound['node_id'] = n
    return new ObservedLogger(this.#inner.child(bindings), this.#obs, bound)
  }
}
