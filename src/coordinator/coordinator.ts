/**
 * The coordinator: schedules nodes and keeps the durable state.
 *
 * It owns the state of its active tasks in memory (one writer per task): status events and timers
 * change task runtimes through one transition table (transitions.ts, engine.ts), and a group
 * commit writes everything that changed as one journal entry per task (flush.ts) before any
 * command, coordinator function, waiter or bus offset depends on it. Task documents in the store
 * are snapshots rewritten in the background (snapshots.ts); recovery is snapshot + journal.
 *
 * This file is the facade: lifecycle (start, stop, kill) and the public verbs. Its options, its
 * config and how its parts are built and wired to each other are wiring.ts.
 */
import { ErrorCode, FlowkitError } from '../errors.ts'
import type { CoordinatorConfig } from '../config.ts'
import { COORDINATOR_FN_TYPE } from '../graph/types.ts'
import { CoordinatorObservability } from '../observability/coordinator.ts'
import type { MetricsHandler } from '../observability/options.ts'
import type { ArtifactDoc, OutboxRow, WorkerInfo } from '../ports/store.ts'
import { countingAttempt, handOver } from '../ports/store-rules.ts'
import { parkPoison } from '../util/guard.ts'
import { StopSteps } from '../util/stop-steps.ts'
import { type ControlTarget, applyControl } from './control.ts'
import { cancelOptionsArg, taskIdArg } from './args.ts'
import { adoptOwned, cancelOwned, ownerRequests } from './requests.ts'
import { requeueDeadLetter } from './dead-letters.ts'
import { onAnnounce } from './discovery.ts'
import type { OutboxDispatcher } from './outbox.ts'
import { type TaskOutput, readOutput } from './output.ts'
import { loadRuntime } from './recovery.ts'
import { markWaiting, requireServed, seedRoles } from './roles.ts'
import { TERMINAL_TASK } from './runtime.ts'
import { type BuildTaskOptions, type CreateTaskInput, buildTask } from './submit.ts'
import { stopSteps } from './stop.ts'
import { sweep } from './sweep.ts'
import { type TaskView, failingTask, toTaskView } from './view.ts'
import { GraphCache } from './graph-cache.ts'
import { planOf } from './graph-plan.ts'
import { type TaskEvent, watchRemote } from './watch.ts'
import { waitForTask, waitersOf } from './waiting.ts'
import { type CoordinatorOptions, type CoordinatorWiring, wireCoordinator } from './wiring.ts'

export type { CoordinatorOptions } from './wiring.ts'
export type { CreateTaskInput } from './submit.ts'

