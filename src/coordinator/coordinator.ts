/**
 * The coordinator: schedules nodes and keeps the durable state.
 *
 * - Event-driven: a status event re-evaluates only the nodes it can affect (the node itself and
 *   its children). Timers (deferred retries, lease deadlines, cancel grace) are armed per task on
 *   the injected clock, and a slow sweep re-arms them after a restart.
 * - One writer per task: everything that changes a task runs on that task's in-process queue.
 * - Commands go through the transactional outbox; events are deduplicated and epoch-fenced.
 */
import { EventEmitter } from 'node:events'
import { randomUUID } from 'node:crypto'
import { SystemClock } from '../clock.ts'
import { COORDINATOR_DEFAULTS, type CoordinatorConfig, checkBounds, resolveConfig, topicFor } from '../config.ts'
import { ErrorCode, FlowkitError, GraphValidationError, errorMessage } from '../errors.ts'
import { buildDependencyIndex, type DependencyIndex } from '../graph/deps.ts'
import { parseGraph } from '../graph/parse.ts'
import { evaluateReadiness } from '../graph/readiness.ts'
import { COORDINATOR_FN_TYPE, type NodeSpec, type RetryPolicy } from '../graph/types.ts'
import { createLogger, type Logger } from '../log.ts'
import type { Bus, BusMessage, Subscription } from '../ports/bus.ts'
import type { Clock } from '../ports/clock.ts'
import {
  type ArtifactDoc,
  type NodePatch,
  type NodeState,
  type NodeGuard,
  type NodeStatus,
  type OutboxRow,
  type Store,
  type WorkerInfo,
  TERMINAL_NODE_STATUSES,
  TERMINAL_TASK_STATUSES,
  type TaskDoc,
} from '../ports/store.ts'
import {
  type Envelope,
  FINAL_UID,
  type StatusEvent,
  dedupId,
  encode,
  makeEnvelope,
  messageKey,
  parseEnvelope,
  parseReply,
  parseStatusEvent,
  type ReplySnapshot,
} from '../protocol/messages.ts'
import { INPUT_ADAPTERS } from '../worker/input.ts'
import { BUILTIN_FUNCTIONS, type CoordinatorFn } from './functions.ts'
import { OutboxDispatcher } from './outbox.ts'
import { parkPoison } from '../util/guard.ts'
import { type TaskView, toTaskView } from './view.ts'

export interface CoordinatorOptions {
  bus: Bus
  store: Store
  clock?: Clock
  config?: Partial<CoordinatorConfig> | Record<string, unknown>
  logger?: Logger
  /** Extra coordinator functions by name (added to the built-in ones). */
  functions?: Record<string, CoordinatorFn>
}

export interface CreateTaskInput {
  params?: Record<string, unknown>
  graph: unknown
  /** Optional caller-chosen id (must be unique); a UUID otherwise. */
  id?: string
}

const TERMINAL_NODE = new Set<NodeStatus>(TERMINAL_NODE_STATUSES)
const ACTIVE_TASK_STATUSES = ['queued', 'running', 'cancelling'] as const
const TASK_ID_PATTERN = /^[A-Za-z0-9_.:-]{1,200}$/

function sumDelta(stats: Record<string, unknown>, next: Record<string, unknown>, prev: Record<string, unknown> | null): Record<string, unknown> {
  const out = { ...stats }
  const keys = new Set([...Object.keys(next), ...Object.keys(prev ?? {})])
  for (const k of keys) {
    const n = next[k]
    const p = prev?.[k]
    if (typeof n === 'number' || typeof p === 'number') {
      const cur = typeof out[k] === 'number' ? (out[k] as number) : 0
      out[k] = cur + (typeof n === 'number' ? n : 0) - (typeof p === 'number' ? p : 0)
    } else if (n !== undefined && !(k in out)) {
      out[k] = n
    }
  }
  return out
}

export class Coordinator {
  readonly config: CoordinatorConfig
  readonly #bus: Bus
  readonly #store: Store
  readonly #clock: Clock
  readonly #log: Logger
  readonly #functions: Record<string, CoordinatorFn>
  readonly #outbox: OutboxDispatcher
  readonly #events = new EventEmitter()
  readonly #queues = new Map<string, Promise<void>>()
  readonly #indexes = new Map<string, DependencyIndex>()
  readonly #subscriptions = new Map<string, Subscription>()
  readonly #subscribing = new Map<string, Promise<void>>()
  readonly #timers = new Map<string, { at: number; abort: AbortController }>()
  /** Running (or cancelling) worker nodes per task, by node id → type: the concurrency-limit ledger. */
  readonly #running = new Map<string, Map<string, string>>()
  /** Tasks with a ready node held back by a concurrency limit, in arrival order. */
  readonly #blocked = new Set<string>()
  /** Discovery queries awaiting replies: corr_id → the node asked about. */
  readonly #discovering = new Map<string, { taskId: string; nodeId: string; epoch: number }>()
  #startedAt = 0
  /** Bumped by every node write of this coordinator (lets a timer pass know its snapshot is stale). */
  #writeSeq = 0
  #lastPurge = 0
  #started = false
  #sweepAbort = new AbortController()
  #sweepLoop: Promise<void> | null = null

