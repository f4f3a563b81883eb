/**
 * A dispatched node whose START no worker has accepted yet, at its accept timeout: the START is
 * resent (same epoch), or the attempt handed back (a new one, no retry used) — unless it is merely
 * queued behind busy workers, and sooner when a worker is known to have taken it and gone silent.
 * Before that, and between, it may be steered to a worker of its type with a free slot; with none
 * free, the nodes that wait for its data give their slots up (yield) then.
 */
import type { CoordinatorConfig } from '../config.ts'
import type { Logger } from '../log.ts'
import type { Clock } from '../ports/clock.ts'
import type { EngineHooks } from './engine.ts'
import { acceptDueAt, acceptStepMs, steerDueAt } from './node-due.ts'
import type { TaskRuntime } from './runtime.ts'
import type { NodeEvent } from './transitions.ts'

/** What the decision uses of the engine. */
export interface AcceptDeps {
  config: CoordinatorConfig
  clock: Clock
  log: Logger
  hooks: Pick<EngineHooks, 'saturated' | 'claimed' | 'fence' | 'steer' | 'dirty'>
  apply(rt: TaskRuntime, ord: number, ev: NodeEvent): boolean
  /** The running consumers that wait for this node's data give their slots up (engine). */
  yieldConsumers(rt: TaskRuntime, ord: number): void
  /** An asynchronous check of the attempt, then `then` if it is still running (engine). */
  check<T>(rt: TaskRuntime, ord: number, ask: Promise<T>, failed: T, then: (answer: T) => void): void
}

/** Looks at an unaccepted running node whose timer fired at `now`. */
export function acceptDue(d: AcceptDeps, rt: TaskRuntime, ord: number, now: number): void {
  const n = rt.node(ord)
  const steerAt = steerDueAt(d.config, rt, ord)
  if (steerAt !== null && steerAt <= now) steer(d, rt, ord, now)
  const due = acceptDueAt(d.config, rt, ord)
  if (due === null || due > now) return
  const type = rt.spec(ord).type
  if (d.hooks.saturated?.(type) === true) {
    // Accepted runs of its type hold every slot its live workers announced: the start waits in a
    // queue, as expected, not lost. Looked at again a timeout later; its consumers still yield.
    rt.acceptAfter[ord] = now + d.config.acceptTimeoutSec * 1000
    d.log.debug('node.start_queued', { task_id: rt.id, node_id: n.node_id, attempt_epoch: n.attempt_epoch, type })
    d.yieldConsumers(rt, ord)
    return
  }
  const timedOut = (claimed: boolean): void => {
    d.log.warn('node.not_accepted', { task_id: rt.id, node_id: n.node_id, attempt_epoch: n.attempt_epoch, type, waited_ms: now - (n.dispatched_at_ms ?? now), claimed })
    // The next timeout a whole step after this one, however late this one came (after a busy
    // spell the schedule from the dispatch is long past: its steps would all fall due at once).
    const cur = rt.node(ord)
    rt.acceptAfter[ord] = d.clock.now() + acceptStepMs(d.config, (cur.resends ?? 0) + 1, cur.handbacks ?? 0)
    if (!d.apply(rt, ord, { kind: 'accept_timeout', claimed })) return
    d.yieldConsumers(rt, ord)
    // Handed back with nobody holding it: a copy of its START that arrives later must not run.
    if (!claimed && (rt.node(ord).handbacks ?? 0) > (cur.handbacks ?? 0)) d.hooks.fence?.(rt, ord, cur.attempt_epoch)
  }
  // Whether a worker took the START (its claim): asked before deciding, as a lost lease is.
  const claimed = d.hooks.claimed
  if (claimed === undefined) timedOut(false)
  else d.check(rt, ord, claimed(rt, ord, n.attempt_epoch), false, (held) => rt.node(ord).accepted_at_ms === null && timedOut(held))
}

/**
 * Still unaccepted `steerAfterSec` after its dispatch (and every `steerAfterSec` after that): the
 * START may wait behind a busy worker while another of its type has a free slot. A copy goes to
 * that worker by name (steer.ts); the attempt's claim keeps it to one of them.
 */
function steer(d: AcceptDeps, rt: TaskRuntime, ord: number, now: number): void {
  rt.steerAt[ord] = now + d.config.steerAfterSec * 1000
  const s = d.hooks.steer?.(rt, ord, now) ?? null
  if (s === null) {
    // No worker of its type has a free slot: the nodes that wait for its data may hold them (a
    // streaming consumer started on its parent's first batch, on the only worker). They yield
    // now, not at the accept timeout: a 3-node streaming graph on one slot took two of those (60 s).
    if (d.hooks.saturated?.(rt.spec(ord).type) === true) d.yieldConsumers(rt, ord)
    return
  }
  const n = rt.node(ord)
  rt.commands.push(s.command)
  rt.events.push(`steer ${n.node_id}@${n.attempt_epoch} to ${s.worker}`)
  d.log.info('node.steered', { task_id: rt.id, node_id: n.node_id, attempt_epoch: n.attempt_epoch, type: rt.spec(ord).type, worker_id: s.worker, waited_ms: now - (n.dispatched_at_ms ?? now) })
  d.hooks.dirty(rt)
}
