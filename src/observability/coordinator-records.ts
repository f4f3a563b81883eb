/**
 * What the coordinator's observability (coordinator.ts) keeps per task it follows and per node
 * attempt: their spans, the trace context their commands carry, and what the attempt metrics need.
 */
import { type Context, type Span, SpanKind, SpanStatusCode, type Tracer } from '@opentelemetry/api'
import type { NodeState } from '../model/state.ts'
import { type TraceFields, traceFieldsOf } from './logger.ts'
import { spanContextFromHeaders, traceHeaders } from './propagation.ts'
import { RecentMap } from '../util/recent.ts'

export interface AttemptRec {
  nodeId: string
  /** Its message key (`task_id:node_id`), the one string #byKey knows it by: only with a trace. */
  key: string | null
  type: string
  epoch: number
  dispatchedAt: number
  accepted: boolean
  ended: boolean
  span: Span | null
  /** The span records (sampled in): attributes, events and the link are added to it. */
  recording: boolean
  headers: Record<string, string> | undefined
  /** trace_id / span_id of the span, for log records (computed on first use). */
  ids: TraceFields | undefined
  linked: boolean
  /** The node's hand-backs and failures when the attempt began: how it ended, when the next one is already dispatched. */
  handbacks: number
  failures: number
}

/**
 * The record of an attempt dispatched at `n.dispatched_at_ms` (not keyed yet). In a trace that is
 * not sampled it has no span: its commands carry the task span's context, which commandHeaders
 * finds by task (nothing per attempt to keep); otherwise its span is a child of the task span,
 * given its attributes once it is known to record.
 */
export function attemptRecOf(tracer: Tracer | null, t: TaskRec, n: NodeState, now: number): AttemptRec {
  const a: AttemptRec = { nodeId: n.node_id, key: null, type: n.type, epoch: n.attempt_epoch, dispatchedAt: n.dispatched_at_ms ?? now, accepted: false, ended: false, span: null, recording: false, headers: undefined, ids: undefined, linked: false, handbacks: n.handbacks ?? 0, failures: n.failures }
  if (!t.unsampled && tracer !== null && t.span !== null) {
    const s = tracer.startSpan('flowkit.node.attempt', { kind: SpanKind.PRODUCER, startTime: a.dispatchedAt }, t.ctx)
    a.span = s
    a.headers = traceHeaders(s.spanContext())
    if (s.isRecording()) {
      a.recording = true
      s.setAttributes({ 'flowkit.task.id': t.id, 'flowkit.node.id': n.node_id, 'flowkit.node.type': n.type, 'flowkit.attempt.epoch': n.attempt_epoch })
    }
  }
  return a
}

export interface TaskRec {
  id: string
  createdAt: number | null
  span: Span | null
  /** The trace is not sampled (the task span neither records nor is sampled): no attempt spans. */
  unsampled: boolean
  /** Headers of the task span's context, for the commands of an unsampled trace (on first use). */
  headers: Record<string, string> | undefined
  /** trace_id / span_id of the span, for log records (computed on first use). */
  ids: TraceFields | undefined
  ctx: Context
  attempts: Map<string, AttemptRec>
  /** Attempts (`node@epoch`) the task's previous owner saw accepted: their hop latency was measured there. */
  acceptedBefore?: ReadonlySet<string>
}

/**
 * The running attempts of tasks loaded from the store (a restart, a hand-over) that were accepted
 * before: the task's first journal entry here takes them, so their acceptance is not measured a
 * second time (`flowkit_node_dispatch_accept_seconds` counted it once per restart). Claims not
 * yet followed by their entry are kept at most 10,000 (the oldest go first).
 */
export class ClaimedAcceptances {
  readonly #byTask = new RecentMap<string, Set<string>>(10_000)

  note(taskId: string, nodes: readonly NodeState[]): void {
    const keys = new Set<string>()
    for (const n of nodes) if (n.accepted_at_ms !== null) keys.add(`${n.node_id}@${n.attempt_epoch}`)
    if (keys.size === 0) return
    this.#byTask.set(taskId, keys)
  }

  /** Gives the task's note to its record (once). */
  take(t: TaskRec): void {
    if (this.#byTask.size === 0) return
    const keys = this.#byTask.get(t.id)
    if (keys === undefined) return
    this.#byTask.delete(t.id)
    t.acceptedBefore = keys
  }
}

/** What is kept of a traced task that ended: the trace ids of its later log records. */
export interface EndedRec {
  ids: TraceFields
  /** By node id, those of its last attempts that had a span, with their epoch; null: none had. */
  attempts: Map<string, { ids: TraceFields; epoch: number }> | null
}

/** Ends the open spans of a task this coordinator lets go (stopped, or handed over), marked `outcome` / `taskMark`. */
export function endOpenSpans(t: TaskRec, at: number, outcome: string, taskMark: string): void {
  for (const a of t.attempts.values()) {
    if (a.ended || a.span === null) continue
    if (a.recording) a.span.setAttribute('flowkit.attempt.outcome', outcome)
    a.span.end(at)
  }
  if (t.span?.isRecording() === true) t.span.setAttribute(taskMark, true)
  t.span?.end(at)
}

/** Links an attempt span to the worker's run span (an acceptance of a sampled trace). */
export function linkRunSpan(a: AttemptRec | undefined, headers: Record<string, string>): void {
  // A dropped (sampled-out) attempt span takes no link: the header is not even parsed.
  if (a === undefined || !a.recording || a.span === null || a.linked) return
  const remote = spanContextFromHeaders(headers)
  if (remote === undefined || remote.traceId !== a.span.spanContext().traceId) return
  a.linked = true
  a.span.addLink({ context: remote, attributes: { 'flowkit.link': 'worker.run' } })
}

/** Ends an attempt's span with its outcome (and its error, when that attempt failed). */
export function endAttemptSpan(a: AttemptRec, outcome: string, n: NodeState | null, at: number): void {
  const span = a.span
  if (span === null) return
  if (!a.recording) {
    span.end(at) // sampled out: nothing to add
    return
  }
  span.setAttribute('flowkit.attempt.outcome', outcome)
  const err = n?.last_error
  if (err != null && err.attempt_epoch === a.epoch) span.setAttribute('flowkit.error.reason_code', err.reason_code)
  if (outcome === 'failed' || outcome === 'retry') span.setStatus({ code: SpanStatusCode.ERROR, message: err?.error ?? err?.reason_code ?? outcome })
  span.end(at)
}

/**
 * What is kept of a traced task that ended: only the ids its later log records need (the whole
 * record, attempts included, kept the ended tasks' spans and maps alive past a young collection).
 */
export function endedRecOf(t: TaskRec, span: Span): EndedRec {
  let attempts: Map<string, { ids: TraceFields; epoch: number }> | null = null
  for (const a of t.attempts.values()) {
    if (a.span === null) continue
    attempts ??= new Map()
    attempts.set(a.nodeId, { ids: a.ids ?? traceFieldsOf(a.span.spanContext()), epoch: a.epoch })
  }
  return { ids: t.ids ?? traceFieldsOf(span.spanContext()), attempts }
}

/** The type of a node whose state a journal entry carries. */
export function entryType(entry: { nodes: readonly { node_id: string; type: string }[] }, nodeId: string): string | undefined {
  for (const n of entry.nodes) if (n.node_id === nodeId) return n.type
  return undefined
}