  constructor(options: CoordinatorOptions) {
    this.config = checkBounds(
      resolveConfig(COORDINATOR_DEFAULTS, (options.config ?? {}) as Record<string, unknown>, 'coordinator config'),
      'coordinator config',
      ['heartbeatSoftSec', 'heartbeatHardSec', 'leaseTtlSec', 'schedulerTickSec', 'outboxDispatchTickSec', 'outboxMaxRetry', 'acceptTimeoutSec', 'defaultRetryMax', 'topicPartitions', 'retentionSec'],
      ['discoveryWindowSec', 'cancelGraceSec', 'outboxBackoffMinMs', 'outboxBackoffMaxMs', 'defaultBackoffSec', 'maxRunningNodes'],
    )
    this.#bus = options.bus
    this.#store = options.store
    this.#clock = options.clock ?? new SystemClock()
    this.#log = (options.logger ?? createLogger()).child({ component: 'coordinator' })
    this.#functions = { ...BUILTIN_FUNCTIONS, ...(options.functions ?? {}) }
    this.#outbox = new OutboxDispatcher(this.#store, this.#bus, this.#clock, this.#log, {
      maxAttempts: this.config.outboxMaxRetry,
      backoffMinMs: this.config.outboxBackoffMinMs,
      backoffMaxMs: this.config.outboxBackoffMaxMs,
      tickMs: this.config.outboxDispatchTickSec * 1000,
    })
    this.#events.setMaxListeners(0)
  }

  /** Names of the coordinator functions this coordinator can run. */
  get functionNames(): string[] {
    return Object.keys(this.#functions)
  }

  get outbox(): OutboxDispatcher {
    return this.#outbox
  }

  async start(): Promise<void> {
    if (this.#started) return
    await this.#store.init()
    this.#started = true
    this.#startedAt = this.#clock.now()
    this.#outbox.start()
    await this.#bus.ensureTopics([
      { name: this.config.topicQuery, partitions: this.config.topicPartitions },
      { name: this.config.topicReply, partitions: this.config.topicPartitions },
    ])
    await this.#bus.ensureTopics([{ name: this.config.topicWorkerAnnounce, partitions: 1 }])
    this.#subscriptions.set(
      '__announce__',
      await this.#bus.subscribe({
        groupId: `${this.config.groupId}.announce`,
        topics: [this.config.topicWorkerAnnounce],
        name: 'coordinator-announce',
        handler: parkPoison((m) => this.#onAnnounce(m), this.#log),
      }),
    )
    this.#subscriptions.set(
      '__replies__',
      await this.#bus.subscribe({
        groupId: `${this.config.groupId}.replies`,
        topics: [this.config.topicReply],
        fromLatest: true,
        name: 'coordinator-replies',
        handler: parkPoison((m) => this.#onReply(m), this.#log),
      }),
    )
    const types = new Set(this.config.workerTypes)
    const active = await this.#store.listTasks({ statuses: ACTIVE_TASK_STATUSES })
    for (const t of active) for (const n of t.graph.nodes) if (n.type !== COORDINATOR_FN_TYPE) types.add(n.type)
    await Promise.all([...types].map((t) => this.#ensureStatusSubscription(t)))
    this.#log.info('coordinator.started', { active_tasks: active.length, worker_types: [...types] })
    for (const t of active) this.#track(t)
    for (const t of active) this.#enqueue(t.id, () => this.#recover(t.id))
    this.#sweepAbort = new AbortController()
    this.#sweepLoop = this.#sweep(this.#sweepAbort.signal)
  }

  async stop(): Promise<void> {
    if (!this.#started) return
    this.#started = false
    this.#sweepAbort.abort()
    for (const t of this.#timers.values()) t.abort.abort()
    this.#timers.clear()
    await Promise.all([...this.#subscriptions.values()].map((s) => s.close()))
    this.#subscriptions.clear()
    this.#discovering.clear()
    await Promise.allSettled([...this.#queues.values()])
    await this.#sweepLoop
    await this.#outbox.stop()
    // Another start() rebuilds these from the store.
    this.#running.clear()
    this.#blocked.clear()
    this.#indexes.clear()
    this.#log.info('coordinator.stopped')
  }

  // ------------------------------------------------------------------ public API

  async createTask(input: CreateTaskInput): Promise<string> {
    let raw = input.graph
    if (typeof raw === 'string') {
      // The graph format is JSON: accept it as text too.
      try {
        raw = JSON.parse(raw)
      } catch (err) {
        throw new GraphValidationError(ErrorCode.GraphInvalid, `graph: not valid JSON (${errorMessage(err)})`, 'graph')
      }
    }
    const graph = parseGraph(raw, {
      coordinatorFns: new Set(Object.keys(this.#functions)),
      ...(this.config.rejectUnknownInputAdapters ? { inputAdapters: INPUT_ADAPTERS } : {}),
    })
    if (input.params !== undefined && (input.params === null || typeof input.params !== 'object' || Array.isArray(input.params))) {
      throw new FlowkitError(ErrorCode.GraphInvalid, 'params must be an object')
    }
    if (input.id !== undefined && !TASK_ID_PATTERN.test(input.id)) {
      throw new FlowkitError(ErrorCode.GraphInvalid, `task id ${JSON.stringify(input.id)} must match ${TASK_ID_PATTERN}`)
    }
    const id = input.id ?? randomUUID()
    const now = this.#clock.now()
    const task: TaskDoc = {
      id,
      status: 'queued',
      params: input.params ?? {},
      graph,
      nodes: Object.fromEntries(graph.nodes.map((n) => [n.node_id, newNodeState(n)])),
      coordinator: { vars: {}, cancelled: false, cancel_reason: null },
      result: null,
      error: null,
      created_at_ms: now,
      updated_at_ms: now,
      finished_at_ms: null,
    }
    await Promise.all(
      [...new Set(graph.nodes.filter((n) => n.type !== COORDINATOR_FN_TYPE).map((n) => n.type))].map((t) =>
        this.#ensureStatusSubscription(t),
      ),
    )
    await this.#store.createTask(task)
    this.#log.info('task.created', { task_id: id, nodes: graph.nodes.length })
    if (this.#started) this.#enqueue(id, () => this.#kick(id))
    return id
  }

  async getTask(id: string): Promise<TaskView | null> {
    const t = await this.#store.getTask(id)
    return t === null ? null : toTaskView(t)
  }

  /**
   * Resolves with the task once it reaches a terminal status; rejects with a TIMEOUT error after
   * `timeoutMs` of real time (a safety deadline, independent of the injected clock).
   */
  async waitForTask(id: string, options: { timeoutMs?: number } = {}): Promise<TaskView> {
    const timeoutMs = options.timeoutMs ?? 60_000
    const deadline = performance.now() + timeoutMs
    for (;;) {
      const t = await this.#store.getTask(id)
      if (t === null) throw new FlowkitError(ErrorCode.TaskNotFound, `task ${id} not found`)
      if ((TERMINAL_TASK_STATUSES as readonly string[]).includes(t.status)) return toTaskView(t)
      const left = deadline - performance.now()
      if (left <= 0) {
        throw new FlowkitError(ErrorCode.Timeout, `task ${id} still ${t.status} after ${timeoutMs} ms`, {
          details: { task_id: id, status: t.status },
        })
      }
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer)
          this.#events.off(`terminal:${id}`, done)
          resolve()
        }
        // Another coordinator may own the task: poll as well as listen.
        const timer = setTimeout(done, Math.min(left, 250))
        this.#events.on(`terminal:${id}`, done)
      })
    }
  }

  async cancelTask(id: string, options: { reason?: string } = {}): Promise<boolean> {
    const task = await this.#store.getTask(id)
    if (task === null) throw new FlowkitError(ErrorCode.TaskNotFound, `task ${id} not found`)
    if ((TERMINAL_TASK_STATUSES as readonly string[]).includes(task.status)) return false
    const reason = options.reason ?? 'cancelled by user'
    await this.#run(id, () => this.#cancel(id, reason, 'cancelled'))
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
      this.#outbox.kick()
    }
    return ok
  }

  async listArtifacts(taskId: string, options: { nodeId?: string } = {}): Promise<ArtifactDoc[]> {
    return this.#store.listArtifacts(taskId, options.nodeId === undefined ? {} : { nodeId: options.nodeId })
  }

  // ------------------------------------------------------------------ per-task queue

  /** Runs `fn` on the task's queue and waits for it (errors propagate to the caller). */
  #run<T>(taskId: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#queues.get(taskId) ?? Promise.resolve()
    const job = prev.then(fn)
    const tail = job.then(
      () => undefined,
      () => undefined,
    )
    this.#queues.set(taskId, tail)
    void tail.then(() => {
      if (this.#queues.get(taskId) === tail) this.#queues.delete(taskId)
    })
    return job
  }

  /** Fire-and-forget variant: errors are logged. */
  #enqueue(taskId: string, fn: () => Promise<void>): void {
    this.#run(taskId, fn).catch((err: unknown) => {
      this.#log.error('task.job_failed', { task_id: taskId, error: errorMessage(err) })
    })
  }

  #index(task: TaskDoc): DependencyIndex {
    let idx = this.#indexes.get(task.id)
    if (idx === undefined) {
      idx = buildDependencyIndex(task.graph)
      this.#indexes.set(task.id, idx)
    }
    return idx
  }

  // ------------------------------------------------------------------ subscriptions

  async #ensureStatusSubscription(type: string): Promise<void> {
    if (this.#subscriptions.has(type)) return
    const pending = this.#subscribing.get(type)
    if (pending) return pending
    const p = (async () => {
      const statusTopic = topicFor(this.config.topicStatusFmt, type)
      const cmdTopic = topicFor(this.config.topicCmdFmt, type)
      const partitions = this.config.topicPartitions
      await this.#bus.ensureTopics([
        { name: statusTopic, partitions },
        { name: cmdTopic, partitions },
        { name: this.config.topicSignals, partitions },
      ])
      const sub = await this.#bus.subscribe({
        groupId: `${this.config.groupId}.status.${type}`,
        topics: [statusTopic],
        name: `coordinator-status-${type}`,
        handler: parkPoison((m) => this.#onStatusMessage(m), this.#log),
      })
      this.#subscriptions.set(type, sub)
    })()
    this.#subscribing.set(type, p)
    try {
      await p
    } finally {
      this.#subscribing.delete(type)
    }
  }

  async #onStatusMessage(m: BusMessage): Promise<void> {
    const parsed = parseEnvelope(m.value)
    if (!parsed.ok) {
      this.#log.warn('bus.message_malformed', { topic: m.topic, partition: m.partition, offset: m.offset, error: parsed.error })
      return
    }
    const env = parsed.value
    if (env.msg_type !== 'event' || env.role !== 'worker') {
      this.#log.warn('bus.message_unexpected', { topic: m.topic, offset: m.offset, msg_type: env.msg_type, role: env.role })
      return
    }
    const ev = parseStatusEvent(env.payload)
    if (!ev.ok) {
      this.#log.warn('bus.message_malformed', { topic: m.topic, offset: m.offset, task_id: env.task_id, node_id: env.node_id, error: ev.error })
      return
    }
    // Store errors propagate: the bus retries the record (at-least-once).
    await this.#run(env.task_id, () => this.#applyEvent(env, ev.value))
  }

  // ------------------------------------------------------------------ event application

  async #applyEvent(env: Envelope, ev: StatusEvent): Promise<void> {
    const ids = { task_id: env.task_id, node_id: env.node_id, attempt_epoch: env.attempt_epoch, kind: ev.kind }
    const ledgerKey = `${env.task_id}|${env.node_id}|${env.attempt_epoch}|${ev.kind}|${env.dedup_id}`
    if (await this.#store.hasEvent(ledgerKey)) {
      this.#log.debug('event.duplicate', ids)
      return
    }
    const task = await this.#store.getTask(env.task_id)
    if (task === null) {
      // Another deployment's task on a shared cluster, or one in another layout: not ours.
      this.#log.debug('event.unknown_task', ids)
      return
    }
    const node = task.nodes[env.node_id]
    if (node === undefined) {
      this.#log.warn('event.unknown_node', ids)
      return
    }
    if (node.attempt_epoch !== env.attempt_epoch) {
      this.#log.info('event.stale_epoch', { ...ids, node_epoch: node.attempt_epoch })
      return
    }
    const now = this.#clock.now()
    if (node.suspected === true && (node.status === 'running' || node.status === 'cancelling')) {
      const u = await this.#transition(task.id, node.node_id, { epoch: node.attempt_epoch }, { suspected: false, last_event_at_ms: now }, now)
      if (u) {
        this.#log.info('node.recovered', { task_id: task.id, node_id: node.node_id, attempt_epoch: node.attempt_epoch })
        node.suspected = false
      }
    }
    await this.#applyNodeEvent(task, node, ledgerKey, ev, now)
    // Heartbeats are idempotent by themselves (the deadline only moves forward): no ledger row.
    if (ev.kind !== 'TASK_HEARTBEAT' && ev.kind !== 'TASK_RESUMED') {
      await this.#store.recordEventOnce(ledgerKey, { task_id: env.task_id, node_id: env.node_id, kind: ev.kind }, now)
    }
  }

  async #applyNodeEvent(task: TaskDoc, node: NodeState, eventKey: string, ev: StatusEvent, now: number): Promise<void> {
    const ids = { task_id: task.id, node_id: node.node_id, attempt_epoch: node.attempt_epoch }
    const epoch = node.attempt_epoch
    switch (ev.kind) {
      case 'TASK_ACCEPTED':
      case 'TASK_HEARTBEAT':
      case 'TASK_RESUMED': {
        if (node.status !== 'running' && node.status !== 'cancelling') return
        const old = node.lease.deadline_ts_ms ?? 0
        const patch: NodePatch = {
          lease: { worker_id: ev.worker_id, lease_id: ev.lease_id, deadline_ts_ms: Math.max(old, ev.lease_deadline_ts_ms) },
          last_event_at_ms: now,
        }
        if (ev.kind === 'TASK_ACCEPTED' && node.accepted_at_ms === null) patch.accepted_at_ms = now
        await this.#transition(task.id, node.node_id, { status: ['running', 'cancelling'], epoch }, patch, now)
        if (ev.kind === 'TASK_ACCEPTED') this.#log.info('node.accepted', { ...ids, worker_id: ev.worker_id, lease_id: ev.lease_id })
        else this.#log.debug('node.heartbeat', { ...ids, worker_id: ev.worker_id })
        this.#armLeaseTimer(task.id, Math.max(old, ev.lease_deadline_ts_ms))
        return
      }
      case 'BATCH_OK': {
        // A batch report overtaken by TASK_DONE (reordered delivery) still counts.
        if (node.status !== 'running' && node.status !== 'finished') return
        let updated: TaskDoc | null = task
        if (node.last_event_key === `${eventKey}|done`) {
          // Redelivered after this batch finished the node: only what follows remains.
          await this.#afterNodeChange(task, node.node_id)
          return
        }
        if (node.last_event_key !== eventKey) {
          // Read what this batch contributed before, update the node (marked with this event),
          // then write the row: a redelivery after a failure in between neither loses the batch
          // nor counts it twice.
          const prev = await this.#store.getBatchMetrics(task.id, node.node_id, ev.batch_uid)
          updated = await this.#transition(
            task.id,
            node.node_id,
            { status: node.status, epoch },
            {
              stats: sumDelta(node.stats, ev.metrics, prev),
              has_output: true,
              last_event_at_ms: now,
              batches_seen: (node.batches_seen ?? 0) + 1,
              last_event_key: eventKey,
            },
            now,
          )
          if (updated === null) return
          this.#log.info('node.batch_ok', { ...ids, batch_uid: ev.batch_uid })
        }
        await this.#store.upsertBatchMetrics(
          { task_id: task.id, node_id: node.node_id, batch_uid: ev.batch_uid, attempt_epoch: epoch, metrics: ev.metrics },
          now,
        )
        const current = updated.nodes[node.node_id] as NodeState
        const pending = current.done_pending
        if (current.status === 'running' && pending && (current.batches_seen ?? 0) >= pending.batches) {
          await this.#finishNode(updated, current, pending.metrics, pending.final_uid, `${eventKey}|done`, now)
          return
        }
        // Children waiting for a first batch (idempotent: only queued children are looked at).
        if (current.status === 'running') await this.#evaluate(updated, this.#index(updated).children.get(node.node_id) ?? [])
        return
      }
      case 'BATCH_FAILED': {
        if (node.status !== 'running') return
        await this.#transition(
          task.id,
          node.node_id,
          { status: 'running', epoch },
          {
            last_error: { reason_code: ev.reason_code, error: ev.error, permanent: ev.permanent, at_ms: now, attempt_epoch: epoch },
            last_event_at_ms: now,
          },
          now,
        )
        this.#log.warn('node.batch_failed', { ...ids, batch_uid: ev.batch_uid, reason_code: ev.reason_code, permanent: ev.permanent })
        return
      }
      case 'TASK_DONE': {
        if (node.status === 'cancelling') {
          await this.#finishCancelling(task, node, 'finished while cancelling', now)
          return
        }
        const finalUid = ev.final_uid ?? FINAL_UID
        if (node.status === 'finished') {
          if (node.last_event_key === eventKey) {
            // Redelivered after a failure past the node update: redo what follows it.
            await this.#store.upsertBatchMetrics(
              { task_id: task.id, node_id: node.node_id, batch_uid: finalUid, attempt_epoch: epoch, metrics: ev.metrics },
              now,
            )
            await this.#afterNodeChange(task, node.node_id)
            return
          }
          // Finished without this report (recovered from its complete artifact): keep its metrics.
          const prev = await this.#store.getBatchMetrics(task.id, node.node_id, finalUid)
          await this.#transition(
            task.id,
            node.node_id,
            { status: 'finished', epoch },
            { stats: sumDelta(node.stats, ev.metrics, prev), last_event_key: eventKey },
            now,
          )
          await this.#store.upsertBatchMetrics(
            { task_id: task.id, node_id: node.node_id, batch_uid: finalUid, attempt_epoch: epoch, metrics: ev.metrics },
            now,
          )
          return
        }
        if (node.status !== 'running') return
        if (ev.batches !== undefined && (node.batches_seen ?? 0) < ev.batches) {
          // Some batch reports are still on their way: finish when the last one is applied.
          await this.#transition(
            task.id,
            node.node_id,
            { status: 'running', epoch },
            { done_pending: { batches: ev.batches, metrics: ev.metrics, final_uid: finalUid }, last_event_at_ms: now },
            now,
          )
          this.#log.info('node.done_pending', { ...ids, batches: ev.batches, seen: node.batches_seen ?? 0 })
          return
        }
        await this.#finishNode(task, node, ev.metrics, finalUid, eventKey, now)
        return
      }
      case 'TASK_FAILED': {
        if (node.status === 'cancelling') {
          await this.#finishCancelling(task, node, 'failed while cancelling', now)
          return
        }
        if (node.status === 'failed' && node.last_event_key === eventKey) {
          // Redelivered after a failure past the node update: redo what follows a failure.
          await this.#afterFailure(task, node.node_id)
          return
        }
        if (node.status === 'deferred' && node.last_event_key === eventKey) {
          this.#armTimer(task.id, node.next_retry_at_ms ?? now)
          return
        }
        if (TERMINAL_NODE.has(node.status)) return
        if (!ev.permanent && node.status !== 'running') return
        await this.#nodeFailed(task, node, ev.reason_code, ev.error, ev.permanent, now, eventKey)
        return
      }
      case 'CANCELLED': {
        if (node.status === 'cancelling') {
          await this.#finishCancelling(task, node, ev.reason || 'cancelled', now)
          return
        }
        if (node.status !== 'running') return
        // A worker gave the run up on its own (e.g. shutting down): a transient failure.
        await this.#nodeFailed(task, node, 'cancelled_by_worker', ev.reason, false, now)
        return
      }
    }
  }

  /** Marks a running node finished with its final metrics, then schedules what follows. */
  async #finishNode(task: TaskDoc, node: NodeState, metrics: Record<string, unknown>, finalUid: string, eventKey: string | null, now: number): Promise<void> {
    const epoch = node.attempt_epoch
    const prev = await this.#store.getBatchMetrics(task.id, node.node_id, finalUid)
    const updated = await this.#transition(
      task.id,
      node.node_id,
      { status: 'running', epoch },
      {
        status: 'finished',
        stats: sumDelta(node.stats, metrics, prev),
        has_output: true,
        finished_at_ms: now,
        last_event_at_ms: now,
        done_pending: null,
        ...(eventKey === null ? {} : { last_event_key: eventKey }),
      },
      now,
    )
    if (updated === null) return
    await this.#store.upsertBatchMetrics({ task_id: task.id, node_id: node.node_id, batch_uid: finalUid, attempt_epoch: epoch, metrics }, now)
    this.#log.info('node.done', { task_id: task.id, node_id: node.node_id, attempt_epoch: epoch })
    await this.#afterNodeChange(updated, node.node_id)
  }

  #retryPolicy(spec: NodeSpec): RetryPolicy {
    return spec.retry_policy ?? { max: this.config.defaultRetryMax, backoff_sec: this.config.defaultBackoffSec, permanent_on: [] }
  }

  async #nodeFailed(
    task: TaskDoc,
    node: NodeState,
    reasonCode: string,
    error: string | null,
    permanentIn: boolean,
    now: number,
    eventKey: string | null = null,
  ): Promise<void> {
    const spec = this.#spec(task, node.node_id)
    const policy = this.#retryPolicy(spec)
    const ids = { task_id: task.id, node_id: node.node_id, attempt_epoch: node.attempt_epoch }
    let permanent = permanentIn || policy.permanent_on.includes(reasonCode)
    let reason = reasonCode
    if (!permanent && node.attempt_epoch >= policy.max) {
      permanent = true
      reason = 'retries_exhausted'
      error = `${reasonCode}${error ? `: ${error}` : ''} (attempt ${node.attempt_epoch} of ${policy.max})`
    }
    const last_error = { reason_code: reason, error, permanent, at_ms: now, attempt_epoch: node.attempt_epoch }
    const guard = { status: ['queued', 'running', 'deferred'] as NodeStatus[], epoch: node.attempt_epoch }
    if ((reasonCode === 'lease_expired' || reasonCode === 'heartbeat_lost') && node.lease.worker_id) {
      // The old holder may still be alive (partitioned, hung): tell it to give the run up.
      await this.#sendCancel(task, spec, node, reasonCode, now + this.config.cancelGraceSec * 1000)
    }
    if (!permanent) {
      const at = now + Math.round(policy.backoff_sec * 1000)
      const updated = await this.#transition(
        task.id,
        node.node_id,
        guard,
        {
          status: 'deferred',
          next_retry_at_ms: at,
          last_error,
          failures: node.failures + 1,
          lease: {},
          last_event_at_ms: now,
          ...(eventKey === null ? {} : { last_event_key: eventKey }),
        },
        now,
      )
      if (updated === null) return
      this.#log.warn('node.deferred', { ...ids, reason_code: reasonCode, retry_at_ms: at })
      this.#armTimer(task.id, at)
      return
    }
    const updated = await this.#transition(
      task.id,
      node.node_id,
      guard,
      {
        status: 'failed',
        last_error,
        failures: node.failures + 1,
        finished_at_ms: now,
        next_retry_at_ms: null,
        last_event_at_ms: now,
        ...(eventKey === null ? {} : { last_event_key: eventKey }),
      },
      now,
    )
    if (updated === null) return
    this.#log.error('node.failed', { ...ids, reason_code: reason, error })
    await this.#afterFailure(updated, node.node_id)
  }

  /** What follows a permanent failure (idempotent): routing handles it, or the task fails. */
  async #afterFailure(task: TaskDoc, nodeId: string): Promise<void> {
    const spec = this.#spec(task, nodeId)
    const handled = (spec.routing?.on_failure.length ?? 0) > 0
    if (!handled) {
      const reason = task.nodes[nodeId]?.last_error?.reason_code ?? 'failed'
      await this.#cancel(task.id, `node ${nodeId} failed: ${reason}`, 'failed')
      return
    }
    await this.#afterNodeChange(task, nodeId)
  }

  async #finishCancelling(task: TaskDoc, node: NodeState, reason: string, now: number): Promise<void> {
    const updated = await this.#transition(
      task.id,
      node.node_id,
      { status: 'cancelling', epoch: node.attempt_epoch },
      { status: 'cancelled', end_reason: reason, finished_at_ms: now, cancel_deadline_ms: null },
      now,
    )
    if (updated === null) return
    this.#log.info('node.cancelled', { task_id: task.id, node_id: node.node_id, attempt_epoch: node.attempt_epoch, reason })
    await this.#maybeCompleteTask(updated)
  }

  /** Compare-and-set of one node through the store, keeping the concurrency ledger in step. */
  async #transition(taskId: string, nodeId: string, guard: NodeGuard, patch: NodePatch, now: number): Promise<TaskDoc | null> {
    const updated = await this.#store.transitionNode(taskId, nodeId, guard, patch, now)
    this.#writeSeq++
    if (updated !== null) this.#track(updated)
    return updated
  }

  #track(task: TaskDoc): void {
    const before = this.#running.get(task.id)?.size ?? 0
    const now = new Map<string, string>()
    if (!(TERMINAL_TASK_STATUSES as readonly string[]).includes(task.status)) {
      for (const n of Object.values(task.nodes)) {
        if ((n.status === 'running' || n.status === 'cancelling') && n.type !== COORDINATOR_FN_TYPE) now.set(n.node_id, n.type)
      }
    }
    if (now.size === 0) this.#running.delete(task.id)
    else this.#running.set(task.id, now)
    if (now.size < before && this.#blocked.size > 0) this.#releaseBlocked()
  }

  #limited(): boolean {
    return this.config.maxRunningNodes > 0 || Object.keys(this.config.maxRunningByType).length > 0
  }

  /**
   * Takes a slot for `nodeId` if the limits allow one more node of `type`. Synchronous, so two
   * tasks' queues can never both take the last slot; `#track` later confirms or drops it.
   */
  #tryReserve(taskId: string, nodeId: string, type: string): boolean {
    if (type === COORDINATOR_FN_TYPE || !this.#limited()) return true
    if (!this.#hasCapacity(type)) return false
    const nodes = this.#running.get(taskId) ?? new Map<string, string>()
    nodes.set(nodeId, type)
    this.#running.set(taskId, nodes)
    return true
  }

  #unreserve(taskId: string, nodeId: string): void {
    const nodes = this.#running.get(taskId)
    if (nodes?.delete(nodeId) && this.#blocked.size > 0) this.#releaseBlocked()
  }

  /** Whether one more node of `type` may start now under the configured limits. */
  #hasCapacity(type: string): boolean {
    if (type === COORDINATOR_FN_TYPE || !this.#limited()) return true
    let total = 0
    let ofType = 0
    for (const nodes of this.#running.values()) {
      total += nodes.size
      for (const t of nodes.values()) if (t === type) ofType++
    }
    if (this.config.maxRunningNodes > 0 && total >= this.config.maxRunningNodes) return false
    const cap = this.config.maxRunningByType[type]
    return cap === undefined || cap <= 0 || ofType < cap
  }

  #releaseBlocked(): void {
    const tasks = [...this.#blocked]
    this.#blocked.clear()
    for (const id of tasks) {
      this.#enqueue(id, async () => {
        await this.#kick(id)
        await this.#checkTimers(id)
      })
    }
  }

  #spec(task: TaskDoc, nodeId: string): NodeSpec {
    const spec = task.graph.nodes.find((n) => n.node_id === nodeId)
    if (spec === undefined) throw new FlowkitError(ErrorCode.StoreError, `task ${task.id} has no spec for node ${nodeId}`)
    return spec
  }

  // ------------------------------------------------------------------ scheduling

  /** First scheduling of a task (and after recovery): marks it running and evaluates every node. */
  async #kick(taskId: string): Promise<void> {
    let task = await this.#store.getTask(taskId)
    if (task === null) return
    if (task.status === 'queued') {
      task = (await this.#store.updateTask(taskId, { status: ['queued'] }, { status: 'running' }, this.#clock.now())) ?? task
    }
    if (task.status !== 'running') {
      await this.#maybeCompleteTask(task)
      return
    }
    const after = await this.#evaluate(task, task.graph.nodes.map((n) => n.node_id))
    await this.#maybeCompleteTask(after)
  }

  async #afterNodeChange(task: TaskDoc, nodeId: string): Promise<void> {
    const idx = this.#index(task)
    const after = await this.#evaluate(task, [...(idx.children.get(nodeId) ?? [])])
    await this.#maybeCompleteTask(after)
  }

  /**
   * Re-evaluates `candidates` (queued nodes only): starts the ready ones and skips the ones that
   * can never run. Skips cascade to their own children.
   */
  async #evaluate(taskIn: TaskDoc, candidates: Iterable<string>): Promise<TaskDoc> {
    let task = taskIn
    if (task.status !== 'running') return task
    const idx = this.#index(task)
    const queue = [...new Set(candidates)]
    const seen = new Set<string>()
    while (queue.length > 0) {
      const id = queue.shift() as string
      if (seen.has(id)) continue
      seen.add(id)
      const node = task.nodes[id]
      if (node === undefined || node.status !== 'queued') continue
      const spec = this.#spec(task, id)
      const r = evaluateReadiness(spec, task.nodes, idx, task.coordinator.vars)
      if (r.kind === 'wait') continue
      const now = this.#clock.now()
      if (r.kind === 'skip') {
        const updated = await this.#transition(
          task.id,
          id,
          { status: 'queued', epoch: node.attempt_epoch },
          { status: 'skipped', end_reason: r.reason, finished_at_ms: now },
          now,
        )
        if (updated) {
          task = updated
          this.#log.info('node.skipped', { task_id: task.id, node_id: id, reason: r.reason })
          for (const c of idx.children.get(id) ?? []) {
            seen.delete(c)
            queue.push(c)
          }
        }
        continue
      }
      if (!this.#tryReserve(task.id, id, spec.type)) {
        this.#blocked.add(task.id)
        this.#log.debug('node.waiting_capacity', { task_id: task.id, node_id: id, type: spec.type })
        continue
      }
      let after: TaskDoc | null = null
      try {
        after = await this.#startNode(task, spec, node, now)
      } finally {
        if (after === null) this.#unreserve(task.id, id)
      }
      if (after) {
        task = after
        if (spec.type === COORDINATOR_FN_TYPE) {
          for (const c of idx.children.get(id) ?? []) {
            seen.delete(c)
            queue.push(c)
          }
        }
      }
    }
    return task
  }

  /** Dispatches a queued or deferred node at epoch + 1. Returns the task after the change. */
  async #startNode(task: TaskDoc, spec: NodeSpec, node: NodeState, now: number): Promise<TaskDoc | null> {
    const epoch = node.attempt_epoch + 1
    const ids = { task_id: task.id, node_id: node.node_id, attempt_epoch: epoch }
    const running = await this.#transition(
      task.id,
      node.node_id,
      { status: ['queued', 'deferred'], epoch: node.attempt_epoch },
      {
        status: 'running',
        attempt_epoch: epoch,
        lease: {},
        dispatched_at_ms: now,
        accepted_at_ms: null,
        next_retry_at_ms: null,
        last_event_at_ms: now,
        resends: 0,
        batches_seen: 0,
        done_pending: null,
        suspected: false,
      },
      now,
    )
    if (running === null) return null
    if (node.status === 'deferred') this.#log.info('node.retried', { ...ids, failures: node.failures })
    if (spec.type === COORDINATOR_FN_TYPE) return this.#runFunction(running, spec, epoch)
    await this.#outbox.enqueue(this.#startCommand(task, spec, epoch, 0))
    this.#log.info('node.dispatched', { ...ids, type: spec.type })
    this.#armTimer(task.id, now + this.config.acceptTimeoutSec * 1000)
    return running
  }

  #startCommand(task: TaskDoc, spec: NodeSpec, epoch: number, resend: number): { topic: string; key: string; value: string; dedup_id: string } {
    const io = spec.io
    // One logical message per attempt: a resend carries the same dedup_id (workers dedup on it);
    // only the outbox row, which must be a new one, is told apart.
    const dedup = dedupId({ task: task.id, node: spec.node_id, epoch, cmd: 'TASK_START' })
    const env = makeEnvelope({
      msg_type: 'cmd',
      role: 'coordinator',
      task_id: task.id,
      node_id: spec.node_id,
      step_type: spec.type,
      attempt_epoch: epoch,
      ts_ms: this.#clock.now(),
      dedup_id: dedup,
      payload: {
        cmd: 'TASK_START',
        input_ref: io.input_ref ?? null,
        input_inline: io.input_inline ?? null,
        batching: io.batching ?? null,
        cancel_token: dedupId({ task: task.id, node: spec.node_id, epoch, token: 'cancel' }),
      },
    })
    return {
      topic: topicFor(this.config.topicCmdFmt, spec.type),
      key: messageKey(task.id, spec.node_id),
      value: encode(env),
      dedup_id: resend === 0 ? dedup : `${dedup}:r${resend}`,
    }
  }

  async #runFunction(task: TaskDoc, spec: NodeSpec, epoch: number): Promise<TaskDoc | null> {
    const ids = { task_id: task.id, node_id: spec.node_id, attempt_epoch: epoch }
    const name = spec.io.fn ?? ''
    const fn = this.#functions[name]
    this.#log.info('node.dispatched', { ...ids, type: COORDINATOR_FN_TYPE, fn: name })
    const now = this.#clock.now()
    const node = task.nodes[spec.node_id] as NodeState
    try {
      if (fn === undefined) throw new FlowkitError(ErrorCode.UnknownCoordinatorFn, `unknown coordinator function ${name}`)
      const res = await fn({ task, node: spec, args: spec.io.fn_args ?? {}, store: this.#store, now, log: this.#log.child(ids) })
      if (res.vars !== undefined) await this.#store.updateTask(task.id, {}, { vars: res.vars }, now)
      for (const [target, stats] of Object.entries(res.nodeStats ?? {})) {
        const t = task.nodes[target]
        if (t === undefined) continue
        await this.#transition(task.id, target, { epoch: t.attempt_epoch }, { stats: { ...t.stats, ...stats } }, now)
      }
      await this.#store.upsertArtifact(
        { task_id: task.id, node_id: spec.node_id, batch_uid: null, status: 'complete', meta: res.meta ?? {}, attempt_epoch: epoch, worker_id: null },
        now,
      )
      const done = await this.#transition(
        task.id,
        spec.node_id,
        { status: 'running', epoch },
        { status: 'finished', stats: { ...node.stats, ...(res.stats ?? {}) }, has_output: true, finished_at_ms: this.#clock.now() },
        this.#clock.now(),
      )
      this.#log.info('node.done', ids)
      return done
    } catch (err) {
      const reason = err instanceof FlowkitError ? err.code.toLowerCase() : ((err as { reasonCode?: string }).reasonCode ?? 'coordinator_fn_error')
      this.#log.error('node.fn_error', { ...ids, fn: name, error: errorMessage(err) })
      const current = (await this.#store.getTask(task.id)) ?? task
      await this.#nodeFailed(current, current.nodes[spec.node_id] as NodeState, reason, errorMessage(err), true, now)
      return this.#store.getTask(task.id)
    }
  }

  async #maybeCompleteTask(task: TaskDoc): Promise<void> {
    if ((TERMINAL_TASK_STATUSES as readonly string[]).includes(task.status)) return
    const states = Object.values(task.nodes)
    if (!states.every((n) => TERMINAL_NODE.has(n.status))) return
    const now = this.#clock.now()
    let status: 'finished' | 'failed' | 'cancelled' = 'finished'
    if (task.status === 'cancelling') status = task.error !== null ? 'failed' : 'cancelled'
    else {
      const unhandled = task.graph.nodes.some((s) => task.nodes[s.node_id]?.status === 'failed' && (s.routing?.on_failure.length ?? 0) === 0)
      if (unhandled) status = 'failed'
    }
    const result = {
      nodes: task.graph.nodes.map((s) => {
        const n = task.nodes[s.node_id] as NodeState
        return { node_id: s.node_id, status: n.status, stats: n.stats }
      }),
    }
    const done = await this.#store.updateTask(
      task.id,
      { status: ['queued', 'running', 'cancelling'] },
      { status, result, finished_at_ms: now },
      now,
    )
    if (done === null) return
    this.#indexes.delete(task.id)
    this.#track(done)
    const timer = this.#timers.get(task.id)
    timer?.abort.abort()
    this.#timers.delete(task.id)
    this.#log.info(status === 'finished' ? 'task.finished' : status === 'failed' ? 'task.failed' : 'task.cancelled', {
      task_id: task.id,
      status,
    })
    this.#events.emit(`terminal:${task.id}`)
  }

  // ------------------------------------------------------------------ cancel

  /**
   * Cancels what is left of a task: queued/deferred nodes become cancelled, running ones
   * `cancelling` (a TASK_CANCEL command and a CANCEL signal go to their worker). The task ends
   * `cancelled` (or `failed` when `outcome` is failed) once every node is terminal.
   */
  async #cancel(taskId: string, reason: string, outcome: 'cancelled' | 'failed'): Promise<void> {
    let task = await this.#store.getTask(taskId)
    if (task === null || (TERMINAL_TASK_STATUSES as readonly string[]).includes(task.status)) return
    const now = this.#clock.now()
    task =
      (await this.#store.updateTask(
        taskId,
        { status: ['queued', 'running', 'cancelling'] },
        { status: 'cancelling', cancelled: true, cancel_reason: reason, ...(outcome === 'failed' ? { error: reason } : {}) },
        now,
      )) ?? task
    this.#log.info('task.cancelling', { task_id: taskId, reason, outcome })
    const graceMs = this.config.cancelGraceSec * 1000
    for (const spec of task.graph.nodes) {
      const node = task.nodes[spec.node_id] as NodeState
      if (node.status === 'queued' || node.status === 'deferred') {
        const u = await this.#transition(
          taskId,
          spec.node_id,
          { status: ['queued', 'deferred'], epoch: node.attempt_epoch },
          { status: 'cancelled', end_reason: reason, finished_at_ms: now, next_retry_at_ms: null },
          now,
        )
        if (u) {
          task = u
          this.#log.info('node.cancelled', { task_id: taskId, node_id: spec.node_id, attempt_epoch: node.attempt_epoch, reason })
        }
      } else if (node.status === 'running') {
        const deadline = now + graceMs + this.config.leaseTtlSec * 1000
        const u = await this.#transition(
          taskId,
          spec.node_id,
          { status: 'running', epoch: node.attempt_epoch },
          { status: 'cancelling', cancel_deadline_ms: deadline },
          now,
        )
        if (u === null) continue
        task = u
        this.#log.info('node.cancelling', { task_id: taskId, node_id: spec.node_id, attempt_epoch: node.attempt_epoch, reason })
        if (spec.type !== COORDINATOR_FN_TYPE) await this.#sendCancel(task, spec, node, reason, now + graceMs)
        this.#armTimer(taskId, deadline)
      }
    }
    await this.#maybeCompleteTask(task)
  }

  async #sendCancel(task: TaskDoc, spec: NodeSpec, node: NodeState, reason: string, deadline: number): Promise<void> {
    const epoch = node.attempt_epoch
    const token = dedupId({ task: task.id, node: spec.node_id, epoch, token: 'cancel' })
    const base = { role: 'coordinator' as const, task_id: task.id, node_id: spec.node_id, step_type: spec.type, attempt_epoch: epoch, ts_ms: this.#clock.now() }
    const cmdDedup = dedupId({ task: task.id, node: spec.node_id, epoch, cmd: 'TASK_CANCEL' })
    await this.#outbox.enqueue({
      topic: topicFor(this.config.topicCmdFmt, spec.type),
      key: messageKey(task.id, spec.node_id),
      dedup_id: cmdDedup,
      value: encode(makeEnvelope({ ...base, msg_type: 'cmd', dedup_id: cmdDedup, payload: { cmd: 'TASK_CANCEL', reason, cancel_token: token } })),
    })
    const worker = node.lease.worker_id
    if (worker) {
      const sigDedup = dedupId({ task: task.id, node: spec.node_id, epoch, sig: 'CANCEL' })
      await this.#outbox.enqueue({
        topic: this.config.topicSignals,
        key: worker,
        dedup_id: sigDedup,
        value: encode(
          makeEnvelope({
            ...base,
            msg_type: 'event',
            dedup_id: sigDedup,
            target_worker_id: worker,
            payload: { sig: 'CANCEL', reason, cancel_token: token, deadline_ts_ms: deadline },
          }),
        ),
      })
    }
  }

  // ------------------------------------------------------------------ discovery and adopt

  async #discover(task: TaskDoc, spec: NodeSpec, node: NodeState): Promise<void> {
    const corr = randomUUID()
    this.#discovering.set(corr, { taskId: task.id, nodeId: spec.node_id, epoch: node.attempt_epoch })
    const env = makeEnvelope({
      msg_type: 'query',
      role: 'coordinator',
      corr_id: corr,
      dedup_id: dedupId({ corr }),
      task_id: task.id,
      node_id: spec.node_id,
      step_type: spec.type,
      attempt_epoch: node.attempt_epoch,
      ts_ms: this.#clock.now(),
      payload: { query: 'TASK_DISCOVER', want_epoch: node.attempt_epoch },
    })
    try {
      await this.#bus.produce([{ topic: this.config.topicQuery, key: task.id, value: encode(env) }])
      this.#log.info('node.discovery_sent', { task_id: task.id, node_id: spec.node_id, attempt_epoch: node.attempt_epoch })
    } catch (err) {
      this.#discovering.delete(corr)
      this.#log.warn('node.discovery_failed', { task_id: task.id, node_id: spec.node_id, error: errorMessage(err) })
    }
    // Forget the query once the window is over; late replies are then ignored.
    const window = new AbortController()
    this.#sweepAbort.signal.addEventListener('abort', () => window.abort(), { once: true })
    this.#clock.sleep(this.config.discoveryWindowSec * 1000, window.signal).then(
      () => this.#discovering.delete(corr),
      () => undefined,
    )
  }

  /** Worker announcements keep the worker registry (listWorkers). */
  async #onAnnounce(m: BusMessage): Promise<void> {
    const parsed = parseEnvelope(m.value)
    if (!parsed.ok) {
      this.#log.warn('bus.message_malformed', { topic: m.topic, offset: m.offset, error: parsed.error })
      return
    }
    const p = parsed.value.payload
    const workerId = p['worker_id']
    if (typeof workerId !== 'string' || workerId === '') {
      this.#log.warn('bus.message_malformed', { topic: m.topic, offset: m.offset, error: 'announce without worker_id' })
      return
    }
    const now = this.#clock.now()
    if (p['kind'] === 'WORKER_ONLINE') {
      const caps = p['capabilities'] as { roles?: unknown } | undefined
      const roles = Array.isArray(caps?.roles)
        ? caps.roles.filter((r): r is string => typeof r === 'string')
        : typeof p['type'] === 'string'
          ? p['type'].split(',').filter(Boolean)
          : []
      const capacity = (p['capacity'] as { tasks?: unknown } | undefined)?.tasks
      await this.#store.upsertWorker({
        worker_id: workerId,
        roles,
        capacity: typeof capacity === 'number' && Number.isFinite(capacity) ? capacity : 1,
        version: typeof p['version'] === 'string' ? p['version'] : '',
        status: 'online',
        last_seen_ms: now,
      })
      this.#log.debug('worker.online', { worker_id: workerId, roles })
    } else if (p['kind'] === 'WORKER_OFFLINE') {
      const known = (await this.#store.listWorkers()).find((w) => w.worker_id === workerId)
      await this.#store.upsertWorker({
        worker_id: workerId,
        roles: known?.roles ?? [],
        capacity: known?.capacity ?? 0,
        version: known?.version ?? '',
        status: 'offline',
        last_seen_ms: now,
      })
      this.#log.debug('worker.offline', { worker_id: workerId })
    }
  }

  async #onReply(m: BusMessage): Promise<void> {
    const parsed = parseEnvelope(m.value)
    if (!parsed.ok || parsed.value.msg_type !== 'reply') {
      this.#log.warn('bus.message_malformed', { topic: m.topic, offset: m.offset, error: parsed.ok ? 'not a reply' : parsed.error })
      return
    }
    const env = parsed.value
    const asked = this.#discovering.get(env.corr_id)
    if (asked === undefined) return
    const reply = parseReply(env.payload)
    if (!reply.ok) {
      this.#log.warn('bus.message_malformed', { topic: m.topic, offset: m.offset, error: reply.error })
      return
    }
    await this.#run(asked.taskId, () => this.#applySnapshot(asked, reply.value))
  }

  async #applySnapshot(asked: { taskId: string; nodeId: string; epoch: number }, snap: ReplySnapshot): Promise<void> {
    const task = await this.#store.getTask(asked.taskId)
    const node = task?.nodes[asked.nodeId]
    if (task === null || node === undefined || node.status !== 'running' || node.attempt_epoch !== asked.epoch) return
    const now = this.#clock.now()
    const ids = { task_id: asked.taskId, node_id: asked.nodeId, attempt_epoch: node.attempt_epoch }
    if ((snap.run_state === 'running' || snap.run_state === 'cancelling') && snap.attempt_epoch === node.attempt_epoch && snap.lease) {
      const deadline = Math.max(node.lease.deadline_ts_ms ?? 0, snap.lease.deadline_ts_ms)
      const u = await this.#transition(
        task.id,
        node.node_id,
        { status: 'running', epoch: node.attempt_epoch },
        { lease: { worker_id: snap.lease.worker_id, lease_id: snap.lease.lease_id, deadline_ts_ms: deadline }, last_event_at_ms: now },
        now,
      )
      if (u) {
        this.#log.info('node.adopted', { ...ids, worker_id: snap.lease.worker_id })
        this.#armLeaseTimer(task.id, deadline)
      }
      return
    }
    // A snapshot saying the complete artifact exists changes nothing yet: #checkTimers finishes
    // the node from that artifact when the discovery window ends, after the queued events.
  }

  // ------------------------------------------------------------------ timers and recovery

  /** Arms a wake-up for the task at `at` (clock time); the earliest pending wake-up wins. */
  #armTimer(taskId: string, at: number): void {
    if (!this.#started) return
    const cur = this.#timers.get(taskId)
    if (cur && cur.at <= at) return
    cur?.abort.abort()
    const abort = new AbortController()
    this.#timers.set(taskId, { at, abort })
    this.#clock.sleep(Math.max(0, at - this.#clock.now()), abort.signal).then(
      () => {
        if (this.#timers.get(taskId)?.abort === abort) this.#timers.delete(taskId)
        this.#enqueue(taskId, () => this.#checkTimers(taskId))
      },
      () => undefined,
    )
  }

  #armLeaseTimer(taskId: string, deadline: number): void {
    // Give the heartbeat a moment past its deadline before calling the lease lost.
    this.#armTimer(taskId, deadline + 1)
  }

  /**
   * Time after dispatch at which a start nobody accepted is sent again for the (n+1)th time: the
   * accept timeout, then doubling gaps capped at 10 minutes. A node waits for a worker of its role
   * as long as it takes (a queue), without flooding the bus.
   */
  #resendDelayMs(resends: number): number {
    const base = this.config.acceptTimeoutSec * 1000
    let total = 0
    for (let i = 0; i <= resends; i++) total += Math.min(base * 2 ** i, 600_000)
    return total
  }

  /** Handles every due timer of one task, then re-arms the next one. */
  async #checkTimers(taskId: string): Promise<void> {
    const task = await this.#store.getTask(taskId)
    if (task === null || (TERMINAL_TASK_STATUSES as readonly string[]).includes(task.status)) return
    const now = this.#clock.now()
    let next = Number.POSITIVE_INFINITY
    let snapshot: TaskDoc | null = task
    let seen = this.#writeSeq
    for (const spec of task.graph.nodes) {
      if (seen !== this.#writeSeq) {
        // An action above changed the task: look again before acting on the next node.
        snapshot = await this.#store.getTask(taskId)
        seen = this.#writeSeq
      }
      const node = snapshot?.nodes[spec.node_id]
      if (node === undefined) continue
      const ids = { task_id: taskId, node_id: node.node_id, attempt_epoch: node.attempt_epoch }
      if (node.status === 'deferred' && node.next_retry_at_ms !== null) {
        if (node.next_retry_at_ms <= now) {
          const cur = await this.#store.getTask(taskId)
          if (cur && cur.status === 'running') {
            if (this.#tryReserve(taskId, spec.node_id, spec.type)) {
              let started: TaskDoc | null = null
              try {
                started = await this.#startNode(cur, spec, node, now)
              } finally {
                if (started === null) this.#unreserve(taskId, spec.node_id)
              }
            } else this.#blocked.add(taskId)
          }
        } else next = Math.min(next, node.next_retry_at_ms)
      } else if (node.status === 'running' && spec.type !== COORDINATOR_FN_TYPE) {
        const last = node.last_event_at_ms ?? node.dispatched_at_ms
        if (node.accepted_at_ms !== null && last !== null) {
          const hard = last + this.config.heartbeatHardSec * 1000
          const soft = last + this.config.heartbeatSoftSec * 1000
          if (hard <= now) {
            this.#log.warn('node.heartbeat_lost', { ...ids, worker_id: node.lease.worker_id, silent_ms: now - last })
            const cur = (await this.#store.getTask(taskId)) ?? task
            await this.#nodeFailed(cur, node, 'heartbeat_lost', `no status for ${now - last} ms (hard limit)`, false, now)
            continue
          }
          if (soft <= now && node.suspected !== true) {
            await this.#transition(taskId, node.node_id, { status: 'running', epoch: node.attempt_epoch }, { suspected: true }, now)
            this.#log.warn('node.suspected', { ...ids, worker_id: node.lease.worker_id, silent_ms: now - last })
          }
          next = Math.min(next, soft > now ? soft : hard)
        }
        const deadline = node.lease.deadline_ts_ms
        const graceEnd = this.#startedAt + this.config.discoveryWindowSec * 1000
        const inherited = node.dispatched_at_ms !== null && node.dispatched_at_ms < this.#startedAt
        if (inherited && now >= graceEnd) {
          const complete = await this.#store.getArtifact(taskId, node.node_id, null)
          if (complete?.status === 'complete' && complete.attempt_epoch >= node.attempt_epoch) {
            const cur = (await this.#store.getTask(taskId)) ?? task
            const fresh = cur.nodes[node.node_id]
            if (fresh?.status === 'running' && fresh.attempt_epoch === node.attempt_epoch) {
              this.#log.info('node.recovered_complete', ids)
              await this.#finishNode(cur, fresh, {}, FINAL_UID, null, now)
            }
            continue
          }
        }
        if (inherited && typeof deadline === 'number' && deadline > 0 && deadline < now && now < graceEnd) {
          // Just (re)started: heartbeats may still be queued and workers are answering discovery.
          next = Math.min(next, graceEnd)
        } else if (typeof deadline === 'number' && deadline > 0) {
          if (deadline < now) {
            this.#log.warn('node.lease_expired', { ...ids, worker_id: node.lease.worker_id, deadline_ts_ms: deadline })
            const cur = (await this.#store.getTask(taskId)) ?? task
            await this.#nodeFailed(cur, node, 'lease_expired', `no heartbeat since lease deadline ${deadline}`, false, now)
          } else next = Math.min(next, deadline + 1)
        } else if (node.dispatched_at_ms !== null) {
          const resends = node.resends ?? 0
          const due = node.dispatched_at_ms + this.#resendDelayMs(resends)
          if (due <= now) {
            const u = await this.#transition(taskId, node.node_id, { status: 'running', epoch: node.attempt_epoch }, { resends: resends + 1 }, now)
            if (u) {
              await this.#outbox.enqueue(this.#startCommand(u, spec, node.attempt_epoch, resends + 1))
              this.#log.warn('node.start_resent', { ...ids, resends: resends + 1 })
              next = Math.min(next, node.dispatched_at_ms + this.#resendDelayMs(resends + 1))
            }
          } else next = Math.min(next, due)
        }
      } else if (node.status === 'cancelling' && typeof node.cancel_deadline_ms === 'number') {
        if (node.cancel_deadline_ms <= now) {
          const cur = (await this.#store.getTask(taskId)) ?? task
          await this.#finishCancelling(cur, node, 'cancel grace expired', now)
        } else next = Math.min(next, node.cancel_deadline_ms)
      }
    }
    if (Number.isFinite(next)) this.#armTimer(taskId, next)
  }

  /**
   * Brings a task's scheduling up to date from its stored state (idempotent): a queued or running
   * task has its ready nodes started and completes when everything is terminal; a cancelling task
   * has its cancel carried through. Backstop for work lost to an error after a state change.
   */
  async #reconcile(taskId: string): Promise<void> {
    const task = await this.#store.getTask(taskId)
    if (task === null || (TERMINAL_TASK_STATUSES as readonly string[]).includes(task.status)) return
    if (task.status === 'cancelling') {
      await this.#cancel(taskId, task.coordinator.cancel_reason ?? 'cancelled', task.error !== null ? 'failed' : 'cancelled')
    } else {
      await this.#kick(taskId)
    }
  }

  /** After a (re)start: finish nodes whose complete artifact exists, re-arm timers, resume scheduling. */
  async #recover(taskId: string): Promise<void> {
    const task = await this.#store.getTask(taskId)
    if (task === null) return
    // A running node whose complete artifact exists is finished once the discovery window has
    // passed (#checkTimers), so the status events still queued for it are applied first.
    this.#armTimer(taskId, this.#startedAt + this.config.discoveryWindowSec * 1000)
    // Ask every worker of each running node's role whether it still holds the run (adopt).
    const current = (await this.#store.getTask(taskId)) ?? task
    for (const spec of current.graph.nodes) {
      const node = current.nodes[spec.node_id] as NodeState
      if (node.status === 'running' && spec.type !== COORDINATOR_FN_TYPE) await this.#discover(current, spec, node)
    }
    // A coordinator function interrupted mid-run is simply run again.
    for (const spec of task.graph.nodes) {
      const node = task.nodes[spec.node_id] as NodeState
      if (spec.type === COORDINATOR_FN_TYPE && node.status === 'running') {
        const cur = await this.#store.getTask(taskId)
        if (cur) await this.#runFunction(cur, spec, node.attempt_epoch)
      }
    }
    await this.#reconcile(taskId)
    await this.#checkTimers(taskId)
  }

  /** Purges old dedup rows and sent outbox rows, at most every 10 minutes (no TTL indexes). */
  async #retention(): Promise<void> {
    const now = this.#clock.now()
    if (now - this.#lastPurge < 600_000) return
    this.#lastPurge = now
    const res = await this.#store.purgeBefore(now - this.config.retentionSec * 1000)
    if (res.events > 0 || res.outbox > 0) this.#log.info('coordinator.retention', { events: res.events, outbox: res.outbox })
  }

  /**
   * Slow sweep: reconciles every active task and re-checks its timers (catches anything a lost
   * wake-up or a failed follow-up missed).
   */
  async #sweep(signal: AbortSignal): Promise<void> {
    const tickMs = Math.max(1000, this.config.schedulerTickSec * 1000 * 10)
    while (!signal.aborted) {
      try {
        await this.#clock.sleep(tickMs, signal)
      } catch {
        return
      }
      try {
        await this.#retention()
        const active = await this.#store.listTasks({ statuses: ACTIVE_TASK_STATUSES })
        for (const t of active) {
          this.#enqueue(t.id, async () => {
            await this.#reconcile(t.id)
            await this.#checkTimers(t.id)
          })
        }
      } catch (err) {
        this.#log.error('coordinator.sweep_failed', { error: errorMessage(err) })
      }
    }
  }
}

function newNodeState(spec: NodeSpec): NodeState {
  return {
    node_id: spec.node_id,
    type: spec.type,
    status: 'queued',
    attempt_epoch: 0,
    lease: {},
    stats: {},
    last_error: null,
    failures: 0,
    next_retry_at_ms: null,
    dispatched_at_ms: null,
    accepted_at_ms: null,
    last_event_at_ms: null,
    finished_at_ms: null,
    has_output: false,
    end_reason: null,
    cancel_deadline_ms: null,
    resends: 0,
  }
}
