/**
 * The scheduler: applies events to task runtimes through the transition table and turns the
 * effects into scheduling decisions (children re-evaluated, task completion, failure cascade,
 * concurrency limits, timers) and into work for the next flush (commands, metrics rows,
 * coordinator functions). Everything here is synchronous and in memory; nothing is written or
 * sent until the flusher has made the new state durable.
 */
import type { CoordinatorConfig } from '../config.ts'
import type { RetryPolicy } from '../graph/types.ts'
import type { Logger } from '../log.ts'
import type { NodeState } from '../model/state.ts'
import type { Clock } from '../ports/clock.ts'
import type { ArtifactDoc } from '../ports/store.ts'
import { handOver } from '../ports/store-rules.ts'
import { cancelPending } from './cancel-request.ts'
import { taskResult } from './output.ts'
import { cancelCommands, reissueCommands, staleCancel, startCommand } from './commands.ts'
import { dueAt } from './node-due.ts'
import { type TimerDeps, nodeDue } from './node-timer.ts'
import { type AcceptDeps, withdrawUnaccepted } from './accept.ts'
import { type Limits, acceptedHolder } from './limits.ts'
import { heldUpstream, holdYielded, waitingConsumers } from './yield.ts'
import type { PendingCommand, TaskRuntime } from './runtime.ts'
import type { TimerEntry, TimerHeap } from './timers.ts'
import { type Effect, type NodeEvent, isTerminal, transition } from './transitions.ts'

export interface EngineHooks {
  /** The runtime has something to write: schedule a flush. */
  dirty(rt: TaskRuntime): void
  /** The task reached a terminal status (in memory; durable after the next flush). */
  terminal(rt: TaskRuntime): void
  /**
   * A running node's lease ran out or its holder went silent: before it is declared lost, what is
   * queued for it is applied (expiry.ts). `complete`: its complete artifact of this attempt (the
   * node finishes from it); 'check': look again. Without this hook the expiry applies at once.
   */
  judge?(rt: TaskRuntime, ord: number, epoch: number): Promise<'check' | { complete: ArtifactDoc }>
  /** A node's first TASK_START of an attempt was decided (e.g. to check a worker serves its type). */
  started?(rt: TaskRuntime, ord: number, epoch: number): void
  /** Whether accepted runs of this type hold every slot its live workers announced. */
  saturated?(type: string): boolean
  /** Who claimed this attempt in the store (`worker#instance`: it took the START); null: nobody. */
  claimed?(rt: TaskRuntime, ord: number, epoch: number): Promise<string | null>
  /** Claims an attempt for no worker, so a copy of its START is not run (a hand-back, a withdraw): true when the claim is made. */
  fence?(rt: TaskRuntime, ord: number, epoch: number): Promise<boolean>
  /** Whether a cancelled, unaccepted attempt of this type may be withdrawn (fenced and ended at once: accept.ts). */
  withdrawable?(type: string): boolean
  /** A copy of an unaccepted START for a worker of its type with a free slot (steer.ts); null: none. */
  steer?(rt: TaskRuntime, ord: number, now: number): { command: PendingCommand; worker: string } | null
}

/** Timer entry ordinal of a task's deadline (node entries use the node's ordinal). */
const TASK_DEADLINE = -1

export class Engine {
  readonly tasks = new Map<string, TaskRuntime>()
  readonly #config: CoordinatorConfig
  readonly #clock: Clock
  readonly #log: Logger
  readonly #limits: Limits
  readonly #timers: TimerHeap
  readonly #hooks: EngineHooks
  /** What the accept-timeout decisions use (accept.ts). */
  readonly #accept: AcceptDeps
  /** What a node's timer uses (node-timer.ts). */
  readonly #due: TimerDeps
  /** Until when inherited running nodes are left alone (recovery grace); 0 when not recovering. */
  graceEnd = 0
  /** Until when no accepted running node is judged lost: a lease after this coordinator was cut off (hearing.ts). */
  hearingEnd = 0

