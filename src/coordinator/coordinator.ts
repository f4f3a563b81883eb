/**
 * The coordinator: schedules nodes and keeps the durable state.
 *
 * It owns the state of its active tasks in memory (one writer per task): status events and timers
 * change task runtimes through one transition table (transitions.ts, engine.ts), and a group
 * commit writes everything that changed as one journal entry per task (flush.ts) before any
 * command, coordinator function, waiter or bus offset depends on it. Task documents in the store
 * are snapshots rewritten in the background (snapshots.ts); recovery is snapshot + journal.
 */
import { randomUUID } from 'node:crypto'
import { SystemClock } from '../clock.ts'
import { COORDINATOR_DEFAULTS, type CoordinatorConfig, checkBounds, resolveConfig } from '../config.ts'
import { ErrorCode, FlowkitError } from '../errors.ts'
import { resolveSubmitLimits } from '../graph/limits.ts'
import { COORDINATOR_FN_TYPE } from '../graph/types.ts'
import { createLogger, type Logger } from '../log.ts'
import { CoordinatorObservability } from '../observability/coordinator.ts'
import type { MetricsHandler, ObservabilityOptions } from '../observability/options.ts'
import type { Bus } from '../ports/bus.ts'
import type { Clock } from '../ports/clock.ts'
import type { ArtifactDoc, OutboxRow, Store, WorkerInfo } from '../ports/store.ts'
import { countingAttempt } from '../ports/store-rules.ts'
import { parkPoison } from '../util/guard.ts'
import { AfterFlush } from './after-flush.ts'
import { Discovery, onAnnounce } from './discovery.ts'
import { Engine } from './engine.ts'
import { leaseJudge } from './expiry.ts'
import { Flusher } from './flush.ts'
import { FnRunner } from './fn-runner.ts'
import { BUILTIN_FUNCTIONS, type CoordinatorFn } from './functions.ts'
import { Intake } from './intake.ts'
import { Limits } from './limits.ts'
import { OutboxDispatcher } from './outbox.ts'
import { type RecoveryDeps, loadRuntime } from './recovery.ts'
import { OwnedTasks, inlineTask } from './handover.ts'
import { Ownership } from './ownership.ts'
import { TERMINAL_TASK } from './runtime.ts'
import { SnapshotWriter } from './snapshots.ts'
import { TimerHeap } from './timers.ts'
import { type CreateTaskInput, TaskInserter, buildTask } from './submit.ts'
import { Subscriptions } from './subscriptions.ts'
import { applyControl, applyRequest } from './control.ts'
import { type TaskEvent, Watchers, watchRemote } from './watch.ts'
import { waitForTask } from './waiting.ts'
import { type TaskOutput, readOutput } from './output.ts'
import { LiveRoles, markWaiting, requireServed, warnIfUnserved } from './roles.ts'
import { sweep } from './sweep.ts'
import { type TaskView, toTaskView } from './view.ts'

export interface CoordinatorOptions {
  bus: Bus
  store: Store
  clock?: Clock
  config?: Partial<CoordinatorConfig> | Record<string, unknown>
  logger?: Logger
  /** Extra coordinator functions by name (added to the built-in ones). */
  functions?: Record<string, CoordinatorFn>
  /** Traces and Prometheus metrics (default: both on; see docs/observability.md); false: none. */
  observability?: ObservabilityOptions | false
}

export type { CreateTaskInput } from './submit.ts'

export class Coordinator {
  readonly config: CoordinatorConfig
  readonly #bus: Bus
  readonly #store: Store
  readonly #clock: Clock
  readonly #log: Logger
  readonly #functions: Record<string, CoordinatorFn>
  readonly #outbox: OutboxDispatcher
  readonly #limits: Limits
  readonly #timers: TimerHeap
  readonly #engine: Engine
  readonly #flusher: Flusher
  readonly #snapshots: SnapshotWriter
  readonly #fns: FnRunner
  readonly #intake: Intake
  /** This process's identity in the journal (tells its own retried writes from another writer's). */
  readonly #writer = `c-${randomUUID()}`
  readonly #subscriptions: Subscriptions
  readonly #discovery: Discovery
  readonly #inserter: TaskInserter
  readonly #after: AfterFlush
  readonly #watchers = new Watchers()
  readonly #roles: LiveRoles
  readonly #obs: CoordinatorObservability | null
  readonly #ownership: Ownership
  readonly #tasks: OwnedTasks
  #started = false
  /** Set by kill(): nothing more may leave this process. */
  #killed = false
  #sweepAbort = new AbortController()
  #sweepLoop: Promise<void> | null = null

