/**
 * The worker: consumes `cmd.{role}.v1` with bounded concurrency, accepts a start with a lease,
 * heartbeats while it runs, pulls input (adapter or the handler's own batches), writes one partial
 * artifact per successful batch and a complete one at the end, and reports every step on
 * `status.{role}.v1` with the protocol's field names. Cancellation is cooperative.
 */
import { hostname } from 'node:os'
import { randomUUID } from 'node:crypto'
import { SystemClock } from '../clock.ts'
import { WORKER_DEFAULTS, type WorkerConfig, checkBounds, resolveConfig, topicFor } from '../config.ts'
import { ErrorCode, FlowkitError, errorMessage } from '../errors.ts'
import { createLogger, type Logger } from '../log.ts'
import type { Bus, BusMessage, Subscription } from '../ports/bus.ts'
import type { Clock } from '../ports/clock.ts'
import type { RunView, Store, WorkerRun } from '../ports/store.ts'
import {
  type CmdTaskStart,
  type Envelope,
  FINAL_UID,
  dedupId,
  encode,
  makeEnvelope,
  messageKey,
  parseCommand,
  parseEnvelope,
  parseSignal,
} from '../protocol/messages.ts'
import {
  type ArtifactsWriter,
  type Batch,
  type RoleHandler,
  type RunContext,
  type RunInfo,
  classifyErrorDefault,
} from './handler.ts'
import { type AdapterSpec, adapterBatches, checkAdapter } from './input.ts'
import { CancelledRunError } from './cancel.ts'
import { parkPoison } from '../util/guard.ts'
import { type SpawnOptions, spawnInGroup } from './subprocess.ts'

export interface WorkerOptions {
  bus: Bus
  store: Store
  handlers: Record<string, RoleHandler>
  clock?: Clock
  config?: Partial<WorkerConfig> | Record<string, unknown>
  logger?: Logger
}

interface ActiveRun {
  info: RunInfo
  abort: AbortController
  cancelReason: string | null
  started: number
  batches: number
  done: Promise<void>
  /** TASK_ACCEPTED went out: the coordinator knows a lease. */
  accepted: boolean
  /** The slot was given back (run ended, or its cancel grace expired). */
  released: boolean
  /** Resolves when the slot is given back. */
  freed: Promise<void>
  free: () => void
  seenKey: string
}

