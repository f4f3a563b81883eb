/**
 * The dashboard's Coordinator verbs for `flowkit ui`, without a coordinator in this process (a
 * deployment runs its own, one or several): reads from the deployment's store, actions through the store and
 * the owners' topic, as the CLI's own commands do.
 *
 *   - getTask, listArtifacts, listWorkers, listDeadLetters, countDeadLetters, getOutput: read the store.
 *   - watch: reads the task from the store every `pollMs` and yields what changed (follow.ts:
 *     the same events as `Coordinator.watch`, a snapshot first, until the task ends).
 *   - retryDeadLetter: `requeueDeadLetter` (refuses a START whose attempt ended); the running coordinator's outbox picks the row up at
 *     its next poll.
 *   - cancelTask: a `cancel` control request, then reads the store until the owning coordinator
 *     acted (true: the task is cancelling or cancelled) or `cancelTimeoutMs` passed (false).
 *   - createTask: validated by `buildTask` as a coordinator would (the config's limits, the
 *     built-in coordinator functions plus those named), inserted with `Store.createTasks`, then an
 *     `adopt` control request has the running coordinator load it at once (its sweep would anyway).
 */
import { builtinArgChecks } from '../coordinator/fn-args.ts'
import { BUILTIN_FUNCTIONS } from '../coordinator/functions.ts'
import type { FnArgsCheck } from '../graph/parse-context.ts'
import { type ControlRequest, controlRequest, sendControl } from '../coordinator/control.ts'
import { requeueDeadLetter } from '../coordinator/dead-letters.ts'
import { type TaskOutput, readOutput } from '../coordinator/output.ts'
import { LiveRoles, markWaiting } from '../coordinator/roles.ts'
import { type BuildTaskOptions, type CreateTaskInput, buildTask } from '../coordinator/submit.ts'
import { type TaskView, failingTask, toTaskView } from '../coordinator/view.ts'
import type { TaskEvent } from '../coordinator/watch.ts'
import { ErrorCode, FlowkitError, errorMessage } from '../errors.ts'
import { within } from '../util/deadline.ts'
import { COORDINATOR_FN_TYPE } from '../graph/types.ts'
import type { Logger } from '../log.ts'
import type { Bus } from '../ports/bus.ts'
import type { ArtifactDoc, OutboxRow, Store, TaskDoc, WorkerInfo } from '../ports/store.ts'
import { TERMINAL_TASK_STATUSES } from '../ports/store.ts'
import { countingAttempt } from '../ports/store-rules.ts'
import type { DashboardCoordinator } from '../ui/server.ts'
import { pollTask } from './follow.ts'

export interface RemoteCoordinatorOptions {
  store: Store
  bus: Bus
  /** The topic that reaches the owner of a task (`topicTasks` of the coordinators' config). */
  controlTopic: string
  logger: Logger
  /** Submission checks, as the deployment's coordinator makes them (its config). */
  submit?: {
    /** Coordinator functions the coordinator has besides the built-in ones. */
    functions?: Iterable<string>
    rejectUnknownInputAdapters?: boolean
    limits?: BuildTaskOptions['limits']
  }
  /** Worker liveness window (the coordinator's `workerLivenessSec`), for `waiting_for_worker`. */
  workerLivenessMs?: number
  /** How often `watch` reads the task (default 500 ms). */
  pollMs?: number
  /** How long `cancelTask` waits for the coordinator to act (default 10 s). */
  cancelTimeoutMs?: number
  now?: () => number
}

const TERMINAL: ReadonlySet<string> = new Set(TERMINAL_TASK_STATUSES)
const WORKERS_TTL_MS = 5_000
/** Longest wait for Kafka to take a control request (cancel, adopt). */
const SEND_TIMEOUT_MS = 5_000

