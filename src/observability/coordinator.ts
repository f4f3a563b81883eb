/**
 * The coordinator's traces and metrics. Everything is driven by what is durable: each journal
 * entry the coordinator writes (its node states, batches and task status) opens and closes
 *
 *   - one span per task (`flowkit.task`, from createTask to the terminal status), and
 *   - one span per node attempt (`flowkit.node.attempt`, from dispatch to the attempt's end),
 *     with an event per accepted lease and per batch counted,
 *
 * and feeds the attempt histograms. The TASK_START (and cancel) records of an attempt carry its
 * W3C trace context in their headers (the outbox asks `commandHeaders`), so the worker's run span
 * is a child of the attempt span; the worker's status events carry the run span back, which is
 * linked to the attempt span. With no OpenTelemetry SDK registered, spans are no-ops and nothing
 * is tracked for them; with `observability: false` none of this exists.
 *
 * Sampling is decided on the task span (the sampler sees its attributes). A task span the sampler
 * dropped (not recording, sampled flag off) makes a trace that is not sampled: its attempts start
 * no span of their own (a sampler that follows the parent, ParentBased as the SDK's default, would
 * drop them) and their commands carry the task span's context, so the worker's run follows the
 * same decision; the log records name the task span. Nothing is built for a span that does not
 * record: no attributes, events or links; the attempt span (a child) gets its attributes once it
 * is known to record.
 */
import type { AddressInfo } from 'node:net'
import { type Context, INVALID_TRACEID, type Span, SpanKind, SpanStatusCode, TraceFlags, type Tracer, context, isSpanContextValid, trace } from '@opentelemetry/api'
import type { Registry } from 'prom-client'
import type { LogFields, Logger } from '../log.ts'
import type { JournalEntry } from '../model/journal.ts'
import type { NodeState } from '../model/state.ts'
import type { BusMessage } from '../ports/bus.ts'
import type { Clock } from '../ports/clock.ts'
import type { Store } from '../ports/store.ts'
import { FINAL_UID } from '../protocol/messages.ts'
import { CoordinatorMetrics, type CoordinatorParts } from './coordinator-metrics.ts'
import { messageKind } from './kinds.ts'
import { RecentMap } from '../util/recent.ts'
import { ObservedLogger, type TraceFields, traceFieldsOf } from './logger.ts'
import { MetricsEndpoint, type MetricsHandler, type ObservabilityOptions, itemsOf, metricsHandler, resolveObservability } from './options.ts'
import { TRACEPARENT, isSampledTraceparent, traceHeaders } from './propagation.ts'
import { timedStore } from './store.ts'
import { type AttemptRec, ClaimedAcceptances, type EndedRec, type TaskRec, attemptRecOf, endAttemptSpan, endOpenSpans, endedRecOf, entryType, linkRunSpan } from './coordinator-records.ts'

const BUSY: ReadonlySet<string> = new Set(['running', 'cancelling'])
const TERMINAL_TASK: ReadonlySet<string> = new Set(['finished', 'failed', 'cancelled'])
/** Tasks followed at most (a task another coordinator took over never ends here). */
const MAX_TASKS = 100_000

/** An attempt's end as an outcome label: its node status, or what a non-terminal one means. */
const OUTCOME: Record<string, string> = { deferred: 'retry', queued: 'handed_back' }

export class CoordinatorObservability {
  readonly registry: Registry | null
  readonly #tracer: Tracer | null
  readonly #metrics: CoordinatorMetrics | null
  readonly #clock: Clock
  readonly #endpoint: MetricsEndpoint
  readonly #tasks = new Map<string, TaskRec>()
  /** Headers of recently ended attempts by `key@epoch`: a command sent after its attempt ended (the cancel of a lost lease's holder) carries its own attempt's context. */
  readonly #endedHeaders = new RecentMap<string, Record<string, string>>(1024)
  /**
   * Traced tasks that ended, for the trace ids of the log records that follow their end (the
   * task's end is logged once its entry is durable, after the entry ended its spans here).
   */
  readonly #ended = new RecentMap<string, EndedRec>(4096)
  /** Live attempts by message key (task_id:node_id), for the headers of their commands. */
  readonly #byKey = new Map<string, AttemptRec>()
  readonly #claimed = new ClaimedAcceptances()
  #parts: CoordinatorParts | null = null
  /** A span was recorded (an SDK is registered): logs look for trace ids from then on. */
  #tracing = false
  readonly #idle: () => boolean

