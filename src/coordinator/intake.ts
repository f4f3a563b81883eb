/**
 * Intake: what the coordinator reads from the bus, turned into transitions. Status events are
 * parsed, epoch-fenced and applied to the task's runtime in memory; the batch handler resolves
 * (and the bus commits the batch's offsets) only once the flush that covers them is durable.
 * Malformed records are logged and skipped; they never block a partition.
 */
import { ErrorCode, FlowkitError } from '../errors.ts'
import { type Logger, errorForNode } from '../log.ts'
import type { BusMessage } from '../ports/bus.ts'
import type { Clock } from '../ports/clock.ts'
import { FINAL_UID, type Envelope, type StatusEvent, cutReasonCode } from '../protocol/messages.ts'
import { envelopeOf, parseStatusEvent } from '../protocol/parse.ts'
import type { Engine } from './engine.ts'
import type { TaskRuntime } from './runtime.ts'
import type { NodeEvent } from './transitions.ts'
import { RecentSet } from '../util/recent.ts'

export interface IntakeHooks {
  /** A task this coordinator does not hold in memory: load it if it is ours and active (else null). */
  adopt(taskId: string): Promise<TaskRuntime | null>
  /** Resolves when everything applied so far is durable. */
  barrier(): Promise<void>
  /** A task recently finished and dropped from memory: late events for it are ignored cheaply. */
  isRecentlyDone(taskId: string): boolean
  /** Whether this coordinator owns the task (its partition of the owners' topic). */
  owns(taskId: string): boolean
  /**
   * A worker took up an attempt of a task that has ended (its START waited in a queue while the
   * task was cancelled, say): it is told to stop (a CANCEL signal), so no work runs for nothing.
   */
  stopRun(env: Envelope, workerId: string): void
  /** Sends status records of tasks owned by another coordinator on to their owners. */
  forward(records: Array<{ taskId: string; message: BusMessage }>): Promise<void>
  /** A worker reported on a run of `type` (acceptance, heartbeat): it serves the type (steering). */
  heard?(workerId: string, type: string, now: number): void
  /**
   * A report of an attempt newer than the runtime knows: another coordinator dispatched it, so
   * this runtime is behind the store. It is dropped and loaded again (its batch delivered again).
   */
  behind?(rt: TaskRuntime): void
}

export class Intake {
  readonly #engine: Engine
  readonly #clock: Clock
  readonly #log: Logger
  readonly #hooks: IntakeHooks
  /** Status events applied (for diagnostics and benchmarks). */
  applied = 0
  /**
   * Tasks looked up once and found not to be ours to run (unknown to the store, finished, or in
   * another layout): their later events are dropped without another store read.
   */
  readonly #notOurs = new RecentSet<string>(10_000)
  /** Attempts (`task:node@epoch`) whose report made a runtime load again: a second one is stale for good (a forged epoch). */
  readonly #reloadedFor = new RecentSet<string>(10_000)

  /** Forgets what it learnt about foreign tasks (a coordinator starting again). */
  reset(): void {
    this.#notOurs.clear()
  }

  constructor(engine: Engine, clock: Clock, log: Logger, hooks: IntakeHooks) {
    this.#engine = engine
    this.#clock = clock
    this.#log = log
    this.#hooks = hooks
  }