export class Coordinator {
  readonly config: CoordinatorConfig
  /** The parts (wiring.ts). */
  readonly #p: CoordinatorWiring
  #started = false
  #starting: Promise<void> | null = null
  /** Graphs parsed by createTask (a DAG submitted again is not parsed again). */
  readonly #graphs = new GraphCache()
  /** Tasks between their insert and their runtime (createTask): not to be adopted by the sweep. */
  readonly #creating = new Set<string>()
  #fnNamesSet: ReadonlySet<string> | null = null
  /** Set by kill(): nothing more may leave this process. */
  #killed = false
  #sweepAbort = new AbortController()
  #sweepLoop: Promise<void> | null = null
  /** Requests from other processes (owners' topic, control topic): applied by the owner only (requests.ts). */
  readonly #requests: ControlTarget = ownerRequests(
    () => this.#p,
    () => this.#started,
    () => this.#buildOptions(),
  )

  constructor(options: CoordinatorOptions) {
    this.#p = wireCoordinator(options, {
      started: () => this.#started,
      stopSignal: () => this.#sweepAbort.signal,
      stats: () => this.stats(),
      requests: this.#requests,
    })
    this.config = this.#p.config
  }

  /** Names of the coordinator functions this coordinator can run. */
  get functionNames(): string[] {
    return Object.keys(this.#p.functions)
  }

  /** The same names as a set (fixed at construction), for createTask. */
  get #fnNames(): ReadonlySet<string> {
    this.#fnNamesSet ??= new Set(Object.keys(this.#p.functions))
    return this.#fnNamesSet
  }

  /** A node:http request handler serving this coordinator's Prometheus metrics (any path). */
  metricsHandler(): MetricsHandler {
    return this.#p.obs?.handler() ?? CoordinatorObservability.disabledHandler()
  }

  /** Traces and metrics of this coordinator (its prom-client `registry`, the server `address`); null when disabled. */
  get observability(): CoordinatorObservability | null {
    return this.#p.obs
  }

  /** Whether this coordinator owns the task now (the partition of its id; docs/scaling.md). */
  ownsTask(taskId: string): boolean {
    return this.#p.ownership.owns(taskId)
  }

  /** The partitions of the owners' topic this coordinator owns now, and how many there are. */
  get ownership(): { partitions: number[]; of: number; generation: number } {
    return { partitions: this.#p.ownership.owned, of: this.#p.ownership.partitionCount, generation: this.#p.ownership.generation }
  }

  get outbox(): OutboxDispatcher {
    return this.#p.outbox
  }

  /** Counters of the write path (flushes, journal entries, snapshots, sends), for benchmarks. */
  stats(): Record<string, number> {
    return {
      active_tasks: this.#p.engine.tasks.size,
      flushes: this.#p.flusher.flushes,
      journal_entries: this.#p.flusher.entries,
      snapshot_writes: this.#p.snapshots.writes,
      snapshot_backlog: this.#p.snapshots.backlog,
      produce_calls: this.#p.outbox.sends,
      commands_sent: this.#p.outbox.sentRecords,
      events_applied: this.#p.intake.applied,
      timers: this.#p.timers.liveSize,
      timer_entries: this.#p.timers.size,
      owned_partitions: this.#p.ownership.owned.length,
      forwarded: this.#p.ownership.forwarded,
      claims: this.#p.tasks.claims,
      fenced: this.#p.tasks.fencedCount,
    }
  }

  /** Loads and resumes its partitions' tasks. Concurrent calls share one start; a failed start is undone (call again). */
  start(): Promise<void> {
    if (this.#starting !== null) return this.#starting
    if (this.#started) return Promise.resolve()
    if (this.#killed) return Promise.reject(new FlowkitError(ErrorCode.Closed, 'a killed coordinator cannot start again: create a new one'))
    const starting = this.#start().finally(() => {
      this.#starting = null
    })
    this.#starting = starting
    return starting
  }

  async #start(): Promise<void> {
    try {
      await this.#p.store.init()
      await this.#p.obs?.start()
      await seedRoles(this.#p.store, this.#p.roles, this.#p.clock.now())
    } catch (err) {
      await this.#p.obs?.stop().catch(() => undefined)
      throw err
    }
    this.#started = true
    try {
      await this.#startSteps()
    } catch (err) {
      // Undone (what started is stopped, nothing is left running), so that start() may be called again.
      await this.#stopNow().catch(() => undefined)
      throw err
    }
  }

  async #startSteps(): Promise<void> {
    this.#p.fns.start()
    this.#p.intake.reset()
    this.#p.discovery.start()
    this.#p.outbox.start()
    this.#p.timers.start()
    const c = this.config
    await this.#p.subscriptions.startFixed({
      announce: parkPoison((m) => onAnnounce(this.#p.store, this.#p.clock, this.#p.log, m, (w, steerable, running) => this.#p.roles.seen(w, steerable, running) && this.#p.log.debug('coordinator.worker_load', { worker_id: w.worker_id, running, capacity: w.capacity }), (id) => this.#p.roles.get(id)), this.#p.log),
      replies: parkPoison((m) => this.#p.discovery.onReply(m), this.#p.log),
      // The older control topic: every coordinator reads it, the owner of the task applies it.
      control: (m) => applyControl(this.#requests, this.#p.log, m, this.#p.clock.now()),
    })
    this.#p.steering.listening(this.#p.clock.now())
    // Recovery: the tasks of the partitions this coordinator is given are loaded (once), claimed,
    // and resumed after the status topics are replayed (handover.ts).
    await Promise.all(c.workerTypes.map((t) => this.#p.subscriptions.ensureStatus(t)))
    this.#sweepAbort = new AbortController()
    await this.#p.ownership.start()
    const ready = await this.#p.ownership.ready(c.discoveryWindowSec * 1000 + 30_000)
    this.#p.hearing.start(this.#sweepAbort.signal)
    this.#p.log.info('coordinator.started', { active_tasks: this.#p.engine.tasks.size, partitions: this.#p.ownership.owned, worker_types: c.workerTypes, assigned: ready })
    this.#sweepLoop = this.#sweep(this.#sweepAbort.signal)
  }

  async stop(): Promise<void> {
    // A start under way ends first (its steps are not cut in the middle); a failed one undid itself.
    if (this.#starting !== null) await this.#starting.catch(() => undefined)
    await this.#stopNow()
  }

  async #stopNow(): Promise<void> {
    if (!this.#started) return
    this.#started = false
    const steps = new StopSteps(this.#p.log, 'coordinator.stop_slow')
    try {
      this.#sweepAbort.abort()
      await stopSteps(this.#p, steps, this.#sweepLoop, this.config.stopSnapshotsSec)
    } finally {
      steps.end()
    }
    this.#p.log.info('coordinator.stopped')
  }

  /**
   * Simulates a crash, for tests: stops consuming and scheduling at once and abandons what is in
   * memory and in flight — a write under way may or may not land, nothing after it is written or
   * sent, no bus offset is committed for events whose flush did not complete. The store and the bus
   * are left as a killed process would leave them; start another coordinator to recover.
   */
  async kill(): Promise<void> {
    const starting = this.#starting
    if (starting !== null) await starting.catch(() => undefined)
    if (!this.#started) {
      if (starting !== null) this.#killed = true // killed while its start failed: it stays killed
      return
    }
    this.#started = false
    this.#killed = true
    this.#p.after.dead = true
    const dead = new FlowkitError(ErrorCode.Closed, 'coordinator killed')
    this.#p.flusher.abandon(dead)
    this.#p.watchers.close(dead)
    this.#p.fns.stop()
    this.#sweepAbort.abort()
    this.#p.timers.stop()
    this.#p.engine.tasks.clear()
    this.#p.after.reset()
    await this.#p.ownership.stop({ wait: false })
    await this.#p.subscriptions.closeAll()
    await this.#p.outbox.stop({ discard: true })
    await this.#p.obs?.stop()
    this.#p.log.warn('coordinator.killed')
  }

  /** How this coordinator checks a submission (its functions and limits). */
  #buildOptions(): BuildTaskOptions {
    return { coordinatorFns: this.#fnNames, rejectUnknownInputAdapters: this.config.rejectUnknownInputAdapters, limits: this.config, fnArgs: this.#p.fnArgs }
  }

  // ------------------------------------------------------------------ public API

  async createTask(input: CreateTaskInput): Promise<string> {
    if (!this.#started) throw new FlowkitError(ErrorCode.Config, this.#starting !== null ? 'createTask: the coordinator is still starting (await start() first)' : 'createTask: the coordinator is not started (call start() first)')
    const now = this.#p.clock.now()
    const task = buildTask(input, { ...this.#buildOptions(), cache: this.#graphs }, now)
    task.created_by = this.#p.writer // counted here (not again by the coordinator that takes it up)
    const { id, graph } = task
    const types = planOf(graph).workerTypes
    if (this.config.requireKnownTypes) requireServed(this.#p.roles, types, now)
    const subs = this.#p.subscriptions
    if (!types.every((t) => subs.hasStatus(t))) await Promise.all(types.map((t) => subs.ensureStatus(t)))
    // From its insert until its runtime exists, the task is queued in the store and held nowhere:
    // the sweep, which adopts such tasks (another process's), must leave this one alone.
    this.#creating.add(id)
    try {
      await this.#p.inserter.insert(handOver(task))
      this.#p.obs?.taskCreated(id, graph.nodes.length)
      this.#p.log.info('task.created', { task_id: id, nodes: graph.nodes.length })
      if (!this.#p.ownership.owns(id)) {
        // Another coordinator owns it: it is handed over through the owners' topic.
        await this.#p.tasks.request('adopt', id, '', task)
        return id
      }
      if (this.#p.engine.tasks.has(id)) return id // adopted meanwhile (a request from another process): that runtime serves it
      const rt = await loadRuntime(this.#p.store, this.#p.engine, this.#p.limits, { ...task, v: 0 })
      this.#p.after.created(rt)
      this.#p.engine.startTask(rt)
      return id
    } finally {
      this.#creating.delete(id)
    }
  }

  async getTask(id: string): Promise<TaskView | null> {
    taskIdArg('getTask', id)
    const rt = this.#p.engine.tasks.get(id)
    if (rt !== undefined) return this.#view(toTaskView(rt.toDoc('none')))
    const t = await this.#p.store.getTask(id)
    return t === null ? null : this.#view(toTaskView(t))
  }

  /**
   * Resolves with the task once it reaches a terminal status (durably); rejects with a TIMEOUT
   * error after `timeoutMs` of real time (a safety deadline, independent of the injected clock),
   * and with CLOSED when this coordinator stops while it waits.
   */
  async waitForTask(id: string, options: { timeoutMs?: number } = {}): Promise<TaskView> {
    taskIdArg('waitForTask', id)
    const deps = { runtime: (t: string) => this.#p.engine.tasks.get(t), stored: (t: string) => this.#p.store.getTask(t), onTerminal: (t: string, fn: () => void) => this.#p.after.onTerminal(t, fn), view: (v: TaskView) => this.#view(v), closed: waitersOf(this.#sweepAbort.signal) }
    return waitForTask(deps, id, options.timeoutMs ?? 60_000)
  }

  /** The public view: nodes no live worker can take are marked `waiting_for_worker`. */
  #view(v: TaskView): TaskView {
    return markWaiting(v, this.#p.roles, (t) => t === COORDINATOR_FN_TYPE, this.#p.clock.now())
  }

  /**
   * Follows a task as it runs: first a `snapshot` event (the task now), then one event per node
   * state change and per task status change, once durable; ends after the terminal task event
   * (or when `signal` aborts). Throws TASK_NOT_FOUND for an unknown task, and CLOSED when this
   * coordinator stops before the task ends (after the events it already had).
   */
  watch(taskId: string, options: { signal?: AbortSignal } = {}): AsyncGenerator<TaskEvent> {
    taskIdArg('watch', taskId)
    const snapshot = async (): Promise<TaskEvent> => {
      const task = await this.getTask(taskId)
      if (task === null) throw new FlowkitError(ErrorCode.TaskNotFound, `task ${taskId} not found`)
      return { type: 'snapshot', task_id: taskId, at_ms: this.#p.clock.now(), task }
    }
    if (this.#p.engine.tasks.has(taskId) || this.#p.ownership.owns(taskId)) return this.#p.watchers.watch(taskId, snapshot, options.signal)
    return watchRemote(this.#p.watchers, this.#p.store, taskId, snapshot, options.signal)
  }

  /**
   * Loads a task another process wrote to the store (e.g. `flowkit submit`), now instead of at
   * the next sweep. False when it is unknown, not active, or already held here.
   */
  async adoptTask(id: string): Promise<boolean> {
    return adoptOwned(this.#p, id)
  }

  /**
   * Cancels a task (cascade to its running nodes): true once the task is cancelling or cancelled;
   * false when it had ended, or was already stopping because a node failed or its deadline passed
   * (it ends failed). On a coordinator that does not own the task the request is handed to its
   * owner: true when it was sent, false when the stored task had ended or is failing. Throws when
   * this coordinator is not started.
   */
  async cancelTask(id: string, options?: { reason?: string }): Promise<boolean> {
    taskIdArg('cancelTask', id)
    const reason = cancelOptionsArg(options).reason ?? 'cancelled by user'
    // Not started (or stopped): it would answer false, which reads as "the task had ended".
    if (!this.#started) throw new FlowkitError(ErrorCode.Config, this.#starting !== null ? 'cancelTask: the coordinator is still starting (await start() first)' : 'cancelTask: the coordinator is not started (call start() first)')
    if (!this.#p.ownership.owns(id)) {
      const t = await this.#p.store.getTask(id)
      if (t === null) throw new FlowkitError(ErrorCode.TaskNotFound, `task ${id} not found`)
      if (TERMINAL_TASK.has(t.status) || failingTask(t)) return false
      await this.#p.tasks.request('cancel', id, reason)
      return true
    }
    const applied = await cancelOwned(this.#p, id, reason, () => this.#started)
    return applied === 'moved' ? this.cancelTask(id, { reason }) : applied
  }

  /** Workers that announced themselves, with their roles, capacity and last announce. */
  async listWorkers(): Promise<WorkerInfo[]> {
    return this.#p.store.listWorkers()
  }

  /** Outbox messages parked after their last send attempt failed (dead letters). */
  async listDeadLetters(limit = 100): Promise<OutboxRow[]> {
    return this.#p.store.outboxList({ status: 'failed', limit })
  }

  /** How many dead letters there are (counted by the store, none read). */
  countDeadLetters(): Promise<number> {
    return this.#p.store.outboxCount('failed')
  }

  /** Sends a dead letter again (false: it is not one); throws DEAD_LETTER_STALE for a TASK_START whose attempt ended (dead-letters.ts). */
  async retryDeadLetter(id: string): Promise<boolean> {
    const ok = await requeueDeadLetter(this.#p.store, id, this.#p.clock.now())
    if (ok) {
      this.#p.log.info('outbox.requeued', { outbox_id: id })
      this.#p.outbox.pollSoon()
    }
    return ok
  }

  /** The task's output: its finished sink nodes, each with its final artifact (see output.ts). */
  async getOutput(taskId: string): Promise<TaskOutput[]> {
    const t = await this.getTask(taskId)
    if (t === null) throw new FlowkitError(ErrorCode.TaskNotFound, `task ${taskId} not found`)
    return readOutput(this.#p.store, t)
  }

  /** A task's artifacts: per node, those of the attempt that counts (`allAttempts` for every one). */
  async listArtifacts(taskId: string, options: { nodeId?: string; allAttempts?: boolean } = {}): Promise<ArtifactDoc[]> {
    taskIdArg('listArtifacts', taskId)
    const all = await this.#p.store.listArtifacts(taskId, options.nodeId === undefined ? {} : { nodeId: options.nodeId })
    return options.allAttempts === true ? all : countingAttempt(all)
  }

  // ------------------------------------------------------------------ sweep

  #sweep(signal: AbortSignal): Promise<void> {
    return sweep(signal, {
      config: this.config,
      store: this.#p.store,
      clock: this.#p.clock,
      log: this.#p.log,
      known: (id) => this.#p.engine.tasks.has(id) || this.#creating.has(id) || this.#p.after.isRecentlyDone(id) || !this.#p.ownership.owns(id),
      adopt: (id) => this.#p.tasks.adopt(id),
      flushes: () => this.#p.flusher.flushes,
    })
  }
}