function notFound(id: string): FlowkitError {
  return new FlowkitError(ErrorCode.TaskNotFound, `task ${id} not found`)
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

export class RemoteCoordinator implements DashboardCoordinator {
  readonly #store: Store
  readonly #bus: Bus
  readonly #topic: string
  readonly #log: Logger
  readonly #fns: Set<string>
  readonly #fnArgs: ReadonlyMap<string, FnArgsCheck>
  readonly #rejectUnknownInputAdapters: boolean
  readonly #limits: BuildTaskOptions['limits']
  readonly #livenessMs: number
  readonly #pollMs: number
  readonly #cancelTimeoutMs: number
  readonly #now: () => number
  #roles: { at: number; roles: LiveRoles } | null = null

  constructor(options: RemoteCoordinatorOptions) {
    this.#store = options.store
    this.#bus = options.bus
    this.#topic = options.controlTopic
    this.#log = options.logger
    this.#fns = new Set([...Object.keys(BUILTIN_FUNCTIONS), ...(options.submit?.functions ?? [])])
    this.#fnArgs = builtinArgChecks(options.submit?.functions ?? [])
    this.#rejectUnknownInputAdapters = options.submit?.rejectUnknownInputAdapters ?? false
    this.#limits = options.submit?.limits
    this.#livenessMs = options.workerLivenessMs ?? 180_000
    this.#pollMs = options.pollMs ?? 500
    this.#cancelTimeoutMs = options.cancelTimeoutMs ?? 10_000
    this.#now = options.now ?? Date.now
  }

  /**
   * Sends a control request, waiting at most SEND_TIMEOUT_MS: a broker that accepts connections
   * but does not answer would otherwise hold the dashboard's request for the Kafka client's own
   * retries (a minute and more). The send goes on in the background.
   */
  async #send(req: ControlRequest): Promise<void> {
    const sent = sendControl(this.#bus, this.#topic, req)
    sent.catch(() => undefined)
    await within(sent, SEND_TIMEOUT_MS, () => new FlowkitError(ErrorCode.BusUnavailable, `Kafka did not take the ${req.op} request within ${SEND_TIMEOUT_MS / 1000} s`))
  }

  /** Worker roles from the store's worker list (read at most every 5 s, and only when needed). */
  async #liveRoles(): Promise<LiveRoles> {
    const now = this.#now()
    if (this.#roles !== null && now - this.#roles.at < WORKERS_TTL_MS) return this.#roles.roles
    const roles = new LiveRoles(this.#livenessMs)
    for (const w of await this.#store.listWorkers()) roles.seen(w)
    this.#roles = { at: now, roles }
    return roles
  }

  async #view(doc: TaskDoc): Promise<TaskView> {
    return this.#mark(toTaskView(doc))
  }

  async #mark(view: TaskView): Promise<TaskView> {
    // As Coordinator.getTask: dispatched nodes no live worker serves are marked.
    if (!view.nodes.some((n) => n.status === 'running' && n.accepted_at_ms === null && n.type !== COORDINATOR_FN_TYPE)) return view
    return markWaiting(view, await this.#liveRoles(), (t) => t === COORDINATOR_FN_TYPE, this.#now())
  }

  async getTask(id: string): Promise<TaskView | null> {
    const doc = await this.#store.getTask(id)
    return doc === null ? null : this.#view(doc)
  }

  async *watch(taskId: string, options: { signal?: AbortSignal } = {}): AsyncGenerator<TaskEvent> {
    const polls = pollTask(this.#store, taskId, {
      intervalMs: this.#pollMs,
      ...(options.signal === undefined ? {} : { signal: options.signal }),
      notFound,
      note: (text) => this.#log.warn('ui.watch_store', { task_id: taskId, note: text }),
    })
    for await (const p of polls) {
      // A snapshot says which nodes wait for a worker, as getTask (the progress after it) does.
      // (Unmarked when the worker list cannot be read: the snapshot still goes out.)
      for (const e of p.events) yield e.type === 'snapshot' ? { ...e, task: await this.#mark(e.task).catch(() => e.task) } : e
    }
  }

  async cancelTask(id: string, options: { reason?: string } = {}): Promise<boolean> {
    const before = await this.#store.getTask(id)
    if (before === null) throw notFound(id)
    if (TERMINAL.has(before.status)) return false
    if (failingTask(before)) return false // stopping because a node failed or its deadline passed: it ends failed
    if (before.status === 'cancelling' || before.coordinator.cancelled) return true
    const req = controlRequest('cancel', id, this.#now(), options.reason ?? 'cancelled from the dashboard')
    await this.#send(req)
    const deadline = Date.now() + this.#cancelTimeoutMs
    for (;;) {
      await sleep(Math.min(250, this.#pollMs))
      const t = await this.#store.getTask(id)
      if (t === null) throw notFound(id)
      if (failingTask(t)) return false
      if (t.coordinator.cancelled || t.status === 'cancelling' || t.status === 'cancelled') return true
      if (TERMINAL.has(t.status)) return false
      if (Date.now() >= deadline) {
        this.#log.warn('ui.cancel_unanswered', {
          task_id: id,
          request_id: req.request_id,
          waited_ms: this.#cancelTimeoutMs,
          hint: `no coordinator acted on the cancel request (is one running for this deployment, reading ${this.#topic}?)`,
        })
        return false
      }
    }
  }

  async createTask(input: CreateTaskInput): Promise<string> {
    const task = buildTask(input, { coordinatorFns: this.#fns, fnArgs: this.#fnArgs, rejectUnknownInputAdapters: this.#rejectUnknownInputAdapters, ...(this.#limits === undefined ? {} : { limits: this.#limits }) }, this.#now())
    const [err] = await this.#store.createTasks([task])
    if (err) throw err
    try {
      await this.#send(controlRequest('adopt', task.id, this.#now()))
    } catch (e) {
      // The coordinator's sweep adopts it anyway (sweep_interval_sec).
      this.#log.warn('ui.adopt_request_failed', { task_id: task.id, error: errorMessage(e) })
    }
    return task.id
  }

  listWorkers(): Promise<WorkerInfo[]> {
    return this.#store.listWorkers()
  }

  listDeadLetters(limit = 100): Promise<OutboxRow[]> {
    return this.#store.outboxList({ status: 'failed', limit })
  }

  countDeadLetters(): Promise<number> {
    return this.#store.outboxCount('failed')
  }

  async retryDeadLetter(id: string): Promise<boolean> {
    const ok = await requeueDeadLetter(this.#store, id, this.#now())
    if (ok) this.#log.info('outbox.requeued', { outbox_id: id, by: 'ui' })
    return ok
  }

  async listArtifacts(taskId: string, options: { nodeId?: string; allAttempts?: boolean } = {}): Promise<ArtifactDoc[]> {
    const all = await this.#store.listArtifacts(taskId, options.nodeId === undefined ? {} : { nodeId: options.nodeId })
    return options.allAttempts === true ? all : countingAttempt(all)
  }

  async getOutput(taskId: string): Promise<TaskOutput[]> {
    const t = await this.getTask(taskId)
    if (t === null) throw notFound(taskId)
    return readOutput(this.#store, t)
  }
}