/** A counting semaphore whose waiters are served in order. */
class Slots {
  #free: number
  #waiters: { resolve: () => void; reject: (err: unknown) => void }[] = []
  constructor(n: number) {
    this.#free = n
  }
  get free(): number {
    return this.#free
  }
  async acquire(): Promise<void> {
    if (this.#free > 0) {
      this.#free--
      return
    }
    await new Promise<void>((resolve, reject) => this.#waiters.push({ resolve, reject }))
  }
  release(): void {
    const next = this.#waiters.shift()
    if (next) next.resolve()
    else this.#free++
  }
  /** Fails every waiter (the worker is stopping: their commands are not taken). */
  rejectWaiters(err: unknown): void {
    for (const w of this.#waiters.splice(0)) w.reject(err)
  }
}

function isObj(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

export class Worker {
  readonly config: WorkerConfig
  readonly workerId: string
  readonly #bus: Bus
  readonly #store: Store
  readonly #clock: Clock
  readonly #log: Logger
  readonly #handlers: Record<string, RoleHandler>
  readonly #slots: Slots
  readonly #runs = new Map<string, ActiveRun>()
  /** Starts already taken (task:node:epoch), so a duplicated command is not run twice. */
  readonly #seen = new Map<string, number>()
  #subs: Subscription[] = []
  #cmdSubs: Subscription[] = []
  #restored: WorkerRun[] = []
  /** Set by kill(): behave as a crashed process (persist nothing more, report nothing). */
  #killed = false
  #started = false
  #stopping = false
  #announceAbort = new AbortController()

  constructor(options: WorkerOptions) {
    this.config = checkBounds(
      resolveConfig(WORKER_DEFAULTS, (options.config ?? {}) as Record<string, unknown>, 'worker config'),
      'worker config',
      ['leaseTtlSec', 'hbIntervalSec', 'announceIntervalSec', 'topicPartitions'],
      ['pullPollMsDefault', 'pullEmptyBackoffMsMax', 'dbCancelPollMs', 'cancelGraceMs'],
    )
    const roles = Object.keys(options.handlers)
    if (roles.length === 0) throw new FlowkitError(ErrorCode.Config, 'worker needs at least one handler')
    if (this.config.concurrency < 1 || !Number.isInteger(this.config.concurrency)) {
      throw new FlowkitError(ErrorCode.Config, 'worker config: concurrency must be an integer >= 1')
    }
    this.workerId = this.config.workerId ?? `w-${hostname()}-${randomUUID().slice(0, 8)}`
    this.#bus = options.bus
    this.#store = options.store
    this.#clock = options.clock ?? new SystemClock()
    this.#handlers = options.handlers
    this.#slots = new Slots(this.config.concurrency)
    this.#log = (options.logger ?? createLogger()).child({ component: 'worker', worker_id: this.workerId })
  }

  get roles(): string[] {
    return Object.keys(this.#handlers)
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
    return [...this.#runs.values()].map((r) => r.info)
  }

  async start(): Promise<void> {
    if (this.#started) return
    this.#started = true
    this.#stopping = false
    this.#killed = false
    await this.#store.init()
    const c = this.config
    const partitions = c.topicPartitions
    await this.#bus.ensureTopics([
      ...this.roles.flatMap((r) => [
        { name: topicFor(c.topicCmdFmt, r), partitions },
        { name: topicFor(c.topicStatusFmt, r), partitions },
      ]),
      { name: c.topicWorkerAnnounce, partitions: 1 },
      { name: c.topicQuery, partitions },
      { name: c.topicReply, partitions },
      { name: c.topicSignals, partitions },
    ])
    const previous = await this.#store.getWorkerState(this.workerId)
    this.#restored = previous?.active_runs ?? []
    if (previous && previous.active_runs.length > 0) {
      // The process that held these runs is gone; the coordinator re-dispatches them at a new
      // epoch when their leases expire. Nothing is restarted here at the old epoch.
      this.#log.warn('worker.state_restored', { runs: previous.active_runs.map((r) => messageKey(r.task_id, r.node_id)) })
    }
    await this.#saveState()
    for (const role of this.roles) {
      const sub = await this.#bus.subscribe({
        groupId: `${c.groupPrefix}workers.${role}.v1`,
        topics: [topicFor(c.topicCmdFmt, role)],
        name: `worker-cmd-${role}`,
        handler: parkPoison((m) => this.#onCommand(role, m), this.#log),
      })
      this.#cmdSubs.push(sub)
    }
    this.#subs.push(
      await this.#bus.subscribe({
        groupId: `${c.groupPrefix}workers.signals.${this.workerId}`,
        topics: [c.topicSignals],
        fromLatest: true,
        name: 'worker-signals',
        handler: parkPoison((m) => this.#onSignal(m), this.#log),
      }),
      await this.#bus.subscribe({
        groupId: `${c.groupPrefix}workers.query.${this.workerId}`,
        topics: [c.topicQuery],
        fromLatest: true,
        name: 'worker-query',
        handler: parkPoison((m) => this.#onQuery(m), this.#log),
      }),
    )
    await this.#announce('WORKER_ONLINE', previous?.active_runs ?? [])
    this.#announceAbort = new AbortController()
    void this.#announceLoop(this.#announceAbort.signal)
    this.#log.info('worker.started', { roles: this.roles, concurrency: c.concurrency })
  }