  constructor(config: CoordinatorConfig, clock: Clock, log: Logger, limits: Limits, timers: TimerHeap, hooks: EngineHooks) {
    this.#config = config
    this.#clock = clock
    this.#log = log
    this.#limits = limits
    this.#timers = timers
    this.#hooks = hooks
    const check: AcceptDeps['check'] = (rt, ord, ask, failed, then) => this.#check(rt, ord, ask, failed, then)
    this.#accept = { config, clock, log, hooks, apply: (rt, ord, ev) => this.apply(rt, ord, ev), yieldConsumers: (rt, ord) => this.#yieldConsumers(rt, ord), check }
    this.#due = { ...this.#accept, graceEnd: () => this.graceEnd, hearingEnd: () => this.hearingEnd, tryDispatch: (rt, ord) => this.tryDispatch(rt, ord) }
  }

  policy(rt: TaskRuntime, ord: number): RetryPolicy {
    return rt.spec(ord).retry_policy ?? { max: this.#config.defaultRetryMax, backoff_sec: this.#config.defaultBackoffSec, permanent_on: [] }
  }

  // ------------------------------------------------------------------ applying events

  /** Applies one node event; false when it changed nothing. `label` goes to the journal; `at`: the time (one reading per bus batch). */
  apply(rt: TaskRuntime, ord: number, ev: NodeEvent, label?: string, at?: number): boolean {
    const node = rt.node(ord)
    const now = at ?? this.#clock.now()
    const res = transition(node, ev, {
      now,
      policy: this.policy(rt, ord),
      isFn: rt.isFn(ord),
      cancelRequested: cancelPending(rt),
      cancelGraceMs: this.#config.cancelGraceSec * 1000,
      leaseTtlMs: this.#config.leaseTtlSec * 1000,
    })
    if (res === null) return false
    const next = res.node
    rt.setNode(ord, next)
    rt.updatedAt = now
    rt.events.push(label ?? `${ev.kind} ${next.node_id}@${next.attempt_epoch}`)
    const wasBusy = node.status === 'running' || node.status === 'cancelling'
    const isBusy = next.status === 'running' || next.status === 'cancelling'
    if (!rt.isFn(ord)) this.#limits.accepting(acceptedHolder(node, wasBusy), acceptedHolder(next, isBusy), now)
    if (wasBusy && !isBusy && !rt.isFn(ord) && node.attempt_epoch > 0) {
      this.#limits.give(rt.spec(ord).type)
      this.drainWaiters()
    }
    for (const e of res.effects) this.#effect(rt, ord, next, e)
    this.armNode(rt, ord)
    this.#hooks.dirty(rt)
    return true
  }

  #effect(rt: TaskRuntime, ord: number, node: NodeState, e: Effect): void {
    switch (e.kind) {
      case 'start':
        rt.commands.push(startCommand(this.#config, rt, ord, node.attempt_epoch, e.resend, this.#clock.now()))
        if (e.resend === 0) this.#hooks.started?.(rt, ord, node.attempt_epoch)
        return
      case 'run_fn':
        rt.fnRuns.push(ord)
        return
      case 'cancel':
        rt.commands.push(...cancelCommands(this.#config, rt, ord, node.attempt_epoch, e.reason, e.holder, e.deadline, e.cmd, this.#clock.now()))
        if (e.holder === null && e.cmd && node.accepted_at_ms === null) withdrawUnaccepted(this.#accept, rt, ord, node.attempt_epoch, () => this.tasks.get(rt.id) === rt)
        return
      case 'metrics_row': {
        let m = rt.batches.get(ord)
        if (m === undefined) {
          m = new Map()
          rt.batches.set(ord, m)
        }
        m.set(e.uid, { epoch: node.attempt_epoch, metrics: e.metrics })
        // Handed over: the metrics of an applied event never change (a store in this process keeps them as they are).
        rt.metricsRows.push(handOver({ task_id: rt.id, node_id: node.node_id, batch_uid: e.uid, attempt_epoch: node.attempt_epoch, metrics: e.metrics }))
        return
      }
      case 'output':
        if (rt.status === 'running') this.evaluate(rt, rt.reeval[ord] as number[])
        return
      case 'terminal':
        this.#releaseHeld(rt, node.node_id)
        this.#afterTerminal(rt, ord, node)
        return
      case 'accepted': {
        this.#releaseHeld(rt, node.node_id)
        // Accepted while the upstream it waits for is held by a limit: it gives its slot now.
        const p = this.#limits.limited ? heldUpstream(rt, ord, (o) => this.#limits.isWaiting(rt.id, o)) : null
        if (p !== null && this.#limits.wouldFree(rt.spec(ord).type, rt.spec(p).type)) this.apply(rt, ord, { kind: 'yield', upstream: rt.spec(p).node_id })
        return
      }
      case 'requeued':
        holdYielded(rt, ord)
        if (rt.status === 'running') this.evaluate(rt, [ord])
        return
      case 'log': {
        const fields = { task_id: rt.id, node_id: node.node_id, attempt_epoch: node.attempt_epoch, ...e.fields }
        this.#log[e.level](e.event, fields)
        return
      }
    }
  }

  /** Nodes held for `upstream` (yielded consumers) are looked at again: it runs or ended. */
  #releaseHeld(rt: TaskRuntime, upstream: string): void {
    const set = rt.held.get(upstream)
    if (set === undefined) return
    rt.held.delete(upstream)
    if (rt.status === 'running') this.evaluate(rt, [...set])
  }

  /**
   * `ord` cannot run (no worker accepted its START in time, or a limit is reached): the running
   * consumers that wait for its data may hold the very slot it needs (a deadlock). They yield —
   * cancelled and queued again (no retry used) until it runs; `useful` picks the ones whose slot
   * would help (yield.ts).
   */
  #yieldConsumers(rt: TaskRuntime, ord: number, useful: (type: string) => boolean = () => true): void {
    const upstream = rt.spec(ord).node_id
    for (const c of waitingConsumers(rt, ord)) if (useful(rt.spec(c).type)) this.apply(rt, c, { kind: 'yield', upstream })
  }

  #afterTerminal(rt: TaskRuntime, ord: number, node: NodeState): void {
    // Pulling consumers learn from the task document that an upstream ended without output.
    if (node.status !== 'finished' && rt.open > 0 && rt.pulled.has(ord)) rt.urgentSnapshot = true
    if (node.status === 'failed' && rt.status !== 'cancelling' && (rt.spec(ord).routing?.on_failure.length ?? 0) === 0) {
      this.cancel(rt, `node ${node.node_id} failed: ${node.last_error?.reason_code ?? 'failed'}`, 'failed')
      return
    }
    if (rt.status === 'running') this.evaluate(rt, rt.reeval[ord] as number[])
    this.maybeComplete(rt)
  }

  // ------------------------------------------------------------------ scheduling

  /** First scheduling of a task (and after recovery): marks it running and evaluates every node. */
  startTask(rt: TaskRuntime): void {
    if (rt.terminal) return
    if (rt.deadlineAt !== null) this.#timers.push({ at: rt.deadlineAt, taskId: rt.id, ord: TASK_DEADLINE })
    if (rt.status === 'queued') {
      rt.change({ status: 'running' })
      rt.events.push('task running')
      this.#hooks.dirty(rt)
    }
    if (rt.status === 'running') this.evaluate(rt, rt.specs.map((_, i) => i))
    this.maybeComplete(rt)
  }

  /** Re-evaluates queued candidates: starts the ready ones, skips the ones that can never run. */
  evaluate(rt: TaskRuntime, candidates: readonly number[]): void {
    for (const ord of candidates) {
      if (rt.status !== 'running') return
      if (rt.node(ord).status !== 'queued') continue
      const r = rt.readiness(ord)
      if (r.kind === 'wait') {
        holdYielded(rt, ord)
        continue
      }
      if (r.kind === 'skip') this.apply(rt, ord, { kind: 'skip', reason: r.reason })
      else this.tryDispatch(rt, ord)
    }
  }

  /** Dispatches a ready (queued) or due (deferred) node, or queues it behind the limits. */
  tryDispatch(rt: TaskRuntime, ord: number): void {
    // A cancel was requested (cancel-request.ts): nothing more starts while it waits to apply.
    if (rt.cancelled) return
    // Its deadline has passed (its timer not yet run: the events a restarted coordinator applies
    // first end nodes, which makes others ready): it ends now, nothing more starts.
    if (rt.deadlineAt !== null && rt.deadlineAt <= this.#clock.now()) {
      this.#deadlineExceeded(rt)
      return
    }
    const type = rt.spec(ord).type
    const worker = !rt.isFn(ord)
    if (worker && this.#limits.limited && !this.#limits.canRun(type)) {
      this.#limits.wait(rt.id, ord, type)
      this.#log.debug('node.waiting_capacity', { task_id: rt.id, node_id: rt.spec(ord).node_id, type })
      this.#yieldConsumers(rt, ord, (t) => this.#limits.wouldFree(t, type))
      return
    }
    if (this.apply(rt, ord, { kind: 'dispatch' }) && worker) {
      rt.acceptAfter[ord] = 0
      rt.steerAt[ord] = 0
      this.#limits.take(type)
      this.#log.info('node.dispatched', { task_id: rt.id, node_id: rt.spec(ord).node_id, attempt_epoch: rt.node(ord).attempt_epoch, type })
    }
  }

  /**
   * Hands freed capacity to the oldest waiting nodes that may run now. A queued one is evaluated
   * again: what it waited for may have changed meanwhile (a guard that no longer holds skips it, a
   * yielded consumer whose upstream lost its worker is held for it again).
   */
  drainWaiters(): void {
    for (let w = this.#limits.next(); w !== null; w = this.#limits.next()) {
      const rt = this.tasks.get(w.taskId)
      if (rt === undefined || rt.status !== 'running') continue
      const node = rt.node(w.ord)
      if (node.status === 'queued') this.evaluate(rt, [w.ord])
      else if (node.status === 'deferred' && (node.next_retry_at_ms ?? 0) <= this.#clock.now()) this.tryDispatch(rt, w.ord)
    }
  }

  maybeComplete(rt: TaskRuntime): void {
    if (rt.terminal || rt.open > 0) return
    let status: 'finished' | 'failed' | 'cancelled' = 'finished'
    if (rt.status === 'cancelling') status = rt.error !== null ? 'failed' : 'cancelled'
    else if (rt.specs.some((s, i) => rt.node(i).status === 'failed' && (s.routing?.on_failure.length ?? 0) === 0)) status = 'failed'
    // A cancel requested (not applied yet) whose nodes ended cancelled (their workers read it).
    else if (rt.cancelled && rt.nodes.some((n) => n.status === 'cancelled')) status = 'cancelled'
    rt.change({ status, result: taskResult(rt), finished_at_ms: this.#clock.now() })
    rt.events.push(`task ${status}`)
    this.#hooks.dirty(rt)
    this.#hooks.terminal(rt)
  }

  /** Cancels what is left: queued/deferred nodes cancelled, running ones `cancelling`; the task ends `outcome` once all are terminal. */
  cancel(rt: TaskRuntime, reasonIn: string, outcomeIn: 'cancelled' | 'failed'): void {
    if (rt.terminal) return
    // A cancel requested earlier (cancel-request.ts) is what ends the task, also when a deadline
    // or a failure comes while it waits to apply: its reason and outcome stand.
    const requested = cancelPending(rt)
    const reason = requested ? (rt.cancelReason ?? reasonIn) : reasonIn
    const outcome = requested ? 'cancelled' : outcomeIn
    if (rt.status !== 'cancelling') {
      rt.change({ status: 'cancelling', cancelled: true, cancel_reason: reason, ...(outcome === 'failed' ? { error: reason } : {}) })
      rt.events.push(`task cancelling: ${reason}`)
      this.#log.info('task.cancelling', { task_id: rt.id, reason, outcome })
      this.#hooks.dirty(rt)
    }
    for (let i = 0; i < rt.specs.length; i++) {
      if (!isTerminal(rt.node(i).status)) this.apply(rt, i, { kind: 'cancel', reason })
    }
    this.maybeComplete(rt)
  }

  // ------------------------------------------------------------------ timers

  armNode(rt: TaskRuntime, ord: number): void {
    const due = dueAt(this.#config, this.#clock, rt, ord, this.graceEnd, this.hearingEnd)
    if (due === null) return
    if ((rt.armedAt[ord] as number) <= due) return
    rt.armedAt[ord] = due
    this.#timers.push({ at: due, taskId: rt.id, ord })
  }

  /** The task's deadline has passed: its nodes are cancelled and it ends failed. */
  #deadlineExceeded(rt: TaskRuntime): void {
    if (rt.terminal || rt.status === 'cancelling' || rt.deadlineAt === null) return
    this.#log.warn('task.deadline_exceeded', { task_id: rt.id, deadline_at_ms: rt.deadlineAt })
    this.cancel(rt, `deadline exceeded: the task did not end within ${(rt.deadlineAt - rt.createdAt) / 1000} s`, 'failed')
  }

  /** Handles due timer entries: each node's state decides what, if anything, is due. */
  onTimers(due: readonly TimerEntry[]): void {
    const now = this.#clock.now()
    for (const e of due) {
      const rt = this.tasks.get(e.taskId)
      if (rt !== undefined && e.ord >= 0 && rt.armedAt[e.ord] === e.at) rt.armedAt[e.ord] = Number.POSITIVE_INFINITY
      if (rt === undefined || rt.terminal) continue
      if (e.ord === TASK_DEADLINE) {
        if (rt.deadlineAt !== null && rt.deadlineAt <= now) this.#deadlineExceeded(rt)
        continue
      }
      if (e.ord < 0) continue
      nodeDue(this.#due, rt, e.ord, now)
      this.armNode(rt, e.ord)
    }
  }

  /** An asynchronous check of a running attempt (no timer meanwhile); `then` if it still runs, then re-armed. */
  #check<T>(rt: TaskRuntime, ord: number, ask: Promise<T>, failed: T, then: (answer: T) => void): void {
    const epoch = rt.node(ord).attempt_epoch
    rt.judging[ord] = 1
    const settle = (answer: T): void => {
      rt.judging[ord] = 0
      if (this.tasks.get(rt.id) !== rt) return
      // (A node that moved on meanwhile — handed back, dispatched again — got no timer while judged.)
      if (rt.node(ord).status === 'running' && rt.node(ord).attempt_epoch === epoch) then(answer)
      this.armNode(rt, ord)
    }
    ask.then(settle, () => settle(failed))
  }

  // ------------------------------------------------------------------ commands

  /** After a restart: the commands a loaded node's state implies, sent again (commands.ts). */
  reissue(rt: TaskRuntime, ord: number): void {
    if (reissueCommands(this.#config, rt, ord, this.#clock.now())) this.#hooks.dirty(rt)
  }

  /** Tells a worker that accepted a replaced attempt to give it up (a CANCEL signal). */
  cancelStale(rt: TaskRuntime, ord: number, epoch: number, workerId: string): void {
    staleCancel(this.#config, rt, ord, epoch, workerId, this.#clock.now())
    this.#hooks.dirty(rt)
  }
}
