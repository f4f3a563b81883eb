/**
 * The worker: consumes `cmd.{role}.v1` with bounded concurrency, accepts a start with a lease,
 * heartbeats while it runs, pulls input (adapter or the handler's own batches), writes one partial
 * artifact per successful batch and a complete one at the end, and reports every step on
 * `status.{role}.v1` with the protocol's field names. Cancellation is cooperative.
 *
 * This file is the facade and lifecycle (start, stop, kill, announcements). The rest:
 * handler-checks.ts (handlers checked at construction), intake.ts (commands, slots), runs.ts
 * (run lifecycle, cancel), execute.ts (one run), input-select.ts (where batches come from),
 * status.ts (status event records) and status-emitter.ts (their batched produce), state.ts (run
 * state persisted in the background), discovery.ts (signals, TASK_DISCOVER).
 */
import { groupInstanceId } from '../util/ids.ts'
import { hostname } from 'node:os'
import { randomUUID } from 'node:crypto'
import { SystemClock } from '../clock.ts'
import { type ConfigInput, WORKER_DEFAULTS, type WorkerConfig, MIN_MESSAGE_BYTES, checkBounds, checkStringList, checkTopics, resolveConfig, topicFor } from '../config.ts'
import { ErrorCode, FlowkitError } from '../errors.ts'
import { createLogger, type Logger } from '../log.ts'
import type { MetricsHandler, ObservabilityOptions } from '../observability/options.ts'
import { WorkerObservability } from '../observability/worker.ts'
import type { Bus, Subscription } from '../ports/bus.ts'
import type { Clock } from '../ports/clock.ts'
import type { Store, WorkerRun } from '../ports/store.ts'
import { MAX_WORKER_ID_CHARS, messageKey } from '../protocol/messages.ts'
import { isWellFormed } from '../util/text.ts'
import { parkPoison } from '../util/guard.ts'
import { type AnnounceInfo, announce, announceLoop } from './announce.ts'
import { LoadReport } from './load-report.ts'
import { StopSteps } from '../util/stop-steps.ts'
import { RecentSet } from '../util/recent.ts'

/** Attempts remembered as cancelled before their START came (WorkerCore.cancelledEarly). */
const CANCELLED_EARLY_MAX = 10_000
import { CancelledRunError, WORKER_STOPPING_REASON } from './cancel.ts'
import { type WorkerCore, attemptKey } from './core.ts'
import { onQuery, onSignal } from './discovery.ts'
import type { RoleHandler, RunInfo } from './handler.ts'
import { CommandIntake } from './intake.ts'
import { HeartbeatTicker } from './heartbeats.ts'
import { newInstanceId } from './instance.ts'
import { RunManager } from './runs.ts'
import { WorkerStateSaver, predecessorRuns, workerStateOf } from './state.ts'
import { StatusEmitter } from './status-emitter.ts'
import { checkHandlers } from './handler-checks.ts'

/** Upper bound of config.statusHoldMs. */
const MAX_STATUS_HOLD_MS = 1000
/** How long a stopping worker with nothing else to report tries its WORKER_OFFLINE announce. */
const OFFLINE_ANNOUNCE_MS = 5000

export interface WorkerOptions {
  bus: Bus
  store: Store
  handlers: Record<string, RoleHandler>
  clock?: Clock
  config?: ConfigInput<WorkerConfig>
  logger?: Logger
  /** Traces and Prometheus metrics (default: both on; see docs/observability.md); false: none. */
  observability?: ObservabilityOptions | false
}

export class Worker {
  readonly config: WorkerConfig
  readonly workerId: string
  readonly #core: WorkerCore
  readonly #runs: RunManager
  readonly #intake: CommandIntake
  readonly #obs: WorkerObservability | null
  #subs: Subscription[] = []
  #restored: WorkerRun[] = []
  #started = false
  #starting: Promise<void> | null = null
  /** WORKER_ONLINE went out (since the last start): a stop announces WORKER_OFFLINE. */
  #online = false
  #announceAbort = new AbortController()

