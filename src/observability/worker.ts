/**
 * The worker's traces and metrics. A run is one span (`flowkit.worker.run`), a child of the
 * coordinator's node-attempt span when its TASK_START record carried a W3C `traceparent` header
 * (else of the active context: a root span for a Python coordinator's start), with an event per
 * batch; every status event of the run carries the run span back in its headers. The run's
 * status events also feed the metrics (batches, items, outcome), so execute.ts only opens and
 * closes the observation and status.ts asks it for the headers.
 *
 * A start whose trace is not sampled (its `traceparent` flags say so: the coordinator's sampler
 * dropped the task span) makes no run span: the run carries the context it received (its log
 * records, the handler's active span), and its status events carry none back (the coordinator
 * has nothing to link them to). A run span that does not record (the worker's sampler dropped it)
 * gets no attributes or events. With no SDK registered (the global tracer's spans would be
 * no-ops) no span is started at all; a sampled parent's context still goes back with the events.
 */
import type { AddressInfo } from 'node:net'
import { type Attributes, type Context, INVALID_TRACEID, ROOT_CONTEXT, type Span, SpanKind, SpanStatusCode, TraceFlags, type Tracer, context, createContextKey, trace } from '@opentelemetry/api'
import type { Registry } from 'prom-client'
import type { Logger } from '../log.ts'
import type { BusMessage } from '../ports/bus.ts'
import type { Clock } from '../ports/clock.ts'
import type { Store } from '../ports/store.ts'
import type { ActiveRun, WorkerCore } from '../worker/core.ts'
import type { RunInfo } from '../worker/handler.ts'
import { ObservedLogger, type TraceFields, traceFieldsOf } from './logger.ts'
import { MetricsEndpoint, type MetricsHandler, type ObservabilityOptions, itemsOf, metricsHandler, resolveObservability } from './options.ts'
import { TRACEPARENT, TRACESTATE, readTraceContext, traceHeaders } from './propagation.ts'
import { timedStore } from './store.ts'
import { WorkerMetrics } from './worker-metrics.ts'
import { messageKey } from '../protocol/messages.ts'

const byCore = new WeakMap<WorkerCore, WorkerObservability>()
export class WorkerObservability {
  readonly registry: Registry | null
  readonly tracer: Tracer | null
  readonly metrics: WorkerMetrics | null
  readonly clock: Clock
  readonly #endpoint: MetricsEndpoint
  #core: WorkerCore | null = null
  /** A span was recorded (an SDK is registered): logs look for trace ids from then on. */
  #tracing = false
  readonly #idle: () => boolean

  /** The observability of a worker built with `options`; null for `observability: false`. */
  static create(options: { observability?: ObservabilityOptions | false; config?: unknown }, clock: Clock): WorkerObservability | null {
    const r = resolveObservability(options.observability, options.config)
    return r === null ? null : new WorkerObservability(r.registry, r.tracer, clock, r.port, r.host, r.idle)
  }

  /** `idle`: true while `tracer`'s spans would be no-ops (the global tracer, no SDK registered). */
  constructor(registry: Registry | null, tracer: Tracer | null, clock: Clock, port: number | null, host: string, idle: () => boolean = () => false) {
    this.registry = registry
    this.tracer = tracer
    this.#idle = idle
    this.clock = clock
    this.#endpoint = new MetricsEndpoint(registry, port, host)
    const core = (): WorkerCore | null => this.#core
    this.metrics =
      registry === null
        ? null
        : new WorkerMetrics(registry, () => {
            const c = core()
            return c === null ? null : { activeRuns: () => c.runs.size, concurrency: () => c.config.concurrency, statusBacklog: () => c.status.pending }
          })
  }

  /** Binds this observability to the worker's core (execute.ts and status.ts find it there). */
  attach(core: WorkerCore): void {
    this.#core = core
    byCore.set(core, this)
  }

  wrapStore(store: Store): Store {
    return this.registry === null ? store : timedStore(store, this.registry, 'flowkit_worker_store_call_seconds')
  }