  /** The observability of a coordinator built with `options`; null for `observability: false`. */
  static create(options: { observability?: ObservabilityOptions | false; config?: unknown }, clock: Clock): CoordinatorObservability | null {
    const r = resolveObservability(options.observability, options.config)
    return r === null ? null : new CoordinatorObservability(r.registry, r.tracer, clock, r.port, r.host, r.idle)
  }

  /** `idle`: true while `tracer`'s spans would be no-ops (the global tracer, no SDK registered). */
  constructor(registry: Registry | null, tracer: Tracer | null, clock: Clock, port: number | null, host: string, idle: () => boolean = () => false) {
    this.registry = registry
    this.#tracer = tracer
    this.#idle = idle
    this.#clock = clock
    this.#endpoint = new MetricsEndpoint(registry, port, host)
    this.#metrics = registry === null ? null : new CoordinatorMetrics(registry, () => this.#parts)
  }

  /** What the gauges read at scrape time (the coordinator's tasks, stats and outbox). */
  attach(parts: CoordinatorParts): void {
    this.#parts = parts
  }

  wrapStore(store: Store): Store {
    return this.registry === null ? store : timedStore(store, this.registry, 'flowkit_coordinator_store_call_seconds')
  }

  wrapLogger(log: Logger): Logger {
    const m = this.#metrics
    const typeOf = (f: LogFields | undefined): string => {
      const t = f?.['task_id']
      const n = f?.['node_id']
      if (typeof t !== 'string' || typeof n !== 'string') return 'unknown'
      return this.#tasks.get(t)?.attempts.get(n)?.type ?? this.#parts?.nodeType?.(t, n) ?? 'unknown'
    }
    return new ObservedLogger(log, {
      ...(m === null ? {} : { record: (level, event, fields) => m.record(level, event, fields, typeOf) }),
      ...(this.#tracer === null ? {} : { traceOf: (t, n, e) => this.#traceOf(t, n, e), tracing: () => this.#tracing }),
    })
  }

  /** A record's span: its node's attempt (of that epoch, when the record names one), else its task's. */
  #traceOf(taskId: string, nodeId: string | undefined, epoch?: number): TraceFields | undefined {
    const t = this.#tasks.get(taskId)
    if (t === undefined) {
      const e = this.#ended.get(taskId)
      const a = nodeId === undefined ? undefined : e?.attempts?.get(nodeId)
      return a !== undefined && (epoch === undefined || a.epoch === epoch) ? a.ids : e?.ids
    }
    const a = nodeId === undefined ? undefined : t.attempts.get(nodeId)
    // (A record of another attempt — the next one's dispatch, logged before its span starts — is the task's.)
    if (a?.span != null && (epoch === undefined || a.epoch === epoch)) {
      a.ids ??= traceFieldsOf(a.span.spanContext())
      return a.ids
    }
    if (t.span === null) return undefined
    t.ids ??= traceFieldsOf(t.span.spanContext())
    return t.ids
  }

  /** A task was created here: its span starts now, as a child of the caller's active context. */
  taskCreated(taskId: string, nodes: number): void {
    this.#metrics?.taskCreated()
    this.#taskStart(taskId, nodes, this.#clock.now())
  }

