/**
 * How a Coordinator is put together: its options, its config (resolved, bounds checked, submit
 * limits checked), and its parts wired to each other.
 *
 * The parts call each other through callbacks that look the other part up when called (the engine
 * marks tasks dirty in the flusher, the flusher hands what is durable to the after-flush stage,
 * which feeds the snapshot writer and the outbox; intake and handover go through ownership and
 * back), so a part may be built before the parts it calls. What the facade itself decides (whether
 * it is started, the stop signal of its sweep, its counters, the requests from other processes it
 * applies) comes in as CoordinatorHooks.
 */
import { randomUUID } from 'node:crypto'
import { SystemClock } from '../clock.ts'
import { COORDINATOR_DEFAULTS, type ConfigInput, type CoordinatorConfig, checkBounds, checkIntegers, checkNames, checkStringList, checkTopics, resolveConfig } from '../config.ts'
import { ErrorCode, FlowkitError, errorMessage } from '../errors.ts'
import { resolveSubmitLimits } from '../graph/limits.ts'
import { createLogger, type Logger } from '../log.ts'
import { CoordinatorObservability } from '../observability/coordinator.ts'
import type { ObservabilityOptions } from '../observability/options.ts'
import type { Bus } from '../ports/bus.ts'
import type { Clock } from '../ports/clock.ts'
import { HANDED_BACK_HOLDER, type Store } from '../ports/store.ts'
import { AfterFlush } from './after-flush.ts'
import { cancelSignal } from './commands.ts'
import { type ControlTarget, applyRequest } from './control.ts'
import { Discovery } from './discovery.ts'
import { Engine } from './engine.ts'
import { drainStatus, handoverGraceMs, leaseJudge } from './expiry.ts'
import type { CancelDeps } from './cancel-request.ts'
import { Flusher } from './flush.ts'
import { FnRunner } from './fn-runner.ts'
import { builtinArgChecks } from './fn-args.ts'
import { BUILTIN_FUNCTIONS, type CoordinatorFn } from './functions.ts'
import type { FnArgsCheck } from '../graph/parse-context.ts'
import { OwnedTasks } from './handover.ts'
import { Intake } from './intake.ts'
import { Limits } from './limits.ts'
import { OutboxDispatcher } from './outbox.ts'
import { Ownership } from './ownership.ts'
import { Hearing } from './hearing.ts'
import type { RecoveryDeps } from './recovery.ts'
import { LiveRoles, warnIfUnserved } from './roles.ts'
import { Steering } from './steer.ts'
import { SnapshotWriter } from './snapshots.ts'
import { TaskInserter, checkMinMessageBytes } from './submit.ts'
import { Subscriptions } from './subscriptions.ts'
import { TimerHeap } from './timers.ts'
import { Watchers } from './watch.ts'

export interface CoordinatorOptions {
  bus: Bus
  store: Store
  clock?: Clock
  config?: ConfigInput<CoordinatorConfig>
  logger?: Logger
  /** Extra coordinator functions by name (added to the built-in ones). */
  functions?: Record<string, CoordinatorFn>
  /** Traces and Prometheus metrics (default: both on; see docs/observability.md); false: none. */
  observability?: ObservabilityOptions | false
}

/** What the parts ask of the Coordinator facade (each read when called). */
export interface CoordinatorHooks {
  /** Whether the coordinator is started. */
  started(): boolean
  /** Aborted when the coordinator stops (its sweep, the waits of recovery and role warnings). */
  stopSignal(): AbortSignal
  /** The coordinator's counters (for the metrics). */
  stats(): Record<string, number>
  /** Applies the requests of other processes (owners' topic): the owner only. */
  requests: ControlTarget
}

/** A coordinator's parts, wired to each other. */
export interface CoordinatorWiring {
  readonly config: CoordinatorConfig
  /** This process's writer id (journal entries, and `created_by` of the tasks it creates). */
  readonly writer: string
  readonly bus: Bus
  /** The store (observed when observability is on). */
  readonly store: Store
  readonly clock: Clock
  readonly log: Logger
  readonly functions: Record<string, CoordinatorFn>
  /** Submission checks of the built-in functions' fn_args (less the ones `functions` replaced). */
  readonly fnArgs: ReadonlyMap<string, FnArgsCheck>
  readonly obs: CoordinatorObservability | null
  readonly roles: LiveRoles
  readonly steering: Steering
  readonly outbox: OutboxDispatcher
  readonly limits: Limits
  readonly timers: TimerHeap
  readonly engine: Engine
  readonly flusher: Flusher
  readonly snapshots: SnapshotWriter
  readonly fns: FnRunner
  readonly after: AfterFlush
  readonly intake: Intake
  readonly inserter: TaskInserter
  readonly subscriptions: Subscriptions
  readonly ownership: Ownership
  /** Whether it can hear its workers (leases are not judged while it cannot: hearing.ts). */
  readonly hearing: Hearing
  readonly tasks: OwnedTasks
  readonly discovery: Discovery
  readonly watchers: Watchers
  /** Cancels requested and applied (cancel-request.ts). */
  readonly cancels: CancelDeps
}