  constructor(options: WorkerOptions) {
    this.config = checkBounds(
      resolveConfig(WORKER_DEFAULTS, (options.config ?? {}) as Record<string, unknown>, 'worker config'),
      'worker config',
      ['leaseTtlSec', 'hbIntervalSec', 'announceIntervalSec', 'topicPartitions', 'maxMessageBytes'],
      ['pullPollMsDefault', 'pullEmptyBackoffMsMax', 'dbCancelPollMs', 'cancelGraceMs', 'stateSaveIntervalMs', 'statusHoldMs'],
    )
    checkTopics(this.config, 'worker config')
    if (this.config.maxMessageBytes < MIN_MESSAGE_BYTES) {
      // (Smaller, every status event of a run was refused before its acceptance: the coordinator
      // handed the START back again and again, and the task never ended.)
      throw new FlowkitError(ErrorCode.Config, `worker config: "maxMessageBytes" must be at least ${MIN_MESSAGE_BYTES.toLocaleString('en-US')} (as a coordinator's: the TASK_STARTs it takes and its status events fit it), got ${this.config.maxMessageBytes.toLocaleString('en-US')}`)
    }
    const wid: unknown = this.config.workerId
    if (wid !== null && typeof wid !== 'string') throw new FlowkitError(ErrorCode.Config, `worker config: "workerId" must be a string or null, got ${typeof wid}`)
    checkStringList(this.config.roles, 'worker config', 'roles')
    if (this.config.statusHoldMs > MAX_STATUS_HOLD_MS) {
      throw new FlowkitError(ErrorCode.Config, `worker config: statusHoldMs must be at most ${MAX_STATUS_HOLD_MS} (an acceptance held longer delays what the coordinator knows), got ${this.config.statusHoldMs}`)
    }
    const roles = checkHandlers(options.handlers, this.config.roles)
    if (this.config.concurrency < 1 || !Number.isInteger(this.config.concurrency)) {
      throw new FlowkitError(ErrorCode.Config, 'worker config: concurrency must be an integer >= 1')
    }
    this.workerId = this.config.workerId ?? `w-${hostname()}-${randomUUID().slice(0, 8)}`
    if (this.workerId === '' || this.workerId.length > MAX_WORKER_ID_CHARS || !isWellFormed(this.workerId)) {
      // (A coordinator refuses the announces of a longer one.)
      throw new FlowkitError(ErrorCode.Config, `worker config: workerId must be 1 to ${MAX_WORKER_ID_CHARS} characters of well-formed Unicode, got ${this.workerId.length} characters`)
    }
    const clock = options.clock ?? new SystemClock()
    this.#obs = WorkerObservability.create(options, clock)
    const baseLog = (options.logger ?? createLogger()).child({ component: 'worker', worker_id: this.workerId })
    const log = this.#obs?.wrapLogger(baseLog) ?? baseLog
    const store = this.#obs?.wrapStore(options.store) ?? options.store
    const core: WorkerCore = {
      config: this.config,
      workerId: this.workerId,
      instanceId: newInstanceId(clock.now()),
      restored: new Set(),
      cancelledEarly: new RecentSet(CANCELLED_EARLY_MAX),
      bus: options.bus,
      store,
      clock,
      log,
      handlers: options.handlers,
      roles,
      runs: new Map(),
      status: new StatusEmitter({ bus: options.bus, clock, log, holdMs: this.config.statusHoldMs }),
      state: new WorkerStateSaver({
        store,
        log,
        snapshot: () => workerStateOf(core),
        enabled: () => !core.killed,
        minIntervalMs: this.config.stateSaveIntervalMs,
      }),
      heartbeats: new HeartbeatTicker(() => core),
      killed: false,
      stopping: false,
    }
    this.#core = core
    this.#obs?.attach(core)
    this.#runs = new RunManager(core, {
      releaseSlot: () => this.#intake.releaseSlot(),
      forget: (seenKey) => this.#intake.forget(seenKey),
    })
    this.#intake = new CommandIntake(core, this.#runs)
  }

  /** A node:http request handler serving this worker's Prometheus metrics (any path). */
  metricsHandler(): MetricsHandler {
    return this.#obs?.handler() ?? WorkerObservability.disabledHandler()
  }

  /** Traces and metrics of this worker (its prom-client `registry`, the server `address`); null when disabled. */
  get observability(): WorkerObservability | null {
    return this.#obs
  }

  get roles(): string[] {
    return Object.keys(this.#core.handlers)
  }

  /**
   * Runs the previous process with this worker id held when it stopped (its persisted run state).
   * They are not resumed here: the coordinator re-dispatches them at a new epoch once their leases
   * expire, or finishes them if their complete artifact exists.
   */
  get restoredRuns(): readonly WorkerRun[] {
    return this.#restored
  }

  /** Runs in progress, as (task_id, node_id, attempt_epoch). */
  activeRuns(): RunInfo[] {
    return [...this.#core.runs.values()].map((r) => r.info)
  }

  #announceInfo(): AnnounceInfo {
    return { workerId: this.workerId, roles: this.roles, version: this.config.workerVersion, concurrency: this.config.concurrency, topic: this.config.topicWorkerAnnounce, running: () => this.#intake.running }
  }

  /**
   * Subscribes and announces the worker. Calls while a start is under way share it; a start that
   * failed (the store or the bus unavailable) leaves the worker stopped, and start() may be called
   * again.
   */
  start(): Promise<void> {
    if (this.#starting !== null) return this.#starting
    if (this.#started) return Promise.resolve()
    const starting = this.#start().finally(() => {
      this.#starting = null
    })
    this.#starting = starting
    return starting
  }

  async #start(): Promise<void> {
    this.#started = true
    try {
      await this.#startSteps()
    } catch (err) {
      // Undone, so that a later start() begins again (nothing of this one is left running).
      await this.#undoStart()
      throw err
    }
  }

  /**
   * Stops what a failed start got going, as stop() does: the command subscriptions may have been
   * live, so a run it took is cancelled (handed back) and waited for. Never throws; the worker
   * ends stopped.
   */
  async #undoStart(): Promise<void> {
    const steps = new StopSteps(this.#core.log, 'worker.stop_slow')
    try {
      await this.#stopSteps(steps, false)
    } catch {
      // What could not be closed is dropped below; the start's own error is the one reported.
      await Promise.allSettled([...this.#intake.subs, ...this.#subs].map((sub) => sub.close()))
      this.#intake.subs = []
      this.#subs = []
      await this.#obs?.stop().catch(() => undefined)
    } finally {
      steps.end()
      this.#started = false
    }
  }

  async #startSteps(): Promise<void> {
    const core = this.#core
    core.stopping = false
    core.status.finishBy(Number.POSITIVE_INFINITY)
    if (core.killed) {
      // A killed worker's emitter is closed; this start is a new process.
      core.status = new StatusEmitter({ bus: core.bus, clock: core.clock, log: core.log, holdMs: this.config.statusHoldMs })
      core.killed = false
    }
    await core.store.init()
    await this.#obs?.start()
    const c = this.config
    const partitions = c.topicPartitions
    await core.bus.ensureTopics([
      ...this.roles.flatMap((r) => [
        { name: topicFor(c.topicCmdFmt, r), partitions },
        { name: topicFor(c.topicStatusFmt, r), partitions },
      ]),
      { name: c.topicWorkerAnnounce, partitions: 1 },
      { name: c.topicQuery, partitions },
      { name: c.topicReply, partitions },
      { name: c.topicSignals, partitions },
    ])
    this.#restored = await predecessorRuns(core)
    core.restored = new Set(this.#restored.map((r) => attemptKey(r.task_id, r.node_id, r.attempt_epoch)))
    await core.state.saveNow() // before subscribing, and a failure fails the start
    for (const role of this.roles) {
      const sub = await core.bus.subscribe({
        groupId: `${c.groupPrefix}workers.${role}.v1`,
        topics: [topicFor(c.topicCmdFmt, role)],
        name: `worker-cmd-${role}`,
        ...this.#instance(`cmd.${role}`),
        maxBatch: c.concurrency, // a partition's commands together: their claims share a round trip
        batchHandler: (ms) => {
          this.#obs?.commands(role, ms)
          return this.#intake.onCommands(role, ms)
        },
      })
      this.#intake.subs.push(sub)
    }
    // Each into the list as soon as it exists (what a failed start undoes is what is in it).
    const signals = await core.bus.subscribe({
      groupId: `${c.groupPrefix}workers.signals.${this.workerId}`,
      topics: [c.topicSignals],
      fromLatest: true,
      name: 'worker-signals',
      ...this.#instance('signals'),
      handler: parkPoison((m) => onSignal(core, this.#runs, m, (env, headers) => this.#intake.onSteered(env, headers)), core.log),
    })
    this.#subs.push(signals)
    const queries = await core.bus.subscribe({
      groupId: `${c.groupPrefix}workers.query.${this.workerId}`,
      topics: [c.topicQuery],
      fromLatest: true,
      name: 'worker-query',
      ...this.#instance('query'),
      handler: parkPoison((m) => onQuery(core, m), core.log),
    })
    this.#subs.push(queries)
    await announce(this.#core, this.#announceInfo(), 'WORKER_ONLINE', this.#restored)
    this.#online = true
    this.#announceAbort = new AbortController()
    const load = new LoadReport(core, c.concurrency, () => announce(this.#core, this.#announceInfo(), 'WORKER_ONLINE', [], true))
    this.#intake.onLoad = (running) => load.update(running)
    this.#announceAbort.signal.addEventListener('abort', () => load.stop(), { once: true })
    void announceLoop(this.#core, this.#announceInfo(), this.config.announceIntervalSec * 1000, this.#announceAbort.signal)
    if (c.hbIntervalSec * 2 > c.leaseTtlSec) {
      // Allowed (a test may want leases to lapse), but rarely meant: said once per start.
      core.log.warn('worker.lease_unsafe', {
        lease_ttl_sec: c.leaseTtlSec,
        hb_interval_sec: c.hbIntervalSec,
        why: c.hbIntervalSec >= c.leaseTtlSec ? 'heartbeats come after the lease ends: a run longer than the lease is expired and run again' : 'one late heartbeat ends the lease: keep hbIntervalSec at most a third of leaseTtlSec',
      })
    }
    core.log.info('worker.started', { roles: this.roles, concurrency: c.concurrency })
  }

  /**
   * Static group membership for a worker given a stable `workerId`: a process restarted after a
   * crash takes its place in its groups at once, instead of after its predecessor's session
   * timed out (its start waits for these groups).
   */
  #instance(name: string): { instanceId?: string } {
    const id = this.config.workerId
    return id ? { instanceId: groupInstanceId(`${id}.${name}`) } : {}
  }

  /**
   * Stops taking commands, cancels what runs unless `drain` is set, in which case running nodes
   * finish first. Each run given up reports CANCELLED with reason `worker_stopping`
   * (WORKER_STOPPING_REASON): a hand-back the coordinator re-dispatches without counting a retry.
   * A run already being cancelled for another reason keeps that reason.
   */
  async stop(options: { drain?: boolean } = {}): Promise<void> {
    // A start under way ends first (its steps are not cut in the middle); a failed one undid itself.
    if (this.#starting !== null) await this.#starting.catch(() => undefined)
    if (!this.#started) return
    const steps = new StopSteps(this.#core.log, 'worker.stop_slow')
    try {
      await this.#stopSteps(steps, options.drain === true)
    } finally {
      steps.end()
    }
    this.#core.log.info('worker.stopped')
  }

  async #stopSteps(steps: StopSteps, drain: boolean): Promise<void> {
    const core = this.#core
    core.stopping = true
    // Whatever is still to report (hand-backs, the offline announce) goes out within one retry
    // window, however many batches queue meanwhile. A drain lets its runs report as usual: the
    // window starts once they ended.
    if (!drain) core.status.finishBy(core.clock.now() + core.status.retryForMs)
    this.#announceAbort.abort()
    // Commands waiting for a slot are not taken: their handler fails, so they stay uncommitted
    // and go to another member of the group.
    this.#intake.rejectWaiters(new FlowkitError(ErrorCode.Closed, 'worker stopping'))
    if (!drain) for (const run of core.runs.values()) this.#runs.cancel(run, WORKER_STOPPING_REASON)
    steps.step('closing command subscriptions')
    await Promise.all(this.#intake.subs.map((s) => s.close()))
    this.#intake.subs = []
    // A start that was past its checks when the stop began may have launched meanwhile.
    if (!drain) for (const run of core.runs.values()) this.#runs.cancel(run, WORKER_STOPPING_REASON)
    // Wait for every run to end (or to be abandoned after its cancel grace).
    const runs = [...core.runs.values()]
    steps.step(`runs ending: ${runs.map((r) => messageKey(r.info.taskId, r.info.nodeId)).join(', ') || 'none'}`)
    await Promise.allSettled(runs.map((r) => r.freed))
    if (drain) core.status.finishBy(core.clock.now() + core.status.retryForMs)
    steps.step('run state flush')
    await core.state.flush() // the runs' ends are persisted before stop returns
    steps.step('closing status subscriptions')
    await Promise.all(this.#subs.map((s) => s.close()))
    this.#subs = []
    steps.step('offline announce')
    // Only after an online one (a failed start that never announced says nothing). Nothing else
    // left to report (an idle worker): the announce is only news for the registry (which also
    // ages a silent worker out), so it is tried for a few seconds, not a whole retry window.
    if (core.status.pending === 0) core.status.finishWithin(core.clock.now() + OFFLINE_ANNOUNCE_MS)
    if (this.#online) await announce(this.#core, this.#announceInfo(), 'WORKER_OFFLINE', []).catch(() => undefined)
    this.#online = false
    this.#started = false
    steps.step('observability')
    await this.#obs?.stop()
  }

  /**
   * Simulates a crash for tests: stops consuming and abandons runs without reporting anything
   * (no CANCELLED, no more heartbeats). The coordinator finds out through the lease.
   */
  async kill(): Promise<void> {
    // A start under way ends (or is undone) first: what it subscribes is then closed here.
    if (this.#starting !== null) await this.#starting.catch(() => undefined)
    const core = this.#core
    core.killed = true
    core.stopping = true
    this.#announceAbort.abort()
    core.status.close(new FlowkitError(ErrorCode.Closed, 'worker killed'))
    this.#intake.rejectWaiters(new FlowkitError(ErrorCode.Closed, 'worker killed'))
    for (const [key, run] of [...core.runs.entries()]) {
      run.cancelReason = '__killed__'
      run.abort.abort(new CancelledRunError('killed'))
      this.#runs.release(key, run) // a crashed process holds nothing: the runs are simply abandoned
    }
    await Promise.all([...this.#intake.subs, ...this.#subs].map((s) => s.close()))
    this.#intake.subs = []
    this.#subs = []
    this.#started = false
    await this.#obs?.stop()
  }
}