  /**
   * A task submitted through the store (`flowkit submit`, the dashboard of `flowkit ui`), taken up
   * here first: created here as far as the metrics, its span and its duration go, from its
   * creation time (it got a "resumed" span and no duration).
   */
  taskSubmitted(taskId: string, nodes: number, createdAt: number): void {
    this.#metrics?.taskCreated()
    if (!this.#tasks.has(taskId)) this.#taskStart(taskId, nodes, createdAt)
  }

  /** A task loaded from the store (a restart, a hand-over): what its previous owner measured is not measured again. */
  taskClaimed(taskId: string, nodes: readonly NodeState[]): void {
    this.#claimed.note(taskId, nodes)
  }

  #taskStart(taskId: string, nodes: number, at: number): void {
    const parent = context.active()
    // The attributes at the start: the sampler decides on this span (a root, or the first span of
    // the trace in this process).
    const span = this.#taskSpan(parent, (tracer) => tracer.startSpan('flowkit.task', { kind: SpanKind.INTERNAL, startTime: at, attributes: { 'flowkit.task.id': taskId, 'flowkit.task.nodes': nodes } }, parent))
    this.#task(taskId, at, parent, span)
  }

  /**
   * A task's span, started by `start` when an SDK is registered. Without one (its spans would be
   * no-ops) none is started: the span context of `parent` when valid goes on (what the API's
   * no-op tracer would return), else null.
   */
  #taskSpan(parent: Context, start: (tracer: Tracer) => Span): Span | null {
    const tracer = this.#tracer
    if (tracer === null) return null
    if (!this.#idle()) return start(tracer)
    const sc = trace.getSpanContext(parent)
    return sc !== undefined && isSpanContextValid(sc) ? trace.wrapSpanContext(sc) : null
  }