/**
 * How long an ended task's snapshot waits for the coordinator to be idle before it is written
 * anyway: with `taskRetentionSec`, a quarter of the retention (1 s to 60 s), so that retention
 * applies under a steady load; without, until idle or the backlog's cap (snapshots.ts): an update
 * under load costs the test server 0.6–0.8 s, and written while the chain ran they cut its
 * throughput from ~560 to ~330 node runs/s.
 */
function terminalWaitMs(config: CoordinatorConfig): number {
  const retentionMs = config.taskRetentionSec * 1000
  return retentionMs > 0 ? Math.min(60_000, Math.max(1000, retentionMs / 4)) : Number.POSITIVE_INFINITY
}

/** The coordinator config from the defaults and what the caller gave; out of bounds or bad limits throw. */
export function coordinatorConfig(config: CoordinatorOptions['config']): CoordinatorConfig {
  const c = checkBounds(
    resolveConfig(COORDINATOR_DEFAULTS, (config ?? {}) as Record<string, unknown>, 'coordinator config'),
    'coordinator config',
    ['heartbeatSoftSec', 'heartbeatHardSec', 'leaseTtlSec', 'schedulerTickSec', 'outboxDispatchTickSec', 'outboxMaxRetry', 'acceptTimeoutSec', 'defaultRetryMax', 'topicPartitions', 'retentionSec'],
    ['discoveryWindowSec', 'steerAfterSec', 'steerWarmupSec', 'taskRetentionSec', 'cancelGraceSec', 'outboxBackoffMinMs', 'outboxBackoffMaxMs', 'defaultBackoffSec', 'maxRunningNodes', 'snapshotIntervalSec', 'stopSnapshotsSec', 'snapshotLedgerMax'],
  )
  resolveSubmitLimits(c) // bad limits fail here, not at the first createTask
  const label = 'coordinator config'
  checkTopics(c, label)
  checkIntegers(c, label, ['maxRunningNodes', 'outboxMaxRetry', 'defaultRetryMax'], 0)
  checkNames(c, label, ['groupId'], ['coordinatorId'])
  checkStringList(c.workerTypes, label, 'workerTypes')
  for (const [type, n] of Object.entries(c.maxRunningByType)) {
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0) {
      throw new FlowkitError(ErrorCode.Config, `${label}: "maxRunningByType" must map worker types to integers >= 0 (0: no limit), got ${JSON.stringify(type)}: ${JSON.stringify(n) ?? String(n)}`)
    }
  }
  checkMinMessageBytes(c.maxMessageBytes)
  return c
}