  constructor(options: CoordinatorOptions) {
    this.config = checkBounds(
      resolveConfig(COORDINATOR_DEFAULTS, (options.config ?? {}) as Record<string, unknown>, 'coordinator config'),
      'coordinator config',
      ['heartbeatSoftSec', 'heartbeatHardSec', 'leaseTtlSec', 'schedulerTickSec', 'outboxDispatchTickSec', 'outboxMaxRetry', 'acceptTimeoutSec', 'defaultRetryMax', 'topicPartitions', 'retentionSec'],
      ['discoveryWindowSec', 'cancelGraceSec', 'outboxBackoffMinMs', 'outboxBackoffMaxMs', 'defaultBackoffSec', 'maxRunningNodes', 'snapshotIntervalSec'],
    )
    resolveSubmitLimits(this.config) // bad limits fail here, not at the first createTask
    this.#roles = new LiveRoles(this.config.workerLivenessSec * 1000)
    this.#bus = options.bus
    this.#clock = options.clock ?? new SystemClock()
    this.#obs = CoordinatorObservability.create(options, this.#clock)
    this.#store = this.#obs?.wrapStore(options.store) ?? options.store
    const log = (options.logger ?? createLogger()).child({ component: 'coordinator' })
    this.#log = this.#obs?.wrapLogger(log) ?? log
    this.#functions = { ...BUILTIN_FUNCTIONS, ...(options.functions ?? {}) }
    this.#outbox = new OutboxDispatcher(this.#store, this.#bus, this.#clock, this.#log, {
      maxAttempts: this.config.outboxMaxRetry,
      backoffMinMs: this.config.outboxBackoffMinMs,
      backoffMaxMs: this.config.outboxBackoffMaxMs,
      tickMs: this.config.outboxDispatchTickSec * 1000,
      ...(this.#obs === null ? {} : { headers: this.#obs.commandHeaders }),
    })
    this.#limits = new Limits(this.config.maxRunningNodes, this.config.maxRunningByType)
    this.#timers = new TimerHeap(this.#clock, (due) => this.#engine.onTimers(due))
    this.#engine = new Engine(this.config, this.#clock, this.#log, this.#limits, this.#timers, {
      dirty: (rt) => this.#flusher.mark(rt),
      terminal: () => undefined,
      started: (rt, ord, epoch) => warnIfUnserved({ roles: this.#roles, clock: this.#clock, log: this.#log, engine: this.#engine, stop: this.#sweepAbort.signal }, rt, ord, epoch),
      judge: leaseJudge({ config: this.config, store: this.#store, log: this.#log, statusSubscription: (type) => this.#subscriptions.get(type) }),
    })
    this.#flusher = new Flusher(this.#store, this.#clock, this.#log, this.#writer, {
      durable: (rt, commands, fnRuns, snapshot) => this.#after.durable(rt, commands, fnRuns, snapshot),
      fenced: (rt) => this.#tasks.fenced(rt),
      mayWrite: () => this.#ownership.waitConfirmed(),
      owns: (rt) => this.#ownership.writable(rt.id),
      rows: (rows) => this.#snapshots.offerRows(rows),
      wantsSnapshot: (rt) => this.#after.wantsSnapshot(rt),
      observed: (entry) => {
        this.#watchers.observe(entry)
        this.#obs?.journal(entry)
      },
    })
    this.#snapshots = new SnapshotWriter(this.#store, this.#clock, this.#log, (id, v) => this.#after.snapshotWritten(id, v), { working: () => this.#flusher.working })
    this.#fns = new FnRunner(this.#engine, this.#store, this.#clock, this.#log, this.#functions)
    this.#after = new AfterFlush({
      engine: this.#engine,
      outbox: this.#outbox,
      fns: this.#fns,
      clock: this.#clock,
      log: this.#log,
      snapshotIntervalMs: this.config.snapshotIntervalSec * 1000,
      snapshots: () => this.#snapshots,
      flusher: () => this.#flusher,
    })
    this.#intake = new Intake(this.#engine, this.#clock, this.#log, {
      adopt: (id) => this.#tasks.adopt(id),
      barrier: () => this.#flusher.barrier(),
      isRecentlyDone: (id) => this.#after.isRecentlyDone(id),
      owns: (id) => this.#ownership.owns(id),
      forward: (records) => this.#ownership.forward(records.map((r) => Ownership.statusRecord(r.taskId, r.message))),
    })
    this.#inserter = new TaskInserter(this.#store)
    this.#subscriptions = new Subscriptions(this.#bus, this.config, (msgs) => (this.#obs === null ? this.#intake.statusBatch(msgs) : this.#obs.statusBatch(msgs, () => this.#intake.statusBatch(msgs))))
    this.#obs?.attach({ tasks: () => this.#engine.tasks.values(), stats: () => this.stats(), outboxBacklog: () => this.#outbox.backlog })
    this.#ownership = new Ownership({
      bus: this.#bus,
      topic: this.config.topicTasks,
      partitions: this.config.taskPartitions,
      groupId: `${this.config.groupId}.owners`,
      ...this.#subscriptions.instance('owners'),
      confirmMs: this.config.ownershipConfirmSec * 1000,
      log: this.#log,
      hooks: {
        acquire: async (parts) => {
          await this.#tasks.acquire(parts)
        },
        release: async (parts) => {
          await this.#tasks.release(parts)
        },
        status: (msgs) => this.#intake.statusBatch(msgs),
        control: (req) => applyRequest(this.#requests, this.#log, req, this.#clock.now()),
      },
    })
    this.#tasks = new OwnedTasks({
      store: this.#store,
      engine: this.#engine,
      limits: this.#limits,
      log: this.#log,
      clock: this.#clock,
      writer: this.#writer,
      ownership: this.#ownership,
      after: this.#after,
      mark: (rt) => this.#flusher.mark(rt),
      barrier: () => this.#flusher.barrier(),
      ensureStatus: (types) => Promise.all([...types].map((t) => this.#subscriptions.ensureStatus(t))).then(() => undefined),
      subscriptions: () => this.#subscriptions.all(),
      recovery: () => this.#recoveryDeps(),
      started: () => this.#started,
      stopSignal: () => this.#sweepAbort.signal,
    })
    this.#discovery = new Discovery(this.config, this.#bus, this.#clock, this.#log, this.#engine, () => this.#flusher.barrier())
  }

  /** Names of the coordinator functions this coordinator can run. */
  get functionNames(): string[] {
    return Object.keys(this.#functions)
  }

  /** A node:http request handler serving this coordinator's Prometheus metrics (any path). */
  metricsHandler(): MetricsHandler {
    return this.#obs?.handler() ?? CoordinatorObservability.disabledHandler()
  }

  /** Traces and metrics of this coordinator (its prom-client `registry`, the server `address`); null when disabled. */
  get observability(): CoordinatorObservability | null {
    return this.#obs
  }

  /** Whether this coordinator owns the task now (the partition of its id; docs/scaling.md). */
  ownsTask(taskId: string): boolean {
    return this.#ownership.owns(taskId)
  }

  /** The partitions of the owners' topic this coordinator owns now, and how many there are. */
  get ownership(): { partitions: number[]; of: number; generation: number } {
    return { partitions: this.#ownership.owned, of: this.#ownership.partitionCount, generation: this.#ownership.generation }
  }

  get outbox(): OutboxDispatcher {
    return this.#outbox
  }

  /** Counters of the write path (flushes, journal entries, snapshots, sends), for benchmarks. */
  stats(): Record<string, number> {
    return {
      active_tasks: this.#engine.tasks.size,
      flushes: this.#flusher.flushes,
      journal_entries: this.#flusher.entries,
      snapshot_writes: this.#snapshots.writes,
      snapshot_backlog: this.#snapshots.backlog,
      produce_calls: this.#outbox.sends,
      commands_sent: this.#outbox.sentRecords,
      events_applied: this.#intake.applied,
      timers: this.#timers.size,
      owned_partitions: this.#ownership.owned.length,
      forwarded: this.#ownership.forwarded,
      claims: this.#tasks.claims,
      fenced: this.#tasks.fencedCount,
    }
  }

  async start(): Promise<void> {
    if (this.#started) return
    if (this.#killed) throw new FlowkitError(ErrorCode.Closed, 'a killed coordinator cannot start again: create a new one')
    await this.#store.init()
    await this.#obs?.start()
    for (const w of await this.#store.listWorkers()) this.#roles.seen(w)
    this.#started = true
    this.#fns.start()
    this.#intake.reset()
    this.#discovery.start()
    this.#outbox.start()
    this.#timers.start()
    const c = this.config
    await this.#subscriptions.startFixed({
      announce: parkPoison((m) => onAnnounce(this.#store, this.#clock, this.#log, m, (w) => this.#roles.seen(w)), this.#log),
      replies: parkPoison((m) => this.#discovery.onReply(m), this.#log),
      // The older control topic: every coordinator reads it, the owner of the task applies it.
      control: (m) => applyControl(this.#requests, this.#log, m, this.#clock.now()),
    })
    // Recovery: the tasks of the partitions this coordinator is given are loaded (once), claimed,
    // and resumed after the status topics are replayed (handover.ts).
    await Promise.all(c.workerTypes.map((t) => this.#subscriptions.ensureStatus(t)))
    this.#sweepAbort = new AbortController()
    await this.#ownership.start()
    const ready = await this.#ownership.ready(c.discoveryWindowSec * 1000 + 30_000)
    this.#log.info('coordinator.started', { active_tasks: this.#engine.tasks.size, partitions: this.#ownership.owned, worker_types: c.workerTypes, assigned: ready })
    this.#sweepLoop = this.#sweep(this.#sweepAbort.signal)
  }

  async stop(): Promise<void> {
    if (!this.#started) return
    this.#started = false
    this.#sweepAbort.abort()
    this.#ownership.pause()
    await this.#subscriptions.closeAll()
    this.#discovery.stop()
    this.#fns.stop()
    await Promise.allSettled([...this.#engine.tasks.values()].map((rt) => rt.fnChain))
    await this.#flusher.drain()
    await this.#outbox.stop()
    // Record what was sent, so a clean restart sends nothing twice.
    for (const rt of this.#engine.tasks.values()) if (rt.sentThrough > rt.sentRecorded) this.#flusher.mark(rt, true)
    await this.#flusher.drain()
    this.#flusher.stop()
    await this.#sweepLoop
    await this.#snapshots.drain()
    // Everything is written: the partitions go to the other coordinators.
    await this.#ownership.stop()
    this.#timers.stop()
    // Another start() rebuilds all of this from the store.
    this.#engine.tasks.clear()
    this.#after.reset()
    this.#limits.clear()
    this.#flusher.restart()
    await this.#obs?.stop()
    this.#log.info('coordinator.stopped')
  }

  /**
   * Simulates a crash, for tests: stops consuming and scheduling at once and abandons what is in
   * memory and in flight — a write under way may or may not land, nothing after it is written or
   * sent, no bus offset is committed for events whose flush did not complete. The store and the bus
   * are left as a killed process would leave them; start another coordinator to recover.
   */
  async kill(): Promise<void> {
    if (!this.#started) return
    this.#started = false
    this.#killed = true
    this.#after.dead = true
    const dead = new FlowkitError(ErrorCode.Closed, 'coordinator killed')
    this.#flusher.abandon(dead)
    this.#fns.stop()
    this.#sweepAbort.abort()
    this.#timers.stop()
    this.#engine.tasks.clear()
    this.#after.reset()
    await this.#ownership.stop({ wait: false })
    await this.#subscriptions.closeAll()
    await this.#outbox.stop({ discard: true })
    await this.#obs?.stop()
    this.#log.warn('coordinator.killed')
  }

  // ------------------------------------------------------------------ public API

  async createTask(input: CreateTaskInput): Promise<string> {
    if (!this.#started) throw new FlowkitError(ErrorCode.Config, 'createTask: the coordinator is not started (call start() first)')
    const now = this.#clock.now()
    const task = buildTask(input, { coordinatorFns: new Set(Object.keys(this.#functions)), rejectUnknownInputAdapters: this.config.rejectUnknownInputAdapters, limits: this.config }, now)
    const { id, graph } = task
    const types = new Set(graph.nodes.filter((n) => n.type !== COORDINATOR_FN_TYPE).map((n) => n.type))
    if (this.config.requireKnownTypes) requireServed(this.#roles, types, now)
    await Promise.all([...types].map((t) => this.#subscriptions.ensureStatus(t)))
    await this.#inserter.insert(task)
    this.#obs?.taskCreated(id, graph.nodes.length)
    this.#log.info('task.created', { task_id: id, nodes: graph.nodes.length })
    if (!this.#ownership.owns(id)) {
      // Another coordinator owns it: it is handed over through the owners' topic.
      await this.#tasks.request('adopt', id, '', task)
      return id
    }
    const rt = await loadRuntime(this.#store, this.#engine, this.#limits, { ...task, v: 0 })
    this.#after.created(rt)
    this.#engine.startTask(rt)
    return id
  }

  async getTask(id: string): Promise<TaskView | null> {
    const rt = this.#engine.tasks.get(id)
    if (rt !== undefined) return this.#view(toTaskView(rt.toDoc()))
    const t = await this.#store.getTask(id)
    return t === null ? null : this.#view(toTaskView(t))
  }

  /**
   * Resolves with the task once it reaches a terminal status (durably); rejects with a TIMEOUT
   * error after `timeoutMs` of real time (a safety deadline, independent of the injected clock).
   */
  async waitForTask(id: string, options: { timeoutMs?: number } = {}): Promise<TaskView> {
    const deps = { runtime: (t: string) => this.#engine.tasks.get(t), stored: (t: string) => this.#store.getTask(t), onTerminal: (t: string, fn: () => void) => this.#after.onTerminal(t, fn), view: (v: TaskView) => this.#view(v) }
    return waitForTask(deps, id, options.timeoutMs ?? 60_000)
  }

  /** The public view: nodes no live worker can take are marked `waiting_for_worker`. */
  #view(v: TaskView): TaskView {
    return markWaiting(v, this.#roles, (t) => t === COORDINATOR_FN_TYPE, this.#clock.now())
  }

  /**
   * Follows a task as it runs: first a `snapshot` event (the task now), then one event per node
   * state change and per task status change, once durable; ends after the terminal task event
   * (or when `signal` aborts). Throws TASK_NOT_FOUND for an unknown task.
   */
  watch(taskId: string, options: { signal?: AbortSignal } = {}): AsyncGenerator<TaskEvent> {
    const snapshot = async (): Promise<TaskEvent> => {
      const task = await this.getTask(taskId)
      if (task === null) throw new FlowkitError(ErrorCode.TaskNotFound, `task ${taskId} not found`)
      return { type: 'snapshot', task_id: taskId, at_ms: this.#clock.now(), task }
    }
    if (this.#engine.tasks.has(taskId) || this.#ownership.owns(taskId)) return this.#watchers.watch(taskId, snapshot, options.signal)
    return watchRemote(this.#watchers, this.#store, taskId, snapshot, options.signal)
  }

  /**
   * Loads a task another process wrote to the store (e.g. `flowkit submit`), now instead of at
   * the next sweep. False when it is unknown, not active, or already held here.
   */
  async adoptTask(id: string): Promise<boolean> {
    if (this.#engine.tasks.has(id) || !this.#ownership.owns(id)) return false
    return (await this.#tasks.adopt(id)) !== null
  }

  /**
   * Cancels a task (cascade to its running nodes). On a coordinator that does not own the task the
   * request is handed to its owner: true when it was sent for an active task.
   */
  async cancelTask(id: string, options: { reason?: string } = {}): Promise<boolean> {
    if (this.#started && !this.#ownership.owns(id)) {
      const t = await this.#store.getTask(id)
      if (t === null) throw new FlowkitError(ErrorCode.TaskNotFound, `task ${id} not found`)
      if (TERMINAL_TASK.has(t.status)) return false
      await this.#tasks.request('cancel', id, options.reason ?? 'cancelled by user')
      return true
    }
    const rt = this.#engine.tasks.get(id) ?? (await this.#tasks.adopt(id))
    if (rt === null) {
      const t = await this.#store.getTask(id)
      if (t === null) throw new FlowkitError(ErrorCode.TaskNotFound, `task ${id} not found`)
      return false
    }
    if (rt.terminal) return false
    this.#engine.cancel(rt, options.reason ?? 'cancelled by user', 'cancelled')
    await this.#flusher.barrier()
    return true
  }

  /** Workers that announced themselves, with their roles, capacity and last announce. */
  async listWorkers(): Promise<WorkerInfo[]> {
    return this.#store.listWorkers()
  }

  /** Outbox messages parked after their last send attempt failed (dead letters). */
  async listDeadLetters(limit = 100): Promise<OutboxRow[]> {
    return this.#store.outboxList({ status: 'failed', limit })
  }

  /** Operator action: sends a dead-lettered message again. False when it is not dead-lettered. */
  async retryDeadLetter(id: string): Promise<boolean> {
    const ok = await this.#store.outboxRequeue(id, this.#clock.now())
    if (ok) {
      this.#log.info('outbox.requeued', { outbox_id: id })
      this.#outbox.pollSoon()
    }
    return ok
  }

  /** The task's output: its finished sink nodes, each with its final artifact (see output.ts). */
  async getOutput(taskId: string): Promise<TaskOutput[]> {
    const t = await this.getTask(taskId)
    if (t === null) throw new FlowkitError(ErrorCode.TaskNotFound, `task ${taskId} not found`)
    return readOutput(this.#store, t)
  }

  /** A task's artifacts: per node, those of the attempt that counts (`allAttempts` for every one). */
  async listArtifacts(taskId: string, options: { nodeId?: string; allAttempts?: boolean } = {}): Promise<ArtifactDoc[]> {
    const all = await this.#store.listArtifacts(taskId, options.nodeId === undefined ? {} : { nodeId: options.nodeId })
    return options.allAttempts === true ? all : countingAttempt(all)
  }

  // ------------------------------------------------------------------ recovery and adoption

  #recoveryDeps(): RecoveryDeps {
    return { config: this.config, store: this.#store, clock: this.#clock, log: this.#log, engine: this.#engine, fns: this.#fns, discovery: this.#discovery, barrier: () => this.#flusher.barrier() }
  }

  /** Requests from other processes (owners' topic, and the older control topic every coordinator reads): applied by the owner only. */
  readonly #requests = {
    cancelTask: (id: string, o: { reason?: string }): Promise<boolean> => (this.#ownership.owns(id) ? this.cancelTask(id, o) : Promise.resolve(false)),
    adoptTask: (id: string, task?: unknown): Promise<boolean> => {
      const doc = task === undefined ? undefined : inlineTask(task, id)
      return doc === undefined ? this.adoptTask(id) : this.#tasks.adopt(id, doc).then((rt) => rt !== null)
    },
  }

  // ------------------------------------------------------------------ sweep

  #sweep(signal: AbortSignal): Promise<void> {
    return sweep(signal, {
      config: this.config,
      store: this.#store,
      clock: this.#clock,
      log: this.#log,
      known: (id) => this.#engine.tasks.has(id) || this.#after.isRecentlyDone(id) || !this.#ownership.owns(id),
      adopt: (id) => this.#tasks.adopt(id),
    })
  }
}