  wrapLogger(log: Logger): Logger {
    const m = this.metrics
    return new ObservedLogger(log, {
      ...(m === null ? {} : { record: (level, event) => m.record(level, event) }),
      ...(this.tracer === null ? {} : { traceOf: (t, n) => (n === undefined ? undefined : this.#core?.runs.get(messageKey(t, n))?.obs?.ids), tracing: () => this.#tracing }),
    })
  }

  /** Command records of `role` arrived together: the lag of each. */
  commands(role: string, ms: readonly BusMessage[]): void {
    const metrics = this.metrics
    if (metrics === null) return
    const now = this.clock.now()
    for (const m of ms) metrics.command(role, (now - m.timestamp) / 1000)
  }

  startRun(role: string, run: ActiveRun): RunObservation {
    const info = run.info
    const tracer = this.tracer
    // The trace parent its START record carried, if any.
    const traceparent = tracer === null ? undefined : run.startHeaders?.[TRACEPARENT]
    const tracestate = traceparent === undefined ? undefined : run.startHeaders?.[TRACESTATE]
    const remote = traceparent === undefined ? undefined : readTraceContext(traceparent, tracestate)
    const parent = remote?.ctx
    let headers: Record<string, string> | undefined
    let span: Span | null = null
    if (parent !== undefined && (parent.traceFlags & TraceFlags.SAMPLED) === 0) {
      // A trace the coordinator did not sample: no span of the run (a sampler following its
      // parent, ParentBased as the SDK's default, would drop it). The run carries its parent's
      // context for its log records and as the handler's active span; its status events carry
      // none back (the coordinator, which dropped the trace, has nothing to link them to).
      span = trace.wrapSpanContext(parent)
    } else if (tracer !== null && this.#idle()) {
      // No SDK: spans would be no-ops. A sampled parent's context still goes on (what the API's
      // no-op tracer does): the run's events carry it back, its log records name it.
      if (parent !== undefined) {
        span = trace.wrapSpanContext(parent)
        // The context goes back as it came when it is in the usual form (no new string to build).
        headers = remote?.plain === true && traceparent !== undefined ? plainHeaders(traceparent, tracestate) : traceHeaders(parent)
      }
    } else if (tracer !== null) {
      let s: Span
      if (parent === undefined) {
        // A root here (a start without trace context): the sampler decides on it, with its attributes.
        s = tracer.startSpan('flowkit.worker.run', { kind: SpanKind.CONSUMER, attributes: runAttributes(role, info) })
      } else {
        // A child of the attempt span: its attributes once it is known to record.
        s = tracer.startSpan('flowkit.worker.run', { kind: SpanKind.CONSUMER }, trace.setSpanContext(context.active(), parent))
        if (s.isRecording()) s.setAttributes(runAttributes(role, info))
      }
      if (s.spanContext().traceId !== INVALID_TRACEID) {
        span = s
        headers = traceHeaders(s.spanContext())
      }
    }
    if (span !== null) this.#tracing = true
    return new RunObservation(this, role, span, headers, run.started)
  }

  handler(): MetricsHandler {
    return this.#endpoint.handler()
  }

  /** The handler of an instance without observability (it answers 404). */
  static disabledHandler(): MetricsHandler {
    return metricsHandler([])
  }

  get address(): AddressInfo | null {
    return this.#endpoint.address
  }

  async start(): Promise<void> {
    await this.#endpoint.start()
  }

  async stop(): Promise<void> {
    await this.#endpoint.stop()
  }
}

/** The trace context headers of a start, sent back as they came. */
function plainHeaders(traceparent: string, tracestate: string | undefined): Record<string, string> {
  return tracestate ? { [TRACEPARENT]: traceparent, [TRACESTATE]: tracestate } : { [TRACEPARENT]: traceparent }
}

function runAttributes(role: string, info: RunInfo): Attributes {
  return {
    'flowkit.task.id': info.taskId,
    'flowkit.node.id': info.nodeId,
    'flowkit.node.type': role,
    'flowkit.attempt.epoch': info.attemptEpoch,
    'flowkit.worker.id': info.workerId,
    'flowkit.lease.id': info.leaseId,
  }
}

/**
 * One run's span and metrics; `status` sees each of its status events, `end` closes it. A span
 * the sampler dropped (not recording) still gives the run its trace context (headers, log ids,
 * the active span of the handler) but gets no events or attributes.
 */
export class RunObservation {
  readonly span: Span | null
  readonly headers: Record<string, string> | undefined
  /** The span records (sampled in): events and attributes are added to it. */
  readonly #recording: boolean
  #ids: TraceFields | undefined
  readonly #obs: WorkerObservability
  readonly #role: string
  readonly #startedAt: number
  #lastAt: number
  #outcome: string | null = null
  #ended = false
  /** The context `within` runs the handler in, made from the active context `#activeFor`. */
  #activeFor: Context | null = null
  #within: Context | null = null

  /** `headers`: the ones its status records carry (none for a trace that is not sampled). */
  constructor(obs: WorkerObservability, role: string, span: Span | null, headers: Record<string, string> | undefined, startedAt = obs.clock.now()) {
    this.#obs = obs
    this.#role = role
    this.span = span
    this.headers = headers
    this.#recording = span?.isRecording() === true
    this.#startedAt = startedAt
    this.#lastAt = this.#startedAt
  }

  /** trace_id / span_id of the run span, for log records (computed on first use). */
  get ids(): TraceFields | undefined {
    if (this.#ids === undefined && this.span !== null) this.#ids = traceFieldsOf(this.span.spanContext())
    return this.#ids
  }

  /** A status event of the run is being sent (built at `now`): returns the headers it carries. */
  status(payload: Record<string, unknown>, at?: number): Record<string, string> | undefined {
    if (this.#ended) return this.headers
    const span = this.#recording ? this.span : null
    switch (payload['kind']) {
      case 'BATCH_OK': {
        const now = at ?? this.#obs.clock.now()
        const items = itemsOf(payload['metrics'] as Record<string, unknown> | undefined)
        this.#obs.metrics?.batch(this.#role, items, (now - this.#lastAt) / 1000)
        this.#lastAt = now
        span?.addEvent('batch', { 'flowkit.batch.uid': String(payload['batch_uid']), 'flowkit.batch.items': items })
        break
      }
      case 'BATCH_FAILED':
        this.#obs.metrics?.batchFailed(this.#role)
        span?.addEvent('batch_failed', { 'flowkit.batch.uid': String(payload['batch_uid']), 'flowkit.error.reason_code': String(payload['reason_code']) })
        break
      case 'TASK_DONE':
        this.#outcome = 'finished'
        break
      case 'TASK_FAILED':
        this.#outcome = 'failed'
        span?.setAttribute('flowkit.error.reason_code', String(payload['reason_code']))
        span?.setStatus({ code: SpanStatusCode.ERROR, message: typeof payload['error'] === 'string' ? payload['error'] : String(payload['reason_code']) })
        break
      case 'CANCELLED':
        this.#outcome = 'cancelled'
        span?.setAttribute('flowkit.cancel.reason', String(payload['reason']))
        break
    }
    return this.headers
  }

  /** The run is over (whatever happened; a run that reported no end is `abandoned`). */
  end(): void {
    if (this.#ended) return
    this.#ended = true
    const outcome = this.#outcome ?? 'abandoned'
    this.#obs.metrics?.runEnded(this.#role, outcome, (this.#obs.clock.now() - this.#startedAt) / 1000)
    if (this.#recording) this.span?.setAttribute('flowkit.run.outcome', outcome)
    this.span?.end()
  }

  /**
   * Calls `fn` (a handler method) with the run span as the active span, so spans the handler
   * starts are its children. Takes effect where a context manager is registered (the OTel SDK
   * registers one); without a span, a plain call.
   */
  within<T>(fn: () => T): T {
    // Without a context manager (none is registered unless an SDK or the application does it),
    // `context.with` is a plain call: no context to make (it copies the active one's entries).
    if (this.span === null || !contextManaged()) return fn()
    const active = context.active()
    if (active !== this.#activeFor || this.#within === null) {
      // The same context for every call from the same active context (one per run, in practice).
      this.#activeFor = active
      this.#within = trace.setSpan(active, this.span)
    }
    return context.with(this.#within, fn)
  }
}

const PROBE = ROOT_CONTEXT.setValue(createContextKey('flowkit.context-probe'), true)
const inProbe = (): boolean => context.active() === PROBE

/**
 * Whether a context manager is registered: only then does a context given to `context.with`
 * become the active one. Asked at each call (about 50 ns without one): an application may
 * register one at any time.
 */
export function contextManaged(): boolean {
  return context.with(PROBE, inProbe)
}

/**
 * Opens the observation of a run (execute.ts) and keeps it on the run (`ActiveRun.obs`: its status
 * events and log records find it there); null when the worker has no observability.
 */
export function observeRun(core: WorkerCore, role: string, run: ActiveRun): RunObservation | null {
  const obs = byCore.get(core)?.startRun(role, run) ?? null
  run.obs = obs
  return obs
}

/**
 * A status event of `run` is being built at `now` (status.ts): the headers it carries, if any.
 * (`run` undefined: a run this worker no longer holds, whose observation has ended.)
 */
export function observeStatus(run: ActiveRun | undefined, info: RunInfo, payload: Record<string, unknown>, now?: number): Record<string, string> | undefined {
  return run?.info === info ? run.obs?.status(payload, now) : undefined
}
