/**
 * What a node's timer does when it fires (Engine.onTimers): the state of the node decides — a
 * deferred node due for its retry is dispatched, a cancelling node past its deadline or whose
 * holder went silent ends, a running node past its execution timeout fails, an unaccepted start is
 * looked at (accept.ts), an accepted one whose lease ran out or whose heartbeats stopped is judged
 * (what is queued for it applied first, through the `judge` hook) and declared lost, or suspected.
 */
import { type AcceptDeps, acceptDue } from './accept.ts'
import { cancellingLeaseLost, lostEvent, timeoutAt } from './node-due.ts'
import { recoveredComplete } from './recovered.ts'
import type { TaskRuntime } from './runtime.ts'

/** What the timer uses of the engine besides the accept decisions'. */
export interface TimerDeps extends AcceptDeps {
  /** Until when inherited running nodes are left alone (recovery grace); 0 when not recovering. */
  graceEnd(): number
  /** Until when no accepted running node is judged lost (hearing.ts). */
  hearingEnd(): number
  tryDispatch(rt: TaskRuntime, ord: number): void
}

/** Looks at node `ord` of `rt`, whose timer fired at `now` (the caller arms it again after). */
export function nodeDue(d: TimerDeps, rt: TaskRuntime, ord: number, now: number): void {
  const n = rt.node(ord)
  if (n.status === 'deferred') {
    if ((n.next_retry_at_ms ?? 0) <= now && rt.status === 'running') d.tryDispatch(rt, ord)
    return
  }
  if (n.status === 'cancelling') {
    if ((n.cancel_deadline_ms ?? Number.POSITIVE_INFINITY) <= now) d.apply(rt, ord, { kind: 'cancel_deadline' })
    else if (cancellingLeaseLost(n, now) && !(rt.inherited.has(ord) && now < d.graceEnd())) d.apply(rt, ord, { kind: 'lease_expired' })
    return
  }
  if (n.status !== 'running') return
  const limit = timeoutAt(rt, ord)
  if (limit !== null && limit <= now) {
    d.apply(rt, ord, { kind: 'timeout', limitSec: rt.spec(ord).timeout_sec as number })
    return
  }
  if (rt.isFn(ord)) return
  if (rt.inherited.has(ord) && now < d.graceEnd()) return
  if (rt.judging[ord] === 1) return
  if (n.accepted_at_ms === null) {
    acceptDue(d, rt, ord, now)
    return
  }
  if (now < d.hearingEnd()) return
  const lost = lostEvent(d.config, n, now)
  if (lost !== null) {
    const judge = d.hooks.judge
    if (judge === undefined) d.apply(rt, ord, lost)
    else {
      d.check(rt, ord, judge(rt, ord, n.attempt_epoch), 'check', (verdict) => {
        const at = d.clock.now() // (cut off meanwhile, while the judge waited for the backlog: not judged)
        const still = verdict !== 'check' ? recoveredComplete(rt, ord, verdict.complete) : at < d.hearingEnd() ? null : lostEvent(d.config, rt.node(ord), at)
        if (still !== null) d.apply(rt, ord, still)
      })
    }
    return
  }
  const last = n.last_event_at_ms ?? n.accepted_at_ms ?? now
  if (last + d.config.heartbeatSoftSec * 1000 <= now) d.apply(rt, ord, { kind: 'suspect' })
}