export function wireCoordinator(options: CoordinatorOptions, hooks: CoordinatorHooks): CoordinatorWiring {
  const config = coordinatorConfig(options.config)
  const roles = new LiveRoles(config.workerLivenessSec * 1000)
  const bus = options.bus
  const clock = options.clock ?? new SystemClock()
  const obs = CoordinatorObservability.create(options, clock)
  const store = obs?.wrapStore(options.store) ?? options.store
  const baseLog = (options.logger ?? createLogger()).child({ component: 'coordinator' })
  const log = obs?.wrapLogger(baseLog) ?? baseLog
  const functions = { ...BUILTIN_FUNCTIONS, ...(options.functions ?? {}) }
  const fnArgs = builtinArgChecks(Object.keys(functions).filter((n) => functions[n] !== BUILTIN_FUNCTIONS[n]))
  /** This process's identity in the journal (tells its own retried writes from another writer's). */
  const writer = `c-${randomUUID()}`
  const watchers = new Watchers()
  const outbox = new OutboxDispatcher(store, bus, clock, log, {
    maxAttempts: config.outboxMaxRetry,
    backoffMinMs: config.outboxBackoffMinMs,
    backoffMaxMs: config.outboxBackoffMaxMs,
    tickMs: config.outboxDispatchTickSec * 1000,
    ...(obs === null ? {} : { headers: obs.commandHeaders }),
  })
  const limits = new Limits(config.maxRunningNodes, config.maxRunningByType)
  limits.capacityOf = (w) => roles.capacityOf(w)
  // Entries of tasks no longer held are dropped as the heap grows (ended, evicted, handed over).
  const timers = new TimerHeap(clock, (due) => engine.onTimers(due), (id) => engine.tasks.has(id))
  const steering = new Steering(config, roles, limits, { get: (id) => engine.tasks.get(id) })
  // Every slot its live workers announced is held by an accepted run (of any of their types),
  // or was within the last accept timeout (a busy worker's acceptance of its next START comes a
  // moment after the end of its last run): a START waits in a queue. (Not the dispatched count:
  // lost STARTs and dead holders' claims count there, and would keep the type "busy" for ever.)
  const saturated = (type: string): boolean => {
    const now = clock.now()
    const since = now - config.acceptTimeoutSec * 1000
    // (Full by this coordinator's own count, or as the worker itself said: its slots also hold
    // other coordinators' runs.)
    return roles.full(type, now, (w, capacity) => steering.fullSince(w, capacity, since))
  }
  const engine: Engine = new Engine(config, clock, log, limits, timers, {
    dirty: (rt) => flusher.mark(rt),
    terminal: () => undefined,
    started: (rt, ord, epoch) => warnIfUnserved({ roles, clock, log, engine, stop: hooks.stopSignal() }, rt, ord, epoch),
    claimed: (rt, ord, epoch) => store.attemptHolder(rt.id, rt.spec(ord).node_id, epoch),
    fence: (rt, ord, epoch) => {
      const ids = { task_id: rt.id, node_id: rt.spec(ord).node_id, attempt_epoch: epoch }
      return store.claimAttempt({ ...ids, worker_id: HANDED_BACK_HOLDER }, clock.now()).then(
        (fenced) => {
          log.debug('node.attempt_fenced', { ...ids, fenced })
          return fenced
        },
        (err: unknown) => {
          log.debug('node.attempt_fenced', { ...ids, fenced: false, error: errorMessage(err) })
          return false
        },
      )
    },
    // Only where its START waits: behind busy workers (every slot of its type held: a START a
    // worker with a free slot takes up at once runs, and its handler sees the cancel) or for a
    // worker of its type to exist (none live: a mistyped type, a deployment not up yet); and when
    // every live worker of the type claims attempts (the fence stops no Python worker).
    withdrawable: (type) => {
      const now = clock.now()
      return roles.allSteerable(type, now) && (!roles.knows(type, now) || saturated(type))
    },
    saturated,
    steer: (rt, ord, now) => {
      const worker = steering.target(rt.spec(ord).type, now)
      const command = worker === null ? null : steering.steer(rt, ord, worker, now)
      return command === null || worker === null ? null : { command, worker }
    },
    judge: leaseJudge({
      config,
      store,
      log,
      statusSubscription: (type) => subscriptions.get(type),
      forwarded: () => ownership.drained(),
      handoverWaitMs: (type) => (subscriptions.sharesStatus(type) ? handoverGraceMs(bus.sessionTimeoutMs) : 0),
      stopped: () => hooks.stopSignal().aborted,
    }),
  })
  const flusher: Flusher = new Flusher(store, clock, log, writer, {
    durable: (rt, commands, fnRuns, snapshot, urgent) => after.durable(rt, commands, fnRuns, snapshot, urgent),
    fenced: (rt) => tasks.fenced(rt),
    startRefused: (rt, c, error) => after.startUndeliverable(rt, c.ord, c.epoch, error),
    mayWrite: () => ownership.waitConfirmed(),
    owns: (rt) => ownership.writable(rt.id),
    rows: (rows) => snapshots.offerRows(rows),
    wantsSnapshot: (rt, now) => after.wantsSnapshot(rt, now),
    ledgerInlineMax: () => (snapshots.ledgerInRows ? config.snapshotLedgerMax : Number.POSITIVE_INFINITY),
    observed: (entry) => {
      watchers.observe(entry)
      obs?.journal(entry)
    },
  })
  const snapshots: SnapshotWriter = new SnapshotWriter(store, clock, log, (id, v) => after.snapshotWritten(id, v), { working: () => flusher.working, terminalWaitMs: terminalWaitMs(config) })
  const fns = new FnRunner(engine, store, clock, log, functions)
  const after: AfterFlush = new AfterFlush({
    engine,
    outbox,
    fns,
    clock,
    log,
    snapshotIntervalMs: config.snapshotIntervalSec * 1000,
    snapshots: () => snapshots,
    flusher: () => flusher,
  })
  const intake: Intake = new Intake(engine, clock, log, {
    adopt: (id) => tasks.adopt(id),
    barrier: () => flusher.barrier(),
    isRecentlyDone: (id) => after.isRecentlyDone(id),
    stopRun: (env, workerId) => {
      const now = clock.now()
      log.info('node.stale_run', { task_id: env.task_id, node_id: env.node_id, attempt_epoch: env.attempt_epoch, worker_id: workerId, why: 'task ended' })
      const c = cancelSignal(config, { taskId: env.task_id, nodeId: env.node_id, stepType: env.step_type, epoch: env.attempt_epoch }, workerId, 'task ended', now + config.cancelGraceSec * 1000, now)
      outbox.send([{ topic: c.topic, key: c.key, value: c.value, dedup_id: c.dedup_id, task_id: env.task_id }])
    },
    owns: (id) => ownership.owns(id),
    heard: (workerId, type, now) => roles.heard(workerId, type, now),
    behind: (rt) => tasks.fenced(rt),
    forward: (records) => ownership.forward(records.map((r) => Ownership.statusRecord(r.taskId, r.message))),
  })
  const inserter = new TaskInserter(store)
  const subscriptions: Subscriptions = new Subscriptions(bus, config, (msgs) => (obs === null ? intake.statusBatch(msgs) : obs.statusBatch(msgs, (kinds) => intake.statusBatch(msgs, kinds))))
  obs?.attach({
    tasks: () => engine.tasks.values(),
    stats: () => hooks.stats(),
    outboxBacklog: () => outbox.backlog,
    nodeType: (taskId, nodeId) => {
      const rt = engine.tasks.get(taskId)
      const ord = rt?.ord.get(nodeId)
      return rt === undefined || ord === undefined ? undefined : rt.spec(ord).type
    },
  })
  const ownership: Ownership = new Ownership({
    bus,
    topic: config.topicTasks,
    partitions: config.taskPartitions,
    groupId: `${config.groupId}.owners`,
    ...subscriptions.instance('owners'),
    confirmMs: config.ownershipConfirmSec * 1000,
    log,
    hooks: {
      acquire: async (parts) => {
        await tasks.acquire(parts)
      },
      release: async (parts) => {
        await tasks.release(parts)
      },
      status: (msgs) => {
        obs?.linkAccepted(msgs)
        return intake.statusBatch(msgs)
      },
      control: (req) => applyRequest(hooks.requests, log, req, clock.now()),
    },
  })
  const cancels: CancelDeps = {
    engine,
    log,
    mark: (rt) => flusher.mark(rt),
    barrier: () => flusher.barrier(),
    // (Not the owners' topic: a cancel request comes through it, after the reports forwarded before it.)
    drain: (rt) => drainStatus({ statusSubscription: (t) => subscriptions.get(t), config, log }, rt),
  }
  const recovery = (): RecoveryDeps => ({ config, store, clock, log, engine, fns, discovery, cancels, barrier: () => flusher.barrier(), owners: () => ownership.drained(), handoverWaitMs: (type) => (subscriptions.sharesStatus(type) ? handoverGraceMs(bus.sessionTimeoutMs) : 0) })
  const tasks: OwnedTasks = new OwnedTasks({
    store,
    engine,
    limits,
    log,
    clock,
    writer,
    ownership,
    after,
    mark: (rt) => flusher.mark(rt),
    barrier: () => flusher.barrier(),
    ensureStatus: (types) => Promise.all([...types].map((t) => subscriptions.ensureStatus(t))).then(() => undefined),
    subscriptions: () => subscriptions.all(),
    recovery,
    started: () => hooks.started(),
    stopSignal: () => hooks.stopSignal(),
    submitted: (rt) => obs?.taskSubmitted(rt.id, rt.specs.length, rt.createdAt),
    claimed: (rt) => obs?.taskClaimed(rt.id, rt.nodes),
    offerRows: (rows) => snapshots.offerRows(rows),
    handedOver: (rt) => {
      obs?.released(rt.id)
      watchers.handedOver(rt.id, rt.v, store, hooks.stopSignal())
    },
  })
  const discovery = new Discovery(config, bus, clock, log, engine, () => flusher.barrier())
  const hearing = new Hearing({
    clock,
    log,
    graceMs: config.leaseTtlSec * 1000,
    confirmed: () => ownership.confirmed(),
    storeFailingSince: () => flusher.failingSince,
    storeCallSince: () => flusher.callSince,
    setEnd: (at) => {
      engine.hearingEnd = Math.max(engine.hearingEnd, at)
    },
  })
  return { config, writer, bus, store, clock, log, functions, fnArgs, obs, roles, steering, outbox, limits, timers, engine, flusher, snapshots, fns, after, intake, inserter, subscriptions, ownership, hearing, tasks, discovery, watchers, cancels }
}
