/**
 * When a node needs looking at, from its state alone (pure functions of the engine's timers):
 * the time its timer is armed for (`dueAt`), the resend schedule of an unaccepted start, the
 * node's execution timeout, and the loss (hard heartbeat limit, lease expiry) its state shows.
 */
import type { CoordinatorConfig } from '../config.ts'
import type { NodeState } from '../model/state.ts'
import type { Clock } from '../ports/clock.ts'
import type { TaskRuntime } from './runtime.ts'
import type { NodeEvent } from './transitions.ts'

/** Longest wait between two accept timeouts of one start. */
export const MAX_RESEND_STEP_MS = 600_000

/**
 * The wait before the (i+1)th accept timeout of an attempt: the accept timeout, doubled at each
 * resend and at each hand-back the node had before (an attempt handed back because its worker's
 * acceptance came too late — an overloaded store or bus — is followed by one given twice as long,
 * so the waits outgrow the delay instead of handing every attempt back in turn).
 */
export function acceptStepMs(config: CoordinatorConfig, i: number, handbacks: number): number {
  return Math.min(config.acceptTimeoutSec * 1000 * 2 ** (i + handbacks), MAX_RESEND_STEP_MS)
}

/** Time after dispatch at which an unaccepted start is sent again for the (n+1)th time. */
export function resendDelayMs(config: CoordinatorConfig, resends: number, handbacks = 0): number {
  let total = 0
  for (let i = 0; i <= resends; i++) total += acceptStepMs(config, i, handbacks)
  return total
}

/** When an unaccepted start is next due for a resend (null: not dispatched). */
export function acceptDueAt(config: CoordinatorConfig, rt: TaskRuntime, ord: number): number | null {
  const n = rt.node(ord)
  if (n.dispatched_at_ms === null) return null
  return Math.max(n.dispatched_at_ms + resendDelayMs(config, n.resends ?? 0, n.handbacks ?? 0), rt.acceptAfter[ord] as number)
}

/** When an unaccepted start is next looked at for steering (null: steering off, or not dispatched). */
export function steerDueAt(config: CoordinatorConfig, rt: TaskRuntime, ord: number): number | null {
  const n = rt.node(ord)
  if (config.steerAfterSec <= 0 || n.dispatched_at_ms === null) return null
  return Math.max(n.dispatched_at_ms + config.steerAfterSec * 1000, rt.steerAt[ord] as number)
}

/** When a running attempt passes its node's `timeout_sec` (from acceptance; a function: its start). */
export function timeoutAt(rt: TaskRuntime, ord: number): number | null {
  const sec = rt.spec(ord).timeout_sec
  const n = rt.node(ord)
  // A coordinator function counts from when it began to run (the functions of a task run one at a time).
  const started = rt.isFn(ord) ? rt.fnStartedAt.get(ord) : undefined
  const from = rt.isFn(ord) ? (started !== undefined && started.epoch === n.attempt_epoch ? started.at : null) : n.accepted_at_ms
  return sec === undefined || from === null ? null : from + sec * 1000
}

/** The loss a running, accepted node's state shows at `now` (null when its holder is fine). */
export function lostEvent(config: CoordinatorConfig, n: NodeState, now: number): NodeEvent | null {
  const last = n.last_event_at_ms ?? n.accepted_at_ms ?? now
  if (last + config.heartbeatHardSec * 1000 <= now) return { kind: 'heartbeat_lost', silentMs: now - last }
  if (typeof n.lease_expires_at_ms === 'number' && n.lease_expires_at_ms < now) return { kind: 'lease_expired' }
  return null
}

/** A cancelling node whose holder has stopped renewing its lease (it ends as at its cancel deadline). */
export function cancellingLeaseLost(n: NodeState, now: number): boolean {
  return typeof n.lease_expires_at_ms === 'number' && n.lease_expires_at_ms < now
}

/**
 * When a node next needs looking at (the engine's timer for it), from its state alone; null when
 * never. `graceEnd`: until when inherited running nodes are left alone (recovery grace);
 * `hearingEnd`: until when no accepted running node is judged lost (the coordinator was cut off).
 */
export function dueAt(config: CoordinatorConfig, clock: Clock, rt: TaskRuntime, ord: number, graceEnd: number, hearingEnd = 0): number | null {
  const n = rt.node(ord)
  // (Not while the task's cancel is requested: nothing starts then, and the cancel ends it.)
  if (n.status === 'deferred') return rt.cancelled ? null : n.next_retry_at_ms
  if (n.status === 'cancelling') {
    const deadline = n.cancel_deadline_ms ?? null
    if (typeof n.lease_expires_at_ms !== 'number') return deadline
    const lease = rt.inherited.has(ord) && clock.now() < graceEnd ? graceEnd : n.lease_expires_at_ms + 1
    return deadline === null ? lease : Math.min(deadline, lease)
  }
  if (n.status !== 'running') return null
  const limit = timeoutAt(rt, ord)
  if (rt.isFn(ord)) return limit
  if (rt.judging[ord] === 1) return limit
  if (rt.inherited.has(ord) && clock.now() < graceEnd) return graceEnd
  if (n.accepted_at_ms === null) {
    const accept = acceptDueAt(config, rt, ord)
    const steer = steerDueAt(config, rt, ord)
    return accept === null ? steer : steer === null ? accept : Math.min(accept, steer)
  }
  const last = n.last_event_at_ms ?? n.accepted_at_ms
  let due = last + config.heartbeatHardSec * 1000
  if (n.suspected !== true) due = Math.min(due, last + config.heartbeatSoftSec * 1000)
  if (typeof n.lease_expires_at_ms === 'number') due = Math.min(due, n.lease_expires_at_ms + 1)
  if (due < hearingEnd) due = hearingEnd
  return limit === null ? due : Math.min(due, limit)
}