  /**
   * Applies a batch of status records in order, then waits until they are durable. `kinds`, when
   * given, gets the status kind of each record it could parse, by index (for the metrics).
   */
  async statusBatch(messages: readonly BusMessage[], kinds?: Array<string | undefined>): Promise<void> {
    const forward: Array<{ taskId: string; message: BusMessage }> = []
    const touched = new Set<TaskRuntime>()
    let halted: Set<string> | undefined
    // One reading of the clock for the events of the batch (they are applied together).
    let now: number | undefined
    for (let i = 0; i < messages.length; i++) {
      const m = messages[i] as BusMessage
      const parsed = envelopeOf(m)
      if (!parsed.ok) {
        this.#log.warn('bus.message_malformed', { topic: m.topic, partition: m.partition, offset: m.offset, error: parsed.error })
        continue
      }
      const env = parsed.value
      if (env.msg_type !== 'event' || env.role !== 'worker') {
        this.#log.warn('bus.message_unexpected', { topic: m.topic, offset: m.offset, msg_type: env.msg_type, role: env.role })
        continue
      }
      const ev = parseStatusEvent(env.payload)
      if (!ev.ok) {
        this.#log.warn('bus.message_malformed', { topic: m.topic, offset: m.offset, task_id: env.task_id, node_id: env.node_id, error: ev.error })
        continue
      }
      if (kinds !== undefined) kinds[i] = ev.value.kind
      // Its runtime was dropped earlier in this batch (behind the store): the batch is delivered
      // again, and this record comes then, in order, to the task loaded again.
      if (halted?.has(env.task_id) === true) continue
      if (!this.#hooks.owns(env.task_id)) {
        forward.push({ taskId: env.task_id, message: m })
        continue
      }
      let rt = this.#engine.tasks.get(env.task_id) ?? null
      if (rt === null) {
        if (this.#hooks.isRecentlyDone(env.task_id) || this.#notOurs.has(env.task_id)) {
          this.#log.debug('event.task_done', { task_id: env.task_id, node_id: env.node_id, kind: ev.value.kind })
          if (ev.value.kind === 'TASK_ACCEPTED' && this.#hooks.isRecentlyDone(env.task_id)) this.#hooks.stopRun(env, ev.value.worker_id)
          continue
        }
        // Store errors propagate: the bus delivers the batch again.
        rt = await this.#hooks.adopt(env.task_id)
        now = undefined // time went by
        if (rt === null && !this.#hooks.owns(env.task_id)) {
          // Its partition moved away while it was looked up: not "not ours" for good (it may come
          // back with the next assignment, and a cached verdict would then drop its events); the
          // owner gets the event.
          forward.push({ taskId: env.task_id, message: m })
          continue
        }
        if (rt === null) {
          // Ended (read from the store, e.g. after a restart): a run taken up late is told to stop.
          if (ev.value.kind === 'TASK_ACCEPTED' && this.#hooks.isRecentlyDone(env.task_id)) this.#hooks.stopRun(env, ev.value.worker_id)
          this.#notOurs.add(env.task_id)
          // Another deployment's task on a shared cluster, or one in another layout: not ours.
          this.#log.debug('event.unknown_task', { task_id: env.task_id, node_id: env.node_id, kind: ev.value.kind })
          continue
        }
      }
      touched.add(rt)
      now ??= this.#clock.now()
      this.apply(rt, env, ev.value, now)
      if (rt.fenced) {
        halted ??= new Set()
        halted.add(env.task_id)
      }
    }
    if (forward.length > 0) await this.#hooks.forward(forward)
    await this.#hooks.barrier()
    // A task whose write was refused (another coordinator wrote it first) lost these events:
    // the bus delivers the batch again, and they reach whoever owns the task now.
    for (const rt of touched) {
      if (rt.fenced) throw new FlowkitError(ErrorCode.StoreUnavailable, `task ${rt.id}: written by another coordinator; events delivered again`, { retryable: true })
    }
  }

  apply(rt: TaskRuntime, env: Envelope, ev: StatusEvent, at?: number): void {
    const ids = { task_id: env.task_id, node_id: env.node_id, attempt_epoch: env.attempt_epoch, kind: ev.kind }
    const ord = rt.ord.get(env.node_id)
    if (ord === undefined) {
      this.#log.warn('event.unknown_node', ids)
      return
    }
    const node = rt.node(ord)
    if (node.attempt_epoch !== env.attempt_epoch) {
      // Epochs are written before their STARTs go out: a newer one means another coordinator
      // moved the task on (this runtime outlived a hand-over). Loaded again, once per attempt —
      // unless changes of this runtime are still unwritten: its next write tells (refused, it is
      // fenced and loaded again; written, the epoch was no other coordinator's, a forged or
      // corrupt report), and dropping them would lose them (a retry's dispatch: the reloaded node
      // was back at the epoch before, where a forged report of that epoch then counted).
      if (env.attempt_epoch > node.attempt_epoch && this.#hooks.behind !== undefined && !rt.fenced && !rt.dirty) {
        const key = `${env.task_id}:${env.node_id}@${env.attempt_epoch}`
        if (!this.#reloadedFor.has(key)) {
          this.#reloadedFor.add(key)
          this.#log.warn('coordinator.task_behind', { ...ids, node_epoch: node.attempt_epoch })
          this.#hooks.behind(rt)
          return
        }
      }
      this.#log.info('event.stale_epoch', { ...ids, node_epoch: node.attempt_epoch })
      // A worker took up an attempt that has been replaced (its start waited in a queue): it is
      // told to give it up, so an old attempt never holds a slot or writes next to the new one.
      if (ev.kind === 'TASK_ACCEPTED' && env.attempt_epoch < node.attempt_epoch) this.#engine.cancelStale(rt, ord, env.attempt_epoch, ev.worker_id)
      return
    }
    this.applied++
    const now = at ?? this.#clock.now()
    let event: NodeEvent
    // The journal keeps the label: one flat string (a template makes a tree of pieces).
    LABEL[0] = ev.kind
    LABEL[2] = env.node_id
    LABEL[4] = env.attempt_epoch
    LABEL[5] = ev.kind === 'BATCH_OK' ? ` ${ev.batch_uid}` : ''
    const label = LABEL.join('')
    switch (ev.kind) {
      case 'TASK_ACCEPTED':
      case 'TASK_HEARTBEAT':
      case 'TASK_RESUMED': {
        // The lease's length as the worker stated it, counted on this coordinator's clock.
        const ttl = Math.max(0, ev.lease_deadline_ts_ms - env.ts_ms)
        this.#hooks.heard?.(ev.worker_id, rt.spec(ord).type, now)
        event = { kind: 'lease', accepted: ev.kind === 'TASK_ACCEPTED', workerId: ev.worker_id, leaseId: ev.lease_id, deadline: ev.lease_deadline_ts_ms, expiresAt: now + ttl }
        break
      }
      case 'BATCH_OK': {
        const seen = rt.batches.get(ord)?.get(ev.batch_uid)
        event = { kind: 'batch_ok', uid: ev.batch_uid, metrics: ev.metrics, prev: seen?.metrics ?? null, duplicate: seen !== undefined && seen.epoch === node.attempt_epoch }
        // A contribution replaced (a retried batch): its stats are summed again over the ledger.
        if (seen !== undefined) event.ledger = rt.batches.get(ord)
        break
      }
      case 'BATCH_FAILED':
        event = { kind: 'batch_failed', uid: ev.batch_uid, reasonCode: cutReasonCode(ev.reason_code), error: errorText(ev.error), permanent: ev.permanent }
        break
      case 'TASK_DONE': {
        const finalUid = ev.final_uid ?? FINAL_UID
        const seen = rt.batches.get(ord)?.get(finalUid)
        const prev = seen === undefined ? null : seen.metrics
        event = { kind: 'done', metrics: ev.metrics, finalUid, prev, ...(ev.batches === undefined ? {} : { batches: ev.batches }) }
        if (seen !== undefined) event.ledger = rt.batches.get(ord)
        if (node.status === 'finished' && seen !== undefined && seen.epoch !== node.attempt_epoch) event.prev = null
        break
      }
      case 'TASK_FAILED':
        event = { kind: 'failed', reasonCode: cutReasonCode(ev.reason_code), error: errorText(ev.error), permanent: ev.permanent }
        break
      case 'CANCELLED':
        event = { kind: 'worker_cancelled', reason: ev.reason }
        break
    }
    if (!this.#engine.apply(rt, ord, event, label, now)) this.#log.debug('event.no_change', ids)
  }
}

/** The pieces of an event's journal label: `KIND node@epoch[ batch_uid]`. */
const LABEL: Array<string | number> = ['', ' ', '', '@', 0, '']

/** A worker's error text as the node keeps it: a flowkit worker masks and bounds it before sending, a worker in another language may not. */
function errorText(error: string | null): string | null {
  return error === null ? null : errorForNode(error)
}