  #task(taskId: string, createdAt: number | null, parent: Context, s: Span | null): TaskRec {
    let span: Span | null = null
    let ctx = parent
    let unsampled = false
    if (s !== null && s.spanContext().traceId !== INVALID_TRACEID) {
      this.#tracing = true
      span = s
      unsampled = !s.isRecording() && (s.spanContext().traceFlags & TraceFlags.SAMPLED) === 0
      if (!unsampled) ctx = trace.setSpan(parent, s)
    }
    const rec: TaskRec = { id: taskId, createdAt, span, unsampled, headers: undefined, ids: undefined, ctx, attempts: new Map() }
    this.#tasks.set(taskId, rec)
    if (this.#tasks.size > MAX_TASKS) {
      const oldest = this.#tasks.values().next().value
      if (oldest !== undefined) this.#forget(oldest)
    }
    return rec
  }

  /** A journal entry is durable: spans and metrics follow its node states, batches and task status. */
  journal(entry: JournalEntry): void {
    let t = this.#tasks.get(entry.task_id)
    if (t === undefined) {
      // A task created by another coordinator process (adopted, or recovered after a restart).
      if (entry.task?.status !== undefined && TERMINAL_TASK.has(entry.task.status) && entry.nodes.length === 0) return
      const parent = context.active()
      const span = this.#taskSpan(parent, (tracer) => tracer.startSpan('flowkit.task', { kind: SpanKind.INTERNAL, attributes: { 'flowkit.task.id': entry.task_id, 'flowkit.task.resumed': true } }, parent))
      t = this.#task(entry.task_id, null, parent, span)
    }
    this.#claimed.take(t)
    // Attempts the entry ends are ended after its batches: a node's last batch is often written
    // with its end, and the span must have the batch's event.
    let ends: NodeState[] | null = null
    for (const n of entry.nodes) {
      if (!this.#node(t, n, entry.at_ms)) continue
      ends ??= []
      ends.push(n)
    }
    if (entry.batches !== undefined) {
      for (const [nodeId, uid, epoch, metrics] of entry.batches) {
        if (uid === FINAL_UID) continue
        const a = t.attempts.get(nodeId)
        const items = itemsOf(metrics)
        // (No attempt when this entry also ends the node, first seen here after a hand-over.)
        this.#metrics?.batch(a?.type ?? entryType(entry, nodeId) ?? this.#parts?.nodeType?.(entry.task_id, nodeId) ?? 'unknown', items)
        if (a?.recording && a.epoch === epoch && !a.ended) a.span?.addEvent('batch', { 'flowkit.batch.uid': uid, 'flowkit.batch.items': items }, entry.at_ms)
      }
    }
    if (ends !== null) {
      for (const n of ends) {
        const a = t.attempts.get(n.node_id)
        if (a !== undefined && !a.ended) this.#endAttempt(a, n.status === 'deferred' && (n.handbacks ?? 0) > a.handbacks ? 'handed_back' : (OUTCOME[n.status] ?? n.status), n, n.finished_at_ms ?? entry.at_ms)
      }
    }
    const status = entry.task?.status
    if (status !== undefined && TERMINAL_TASK.has(status)) this.#endTask(t, status, entry.task?.error ?? null, entry.at_ms)
  }

  /** Follows a node's state; true when its attempt ends with this state (the caller ends it). */
  #node(t: TaskRec, n: NodeState, at: number): boolean {
    let a = t.attempts.get(n.node_id)
    if (a !== undefined && a.epoch !== n.attempt_epoch) {
      // Replaced in the same entry that ended it (a retry or hand-back due at once): its counts say how it ended.
      if (!a.ended) this.#endAttempt(a, (n.handbacks ?? 0) > a.handbacks ? 'handed_back' : n.failures > a.failures ? 'retry' : 'superseded', n, at)
      a = undefined
    }
    if (a === undefined) {
      if (n.attempt_epoch === 0 || n.dispatched_at_ms === null || !BUSY.has(n.status)) return false
      a = this.#startAttempt(t, n)
    }
    if (a.ended) return false
    if (!a.accepted && n.accepted_at_ms !== null) {
      a.accepted = true
      if (t.acceptedBefore?.has(`${n.node_id}@${n.attempt_epoch}`) !== true) this.#metrics?.accepted(a.type, (n.accepted_at_ms - a.dispatchedAt) / 1000)
      if (a.recording && a.span !== null) {
        const workerId = n.lease.worker_id ?? ''
        a.span.setAttributes({ 'flowkit.worker.id': workerId, 'flowkit.lease.id': n.lease.lease_id ?? '' })
        a.span.addEvent('accepted', { 'flowkit.worker.id': workerId }, n.accepted_at_ms)
      }
    }
    return !BUSY.has(n.status)
  }

  #startAttempt(t: TaskRec, n: NodeState): AttemptRec {
    const a = attemptRecOf(this.#tracer, t, n, this.#clock.now())
    t.attempts.set(n.node_id, a)
    // Looked up by key only for what tracing adds (command headers, links from run spans).
    if (a.headers !== undefined || a.span !== null) {
      a.key = `${t.id}:${n.node_id}`
      this.#byKey.set(a.key, a)
    }
    return a
  }

  #endAttempt(a: AttemptRec, outcome: string, n: NodeState | null, at: number): void {
    a.ended = true
    if (a.key !== null) {
      if (this.#byKey.get(a.key) === a) this.#byKey.delete(a.key)
      if (a.headers !== undefined) this.#endedHeaders.set(`${a.key}@${a.epoch}`, a.headers)
    }
    this.#metrics?.attemptEnded(a.type, outcome, (at - a.dispatchedAt) / 1000)
    endAttemptSpan(a, outcome, n, at)
  }

  #endTask(t: TaskRec, status: string, error: string | null, at: number): void {
    for (const a of t.attempts.values()) if (!a.ended) this.#endAttempt(a, status === 'finished' ? 'abandoned' : status, null, at)
    this.#metrics?.taskEnded(status, t.createdAt === null ? null : (at - t.createdAt) / 1000)
    if (t.span !== null) {
      if (t.span.isRecording()) t.span.setAttribute('flowkit.task.status', status)
      if (status === 'failed') t.span.setStatus({ code: SpanStatusCode.ERROR, message: error ?? 'failed' })
      t.span.end(at)
      this.#ended.set(t.id, endedRecOf(t, t.span))
    }
    this.#tasks.delete(t.id)
  }

  #forget(t: TaskRec): void {
    for (const a of t.attempts.values()) {
      if (a.key !== null && this.#byKey.get(a.key) === a) this.#byKey.delete(a.key)
    }
    this.#tasks.delete(t.id)
  }

  /**
   * Headers of an outgoing command: the trace context of its node's current attempt; in a trace
   * that is not sampled, the task span's (found by the message's task).
   */
  readonly commandHeaders = (msg: { key: string | null; task_id?: string; epoch?: number; node_key?: string }): Record<string, string> | undefined => {
    if (msg.task_id !== undefined) {
      const t = this.#tasks.get(msg.task_id)
      if (t?.unsampled === true && t.span !== null) {
        t.headers ??= traceHeaders(t.span.spanContext())
        return t.headers
      }
    }
    // (A steered START is keyed by its worker: its node's key says which attempt.)
    const key = msg.node_key ?? msg.key
    if (key === null) return undefined
    const a = this.#byKey.size === 0 ? undefined : this.#byKey.get(key)
    // A command of an attempt that has ended (or been replaced): that attempt's context, not the current one's.
    if (msg.epoch !== undefined && a?.epoch !== msg.epoch) return this.#endedHeaders.get(`${key}@${msg.epoch}`)
    return a?.headers
  }

  /**
   * A batch of status records: lag at receipt and (once `apply` resolved: durable) the time to
   * application, by the kind `apply` parsed (records it could not parse count as `other`); with
   * tracing, an acceptance carrying a sampled run span links it to the attempt span, before the
   * batch is applied (the attempt may end in it).
   */
  async statusBatch(msgs: readonly BusMessage[], apply: (kinds?: Array<string | undefined>) => Promise<void>): Promise<void> {
    const m = this.#metrics
    const tracing = this.#tracing
    if (m === null && !tracing) return apply()
    if (tracing) this.linkAccepted(msgs)
    if (m === null) return apply()
    const received = this.#clock.now()
    const kinds = new Array<string | undefined>(msgs.length)
    await apply(kinds)
    const done = this.#clock.now()
    for (let i = 0; i < msgs.length; i++) {
      const kind = kinds[i] ?? 'other'
      const ts = (msgs[i] as BusMessage).timestamp
      m.received(kind, (received - ts) / 1000)
      m.applied(kind, (done - ts) / 1000)
    }
  }

  /**
   * Acceptances carrying a sampled run span link it to their attempt spans: in statusBatch, and
   * for the reports another coordinator read and forwarded to this one, the owner (their lag is
   * measured where they were read).
   */
  linkAccepted(msgs: readonly BusMessage[]): void {
    if (!this.#tracing) return
    for (const msg of msgs) {
      if (msg.headers !== undefined && msg.key !== null && isSampledTraceparent(msg.headers[TRACEPARENT]) && messageKind(msg) === 'TASK_ACCEPTED') linkRunSpan(this.#byKey.get(msg.key), msg.headers)
    }
  }

  /**
   * The task moved to another coordinator: its spans end now, marked handed over (they stayed open
   * until this coordinator stopped, then ended "unfinished"). No metrics: its new owner counts how
   * its attempts and the task end.
   */
  released(taskId: string): void {
    const t = this.#tasks.get(taskId)
    if (t === undefined) return
    this.#forget(t)
    endOpenSpans(t, this.#clock.now(), 'handed_over', 'flowkit.task.handed_over')
  }

  handler(): MetricsHandler {
    return this.#endpoint.handler()
  }

  /** The handler of an instance without observability (it answers 404). */
  static disabledHandler(): MetricsHandler {
    return metricsHandler([])
  }

  /** Where the /metrics server listens (metricsPort), once started. */
  get address(): AddressInfo | null {
    return this.#endpoint.address
  }

  async start(): Promise<void> {
    await this.#endpoint.start()
  }

  /** Closes the server; open spans end (their tasks go on elsewhere or after a restart). */
  async stop(): Promise<void> {
    const at = this.#clock.now()
    for (const t of [...this.#tasks.values()]) {
      // Not over: it goes on after a restart or on another coordinator (a span of its own there).
      endOpenSpans(t, at, 'unfinished', 'flowkit.task.unfinished')
      this.#forget(t)
    }
    await this.#endpoint.stop()
  }
}
