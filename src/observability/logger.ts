/**
 * A Logger that adds the trace to every record (`trace_id`, `span_id`) when one applies — the span
 * of the run, node attempt or task the record names (`task_id`, `node_id`), else the active span
 * of the OpenTelemetry context — and lets the instance's metrics see every record (counters by
 * event name). The records themselves, their levels and redaction are the wrapped logger's.
 */
import { type SpanContext, isSpanContextValid, trace } from '@opentelemetry/api'
import { LevelLogger, type LogFields, type Logger } from '../log.ts'

type Level = 'debug' | 'info' | 'warn' | 'error'

/** The fields a record of a span gets (computed once per span by its owner). */
export interface TraceFields {
  readonly trace_id: string
  readonly span_id: string
}

export function traceFieldsOf(sc: SpanContext): TraceFields {
  return { trace_id: sc.traceId, span_id: sc.spanId }
}

export interface LogObserver {
  /** Every record, whatever the level (for counters). */
  record?(level: Level, event: string, fields: LogFields | undefined): void
  /** The trace of a record about (task, node); undefined: none known. Absent: no tracing. */
  traceOf?(taskId: string, nodeId: string | undefined, epoch?: number): TraceFields | undefined
  /** False while no span has been recorded (no SDK): records are then passed on untouched. */
  tracing?(): boolean
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined
}

export class ObservedLogger extends LevelLogger implements Logger {
  readonly #inner: Logger
  readonly #obs: LogObserver
  readonly #taskId: string | undefined
  readonly #nodeId: string | undefined

  constructor(inner: Logger, obs: LogObserver, bound: LogFields = {}) {
    super()
    this.#inner = inner
    this.#obs = obs
    this.#taskId = str(bound['task_id'])
    this.#nodeId = str(bound['node_id'])
  }

  #fields(fields: LogFields | undefined): LogFields | undefined {
    const obs = this.#obs
    if (obs.traceOf === undefined || obs.tracing?.() === false) return fields
    const taskId = str(fields?.['task_id']) ?? this.#taskId
    let ids: TraceFields | undefined
    if (taskId !== undefined) {
      const epoch = fields?.['attempt_epoch']
      ids = obs.traceOf(taskId, str(fields?.['node_id']) ?? this.#nodeId, typeof epoch === 'number' ? epoch : undefined)
    }
    else {
      // Not about a task: the active span of the OpenTelemetry context, if any.
      const sc = trace.getActiveSpan()?.spanContext()
      if (sc !== undefined && isSpanContextValid(sc)) ids = traceFieldsOf(sc)
    }
    if (ids === undefined) return fields
    if (fields === undefined) return { trace_id: ids.trace_id, span_id: ids.span_id }
    return { ...fields, trace_id: ids.trace_id, span_id: ids.span_id }
  }

  protected override write(level: Level, event: string, fields?: LogFields): void {
    this.#obs.record?.(level, event, fields)
    // A record the wrapped logger drops is not decorated (it still reaches flowkit:events, as is).
    const f = this.#inner.enabled?.(level) === false ? fields : this.#fields(fields)
    if (f === undefined) this.#inner[level](event)
    else this.#inner[level](event, f)
  }

  child(bindings: LogFields): Logger {
    const bound: LogFields = {}
    const t = str(bindings['task_id']) ?? this.#taskId
    const n = str(bindings['node_id']) ?? this.#nodeId
    if (t !== undefined) bound['task_id'] = t
    if (n !== undefined) bound['node_id'] = n
    return new ObservedLogger(this.#inner.child(bindings), this.#obs, bound)
  }

  enabled(level: Level): boolean {
    return this.#inner.enabled?.(level) !== false
  }
}