  /**
   * Stops taking commands, cancels what runs (each run reports CANCELLED, so the coordinator
   * re-dispatches it) unless `drain` is set, in which case running nodes finish first.
   */
  async stop(options: { drain?: boolean } = {}): Promise<void> {
    if (!this.#started) return
    this.#stopping = true
    this.#announceAbort.abort()
    // Commands waiting for a slot are not taken: their handler fails, so they stay uncommitted
    // and go to another member of the group.
    this.#slots.rejectWaiters(new FlowkitError(ErrorCode.Closed, 'worker stopping'))
    if (!options.drain) for (const run of this.#runs.values()) this.#cancelRun(run, 'worker stopping')
    await Promise.all(this.#cmdSubs.map((s) => s.close()))
    this.#cmdSubs = []
    // Wait for every run to end (or to be abandoned after its cancel grace).
    await Promise.allSettled([...this.#runs.values()].map((r) => r.freed))
    await Promise.all(this.#subs.map((s) => s.close()))
    this.#subs = []
    await this.#announce('WORKER_OFFLINE', []).catch(() => undefined)
    this.#started = false
    this.#log.info('worker.stopped')
  }

  /**
   * Simulates a crash for tests: stops consuming and abandons runs without reporting anything
   * (no CANCELLED, no more heartbeats). The coordinator finds out through the lease.
   */
  async kill(): Promise<void> {
    this.#killed = true
    this.#stopping = true
    this.#announceAbort.abort()
    this.#slots.rejectWaiters(new FlowkitError(ErrorCode.Closed, 'worker killed'))
    for (const [key, run] of [...this.#runs.entries()]) {
      run.cancelReason = '__killed__'
      run.abort.abort(new CancelledRunError('killed'))
      this.#release(key, run) // a crashed process holds nothing: the runs are simply abandoned
    }
    await Promise.all([...this.#cmdSubs, ...this.#subs].map((s) => s.close()))
    this.#cmdSubs = []
    this.#subs = []
    this.#started = false
  }

  // ------------------------------------------------------------------ messages

  async #onCommand(role: string, m: BusMessage): Promise<void> {
    const parsed = parseEnvelope(m.value)
    if (!parsed.ok) {
      this.#log.warn('bus.message_malformed', { topic: m.topic, partition: m.partition, offset: m.offset, error: parsed.error })
      return
    }
    const env = parsed.value
    const cmd = parseCommand(env.payload)
    if (env.msg_type !== 'cmd' || !cmd.ok) {
      this.#log.warn('bus.message_malformed', {
        topic: m.topic,
        offset: m.offset,
        task_id: env.task_id,
        node_id: env.node_id,
        error: cmd.ok ? `unexpected msg_type ${env.msg_type}` : cmd.error,
      })
      return
    }
    if (env.step_type !== role) {
      this.#log.warn('worker.wrong_role', { task_id: env.task_id, node_id: env.node_id, step_type: env.step_type, role })
      return
    }
    switch (cmd.value.cmd) {
      case 'TASK_START':
        await this.#onStart(role, env, cmd.value)
        return
      case 'TASK_CANCEL': {
        const run = this.#runs.get(messageKey(env.task_id, env.node_id))
        if (run && run.info.attemptEpoch === env.attempt_epoch) this.#cancelRun(run, cmd.value.reason)
        else this.#log.debug('worker.cancel_unknown_run', { task_id: env.task_id, node_id: env.node_id, attempt_epoch: env.attempt_epoch })
        return
      }
      default:
        this.#log.info('worker.command_ignored', { task_id: env.task_id, node_id: env.node_id, cmd: cmd.value.cmd })
    }
  }

  async #onStart(role: string, env: Envelope, cmd: CmdTaskStart): Promise<void> {
    const ids = { task_id: env.task_id, node_id: env.node_id, attempt_epoch: env.attempt_epoch }
    const seenKey = `${env.task_id}:${env.node_id}:${env.attempt_epoch}`
    if (this.#seen.has(seenKey) || this.#runs.get(messageKey(env.task_id, env.node_id))?.info.attemptEpoch === env.attempt_epoch) {
      this.#log.debug('worker.start_duplicate', ids)
      return
    }
    if (this.#slots.free === 0) {
      // Backpressure: stop fetching until a slot frees; the command waits, it is never dropped.
      for (const s of this.#cmdSubs) s.pause()
      this.#log.debug('worker.at_capacity', ids)
    }
    await this.#slots.acquire()
    let handedOver = false
    try {
      if (this.#stopping) throw new FlowkitError(ErrorCode.Closed, 'worker stopping')
      if (this.#seen.has(seenKey)) {
        this.#log.debug('worker.start_duplicate', ids)
        return
      }
      const { verdict: wanted, vars } = await this.#stillWanted(env)
      if (wanted !== 'yes') {
        this.#log.info('worker.start_stale', { ...ids, why: wanted })
        if (wanted === 'cancelled') {
          // The coordinator waits for a confirmation from whoever holds the command: give it.
          const info = { taskId: env.task_id, nodeId: env.node_id, stepType: role, attemptEpoch: env.attempt_epoch, workerId: this.workerId, leaseId: '' }
          await this.#emit(info, { kind: 'CANCELLED', reason: 'cancelled before start' }, { kind: 'CANCELLED' })
        }
        return
      }
      this.#remember(seenKey)
      this.#launch(role, env, cmd, vars)
      handedOver = true
    } finally {
      if (!handedOver) this.#releaseSlot()
    }
  }

  #releaseSlot(): void {
    this.#slots.release()
    if (this.#slots.free > 0 && !this.#stopping) for (const s of this.#cmdSubs) s.resume()
  }

  #remember(key: string): void {
    this.#seen.set(key, this.#clock.now())
    if (this.#seen.size > 10_000) {
      const oldest = this.#seen.keys().next().value
      if (oldest !== undefined) this.#seen.delete(oldest)
    }
  }

  /**
   * Whether this attempt is still wanted, from the task document its coordinator wrote before
   * sending the command: a cancelled task is not run; a node in flowkit's layout must be running at
   * this epoch. A task document in another layout (a Python coordinator's) is judged by its
   * `coordinator.cancelled` flag alone, and a task the store does not know is run.
   */
  async #stillWanted(env: Envelope): Promise<{ verdict: 'yes' | 'cancelled' | 'stale'; vars: Record<string, unknown> }> {
    let view: RunView | null
    try {
      view = await this.#store.getRunView(env.task_id, env.node_id)
    } catch (err) {
      if (err instanceof FlowkitError && err.retryable) throw err // the bus retries the command
      this.#log.warn('worker.task_unreadable', { task_id: env.task_id, node_id: env.node_id, error: errorMessage(err) })
      return { verdict: 'yes', vars: {} }
    }
    if (view === null) {
      // Not in this store: run it, as the seed's worker does (the protocol does not require the
      // task document; a command may come from a coordinator that keeps its tasks elsewhere).
      // Its status events are then ignored by any coordinator that does not know the task.
      this.#log.info('worker.start_unknown_task', { task_id: env.task_id, node_id: env.node_id, attempt_epoch: env.attempt_epoch })
      return { verdict: 'yes', vars: {} }
    }
    const vars = isObj(view.vars) ? view.vars : {}
    const node = view.node
    if (view.cancelled) {
      const mine = node === null || (node.attempt_epoch === env.attempt_epoch && node.status === 'cancelling')
      return { verdict: mine ? 'cancelled' : 'stale', vars }
    }
    if (node === null) return { verdict: 'yes', vars }
    return { verdict: node.attempt_epoch === env.attempt_epoch && node.status === 'running' ? 'yes' : 'stale', vars }
  }

  async #onSignal(m: BusMessage): Promise<void> {
    const parsed = parseEnvelope(m.value)
    if (!parsed.ok) {
      this.#log.warn('bus.message_malformed', { topic: m.topic, offset: m.offset, error: parsed.error })
      return
    }
    const env = parsed.value
    if (env.target_worker_id !== this.workerId) return
    const sig = parseSignal(env.payload)
    if (!sig.ok) {
      this.#log.warn('bus.message_malformed', { topic: m.topic, offset: m.offset, error: sig.error })
      return
    }
    const run = this.#runs.get(messageKey(env.task_id, env.node_id))
    if (run && run.info.attemptEpoch === env.attempt_epoch) this.#cancelRun(run, sig.value.reason)
  }

  async #onQuery(m: BusMessage): Promise<void> {
    const parsed = parseEnvelope(m.value)
    if (!parsed.ok) {
      this.#log.warn('bus.message_malformed', { topic: m.topic, offset: m.offset, error: parsed.error })
      return
    }
    const env = parsed.value
    if (env.msg_type !== 'query' || env.payload['query'] !== 'TASK_DISCOVER') return
    if (!this.roles.includes(env.step_type)) return
    const run = this.#runs.get(messageKey(env.task_id, env.node_id))
    let payload: Record<string, unknown>
    if (run) {
      const deadline = this.#clock.now() + this.config.leaseTtlSec * 1000
      payload = {
        reply: 'TASK_SNAPSHOT',
        worker_id: this.workerId,
        run_state: run.cancelReason === null ? 'running' : 'cancelling',
        attempt_epoch: run.info.attemptEpoch,
        lease: { worker_id: this.workerId, lease_id: run.info.leaseId, deadline_ts_ms: deadline },
        progress: { batches: run.batches },
        artifacts: null,
      }
    } else {
      const complete = await this.#store.getArtifact(env.task_id, env.node_id, null)
      payload = {
        reply: 'TASK_SNAPSHOT',
        worker_id: null,
        run_state: 'idle',
        attempt_epoch: 0,
        lease: null,
        progress: {},
        artifacts: complete?.status === 'complete' ? { complete: true } : null,
      }
    }
    await this.#bus.produce([
      {
        topic: this.config.topicReply,
        key: env.task_id,
        value: encode(
          makeEnvelope({
            msg_type: 'reply',
            role: 'worker',
            corr_id: env.corr_id,
            dedup_id: dedupId({ corr: env.corr_id, worker: this.workerId }),
            task_id: env.task_id,
            node_id: env.node_id,
            step_type: env.step_type,
            attempt_epoch: run?.info.attemptEpoch ?? 0,
            ts_ms: this.#clock.now(),
            payload,
          }),
        ),
      },
    ])
  }

  // ------------------------------------------------------------------ runs

  #cancelRun(run: ActiveRun, reason: string): void {
    if (run.cancelReason !== null) return
    run.cancelReason = reason
    const ids = { task_id: run.info.taskId, node_id: run.info.nodeId, attempt_epoch: run.info.attemptEpoch }
    this.#log.info('node.cancel_requested', { ...ids, reason })
    run.abort.abort(new CancelledRunError(reason))
    if (reason === '__killed__') return
    // Cancellation is cooperative: a handler that ignores the signal past the grace period is
    // abandoned (its results are discarded), CANCELLED is reported and its slot is given back.
    const grace = new AbortController()
    void run.freed.then(() => grace.abort())
    this.#clock.sleep(this.config.cancelGraceMs, grace.signal).then(
      async () => {
        if (run.released) return
        this.#log.warn('worker.cancel_grace_expired', { ...ids, grace_ms: this.config.cancelGraceMs })
        await this.#emit(run.info, { kind: 'CANCELLED', reason }, { kind: 'CANCELLED' }).catch(() => undefined)
        this.#release(messageKey(run.info.taskId, run.info.nodeId), run)
      },
      () => undefined,
    )
  }

  #launch(role: string, env: Envelope, cmd: CmdTaskStart, vars: Record<string, unknown>): void {
    const info: RunInfo = {
      taskId: env.task_id,
      nodeId: env.node_id,
      stepType: role,
      attemptEpoch: env.attempt_epoch,
      workerId: this.workerId,
      leaseId: randomUUID(),
    }
    let free!: () => void
    const freed = new Promise<void>((r) => {
      free = r
    })
    const run: ActiveRun = {
      info,
      abort: new AbortController(),
      cancelReason: null,
      started: this.#clock.now(),
      batches: 0,
      done: Promise.resolve(),
      accepted: false,
      released: false,
      freed,
      free,
      seenKey: `${env.task_id}:${env.node_id}:${env.attempt_epoch}`,
    }
    const key = messageKey(env.task_id, env.node_id)
    this.#runs.set(key, run)
    run.done = this.#execute(role, run, cmd, vars)
      .catch(async (err: unknown) => {
        const ids = { task_id: info.taskId, node_id: info.nodeId, attempt_epoch: info.attemptEpoch }
        this.#log.error('worker.run_crashed', { ...ids, accepted: run.accepted, error: errorMessage(err) })
        if (this.#killed) return
        if (!run.accepted) {
          // The coordinator never learnt of this run: let its resent start run it again.
          this.#seen.delete(run.seenKey)
          return
        }
        await this.#emit(info, { kind: 'TASK_FAILED', reason_code: 'worker_error', permanent: false, error: errorMessage(err) }, { kind: 'TASK_FAILED' }).catch(
          () => undefined,
        )
      })
      .finally(async () => {
        this.#release(key, run)
        if (!this.#killed) await this.#saveState().catch(() => undefined)
      })
  }

  /** Gives the run's slot back, once. */
  #release(key: string, run: ActiveRun): void {
    if (this.#runs.get(key) === run) this.#runs.delete(key)
    if (run.released) return
    run.released = true
    this.#releaseSlot()
    run.free()
  }

  async #emit(info: RunInfo, payload: Record<string, unknown>, dedupParts: Record<string, unknown>): Promise<void> {
    const env = makeEnvelope({
      msg_type: 'event',
      role: 'worker',
      task_id: info.taskId,
      node_id: info.nodeId,
      step_type: info.stepType,
      attempt_epoch: info.attemptEpoch,
      ts_ms: this.#clock.now(),
      dedup_id: dedupId({ task: info.taskId, node: info.nodeId, epoch: info.attemptEpoch, ...dedupParts }),
      payload: { worker_id: this.workerId, ...payload },
    })
    await this.#bus.produce([
      { topic: topicFor(this.config.topicStatusFmt, info.stepType), key: messageKey(info.taskId, info.nodeId), value: encode(env) },
    ])
  }

  async #execute(role: string, run: ActiveRun, cmd: CmdTaskStart, vars: Record<string, unknown>): Promise<void> {
    const { info } = run
    const ids = { task_id: info.taskId, node_id: info.nodeId, attempt_epoch: info.attemptEpoch }
    const handler = this.#handlers[role] as RoleHandler
    const leaseMs = this.config.leaseTtlSec * 1000
    await this.#emit(
      info,
      { kind: 'TASK_ACCEPTED', lease_id: info.leaseId, lease_deadline_ts_ms: this.#clock.now() + leaseMs },
      { kind: 'TASK_ACCEPTED' },
    )
    run.accepted = true
    this.#log.info('node.accepted', ids)
    await this.#saveState()

    const hbAbort = new AbortController()
    const heartbeats = this.#heartbeatLoop(run, hbAbort.signal)
    const cleanups: (() => void | Promise<void>)[] = []
    const written = new Set<string>()
    let completeWritten = false
    const writer: ArtifactsWriter = {
      writePartial: async (batchUid, meta) => {
        await this.#store.upsertArtifact(
          { task_id: info.taskId, node_id: info.nodeId, batch_uid: batchUid, status: 'partial', meta, attempt_epoch: info.attemptEpoch, worker_id: this.workerId },
          this.#clock.now(),
        )
        written.add(batchUid)
      },
      markComplete: async (meta = {}) => {
        await this.#store.upsertArtifact(
          { task_id: info.taskId, node_id: info.nodeId, batch_uid: null, status: 'complete', meta, attempt_epoch: info.attemptEpoch, worker_id: this.workerId },
          this.#clock.now(),
        )
        completeWritten = true
      },
    }
    const signal = run.abort.signal
    const ctx: RunContext = {
      ...info,
      signal,
      artifacts: writer,
      inputRef: cmd.input_ref,
      inputInline: cmd.input_inline,
      batching: cmd.batching,
      vars: Object.freeze(structuredClone(vars)),
      throwIfCancelled: () => {
        if (signal.aborted) throw signal.reason instanceof Error ? signal.reason : new CancelledRunError(String(signal.reason))
      },
      sleep: (ms) => this.#clock.sleep(ms, signal),
      spawn: (command: string, args: readonly string[] = [], options: SpawnOptions = {}) =>
        spawnInGroup(command, args, signal, { graceMs: this.config.cancelGraceMs, ...options }),
      onCleanup: (fn) => {
        cleanups.push(fn)
      },
    }

    let currentBatch: string | null = null
    const usedUids = new Set<string>()
    try {
      await handler.init?.(info)
      ctx.throwIfCancelled()
      const batches = await this.#resolveInput(handler, cmd, info, signal)
      let index = 0
      for await (const batch of batches) {
        ctx.throwIfCancelled()
        let uid = typeof batch.batch_uid === 'string' && batch.batch_uid.length > 0 ? batch.batch_uid : `b${index}`
        index++
        if (usedUids.has(uid)) {
          // Batch ids identify partial artifacts and metrics: two batches of one run never share one.
          let n = 2
          while (usedUids.has(`${uid}#${n}`)) n++
          this.#log.warn('worker.batch_uid_duplicate', { ...ids, batch_uid: uid, renamed: `${uid}#${n}` })
          uid = `${uid}#${n}`
        }
        usedUids.add(uid)
        currentBatch = uid
        const res = (await handler.processBatch({ ...batch, batch_uid: uid }, ctx)) ?? {}
        ctx.throwIfCancelled()
        if (res.success === false) {
          const err = Object.assign(new Error(res.error ?? `batch ${uid} failed`), {
            reasonCode: res.reason_code ?? 'batch_failed',
            permanent: res.permanent === true,
          })
          throw err
        }
        if (!written.has(uid)) await writer.writePartial(uid, res.meta ?? { metrics: res.metrics ?? {} })
        await this.#emit(
          info,
          { kind: 'BATCH_OK', batch_uid: uid, metrics: res.metrics ?? {}, artifacts_ref: res.artifacts_ref ?? null },
          { kind: 'BATCH_OK', batch_uid: uid },
        )
        run.batches++
        currentBatch = null
        this.#log.debug('node.batch_ok', { ...ids, batch_uid: uid })
      }
      ctx.throwIfCancelled()
      const fin = (await handler.finalize?.(ctx)) ?? {}
      ctx.throwIfCancelled()
      if (!completeWritten) await writer.markComplete(fin.meta ?? { batches: run.batches })
      await this.#emit(
        info,
        { kind: 'TASK_DONE', metrics: fin.metrics ?? {}, artifacts_ref: fin.artifacts_ref ?? null, final_uid: FINAL_UID, batches: run.batches },
        { kind: 'TASK_DONE' },
      )
      this.#log.info('node.done', { ...ids, batches: run.batches })
    } catch (err) {
      if (run.cancelReason === '__killed__') return
      if (signal.aborted) {
        await this.#emit(info, { kind: 'CANCELLED', reason: run.cancelReason ?? 'cancelled' }, { kind: 'CANCELLED' })
        this.#log.info('node.cancelled', { ...ids, reason: run.cancelReason })
        return
      }
      const classified = this.#classify(handler, err)
      const error = errorMessage(err)
      if (currentBatch !== null) {
        await this.#emit(
          info,
          { kind: 'BATCH_FAILED', batch_uid: currentBatch, reason_code: classified.reasonCode, permanent: classified.permanent, error, artifacts_ref: null },
          { kind: 'BATCH_FAILED', batch_uid: currentBatch },
        )
      }
      await this.#emit(
        info,
        { kind: 'TASK_FAILED', reason_code: classified.reasonCode, permanent: classified.permanent, error },
        { kind: 'TASK_FAILED' },
      )
      this.#log.warn('node.failed', { ...ids, reason_code: classified.reasonCode, permanent: classified.permanent, error })
    } finally {
      hbAbort.abort()
      await heartbeats
      for (const fn of cleanups.reverse()) {
        try {
          await fn()
        } catch (err) {
          this.#log.warn('worker.cleanup_failed', { ...ids, error: errorMessage(err) })
        }
      }
    }
  }

  #classify(handler: RoleHandler, err: unknown): { reasonCode: string; permanent: boolean } {
    const adapterErr = err as { adapterReason?: string }
    if (adapterErr?.adapterReason) return { reasonCode: adapterErr.adapterReason, permanent: true }
    if (handler.classifyError) {
      try {
        const c: unknown = handler.classifyError(err)
        const r = c as { reasonCode?: unknown; permanent?: unknown } | null
        if (r !== null && typeof r === 'object' && typeof r.reasonCode === 'string' && typeof r.permanent === 'boolean') {
          return { reasonCode: r.reasonCode, permanent: r.permanent }
        }
        this.#log.warn('worker.classify_invalid', { error: 'classifyError must return { reasonCode: string, permanent: boolean }' })
      } catch (e) {
        this.#log.warn('worker.classify_failed', { error: errorMessage(e) })
      }
    }
    return classifyErrorDefault(err)
  }

  /**
   * Chooses where batches come from: the adapter named by the coordinator wins; else a known
   * adapter suggested by loadInput; else the handler's own iterBatches; else one batch.
   */
  async #resolveInput(handler: RoleHandler, cmd: CmdTaskStart, info: RunInfo, signal: AbortSignal): Promise<AsyncIterable<Batch> | Iterable<Batch>> {
    const inline = cmd.input_inline ?? {}
    const opts = { strict: this.config.strictInputAdapters, defaultPollMs: this.config.pullPollMsDefault }
    const ids = { task_id: info.taskId, node_id: info.nodeId, attempt_epoch: info.attemptEpoch }
    let spec: AdapterSpec | null = null
    if (inline['input_adapter'] !== undefined && inline['input_adapter'] !== null) {
      const check = checkAdapter(inline['input_adapter'], inline['input_args'], opts)
      if (!check.ok) throw Object.assign(new Error(check.error), { adapterReason: check.reasonCode })
      spec = check.spec
    }
    const loaded = handler.loadInput ? await handler.loadInput(cmd.input_ref, cmd.input_inline) : { input_ref: cmd.input_ref ?? {}, input_inline: inline }
    const suggestion = suggestedAdapter(loaded)
    if (spec !== null) {
      // The command wins. A suggestion that reads other input (another adapter, other args, or an
      // invalid one) is ignored and said so; one that reads the same input is simply agreed with.
      if (suggestion) {
        const other = checkAdapter(suggestion.name, suggestion.args, opts)
        if (!other.ok || !sameAdapterSpec(other.spec, spec)) {
          this.#log.info('worker.adapter_suggestion_ignored', { ...ids, suggested: String(suggestion.name), chosen: spec.name })
        }
      }
    } else if (suggestion) {
      const check = checkAdapter(suggestion.name, suggestion.args, opts)
      if (check.ok) spec = check.spec
      else this.#log.warn('worker.adapter_suggestion_ignored', { ...ids, suggested: String(suggestion.name), error: check.error })
    }
    if (spec !== null) {
      this.#log.debug('worker.input_adapter', { ...ids, adapter: spec.name, from_nodes: spec.fromNodes })
      return adapterBatches(
        {
          store: this.#store,
          clock: this.#clock,
          taskId: info.taskId,
          consumerNode: info.nodeId,
          epoch: info.attemptEpoch,
          signal,
          maxBackoffMs: this.config.pullEmptyBackoffMsMax,
        },
        spec,
      )
    }
    if (handler.iterBatches) return handler.iterBatches(loaded)
    return [{ batch_uid: null, payload: isObj(loaded) ? loaded : { value: loaded } }]
  }

  async #heartbeatLoop(run: ActiveRun, signal: AbortSignal): Promise<void> {
    const every = this.config.hbIntervalSec * 1000
    let n = 0
    while (!signal.aborted) {
      try {
        await this.#clock.sleep(every, signal)
      } catch {
        return
      }
      if (this.#killed || run.released) return // abandoned: the lease must be allowed to lapse
      n++
      await this.#emit(
        run.info,
        { kind: 'TASK_HEARTBEAT', lease_id: run.info.leaseId, lease_deadline_ts_ms: this.#clock.now() + this.config.leaseTtlSec * 1000 },
        { kind: 'TASK_HEARTBEAT', n },
      ).catch((err: unknown) => this.#log.warn('worker.heartbeat_failed', { task_id: run.info.taskId, node_id: run.info.nodeId, error: errorMessage(err) }))
    }
  }

  async #saveState(): Promise<void> {
    const active_runs: WorkerRun[] = [...this.#runs.values()].map((r) => ({
      task_id: r.info.taskId,
      node_id: r.info.nodeId,
      step_type: r.info.stepType,
      attempt_epoch: r.info.attemptEpoch,
      lease_id: r.info.leaseId,
      started_at_ms: r.started,
    }))
    await this.#store.saveWorkerState({ worker_id: this.workerId, active_runs, updated_at_ms: this.#clock.now() })
  }

  async #announce(kind: 'WORKER_ONLINE' | 'WORKER_OFFLINE', resume: WorkerRun[]): Promise<void> {
    const payload: Record<string, unknown> =
      kind === 'WORKER_ONLINE'
        ? {
            kind,
            worker_id: this.workerId,
            type: this.roles.join(','),
            capabilities: { roles: this.roles },
            version: this.config.workerVersion,
            capacity: { tasks: this.config.concurrency },
            ...(resume.length > 0 ? { resume } : {}),
          }
        : { kind, worker_id: this.workerId }
    await this.#bus.produce([
      {
        topic: this.config.topicWorkerAnnounce,
        key: null,
        value: encode(
          makeEnvelope({
            msg_type: 'event',
            role: 'worker',
            task_id: '*',
            node_id: '*',
            step_type: '*',
            attempt_epoch: 0,
            ts_ms: this.#clock.now(),
            dedup_id: dedupId({ worker: this.workerId, kind, ts: this.#clock.now() }),
            payload,
          }),
        ),
      },
    ])
  }

  async #announceLoop(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        await this.#clock.sleep(this.config.announceIntervalSec * 1000, signal)
        await this.#announce('WORKER_ONLINE', [])
      } catch {
        return
      }
    }
  }
}

/** Whether two validated adapter specs read the same input the same way. */
function sameAdapterSpec(a: AdapterSpec, b: AdapterSpec): boolean {
  return (
    a.name === b.name &&
    a.pollMs === b.pollMs &&
    a.size === b.size &&
    a.metaListKey === b.metaListKey &&
    a.fromNodes.length === b.fromNodes.length &&
    a.fromNodes.every((n, i) => n === b.fromNodes[i])
  )
}

function suggestedAdapter(loaded: unknown): { name: unknown; args: unknown } | null {
  if (!isObj(loaded)) return null
  if (loaded['input_adapter'] !== undefined) return { name: loaded['input_adapter'], args: loaded['input_args'] }
  const inline = loaded['input_inline']
  if (isObj(inline) && inline['input_adapter'] !== undefined) return { name: inline['input_adapter'], args: inline['input_args'] }
  return null
}
