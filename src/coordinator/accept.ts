/**
 * A dispatched node whose START no worker has accepted yet, at its accept timeout: the START is
 * resent (same epoch), or the attempt handed back (a new one, no retry used) — unless it is merely
 * queued behind busy workers, and sooner when a worker is known to have taken it and gone silent.
 * Before that, and between, it may be steered to a worker of its type with a free slot; with none
 * free, the nodes that wait for its data give their slots up (yield) then.
 *
 * A claimed attempt is judged as a lost lease is before it is handed back (the judge applies
 * what is queued for it and looks for its complete artifact): its holder may have run it to the
 * end while its reports wait in status partitions moving between coordinators. Handed back, its
 * holder is told to give it up (a CANCEL signal), so a live one does not run next to the next attempt.
 */
import type { CoordinatorConfig } from '../config.ts'
import type { Logger } from '../log.ts'
import type { Clock } from '../ports/clock.ts'
import type { ArtifactDoc } from '../ports/store.ts'
import { parseClaimHolder } from '../ports/store-rules.ts'
import type { EngineHooks } from './engine.ts'
import { acceptDueAt, acceptStepMs, steerDueAt } from './node-due.ts'
import { recoveredComplete } from './recovered.ts'
import type { TaskRuntime } from './runtime.ts'
import type { NodeEvent } from './transitions.ts'

/** What an accept timeout learnt of the attempt: its claim's holder, and the judge's verdict. */
interface Claim {
  holder: string | null
  verdict: 'check' | { complete: ArtifactDoc }
}
const UNCLAIMED: Claim = { holder: null, verdict: 'check' }

/** The worker id of a claim's holder; null for none or the hand-back fence. */
function holderWorker(holder: string | null): string | null {
  return holder === null ? null : (parseClaimHolder(holder)?.workerId ?? null)
}

/** What the decision uses of the engine. */
export interface AcceptDeps {
  config: CoordinatorConfig
  clock: Clock
  log: Logger
  hooks: Pick<EngineHooks, 'saturated' | 'claimed' | 'judge' | 'fence' | 'withdrawable' | 'steer' | 'dirty'>
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
  const timedOut = (holder: string | null): void => {
    const claimed = holder !== null
    d.log.warn('node.not_accepted', { task_id: rt.id, node_id: n.node_id, attempt_epoch: n.attempt_epoch, type, waited_ms: now - (n.dispatched_at_ms ?? now), claimed })
    // The next timeout a whole step after this one, however late this one came (after a busy
    // spell the schedule from the dispatch is long past: its steps would all fall due at once).
    const cur = rt.node(ord)
    rt.acceptAfter[ord] = d.clock.now() + acceptStepMs(d.config, (cur.resends ?? 0) + 1, cur.handbacks ?? 0)
    if (!d.apply(rt, ord, { kind: 'accept_timeout', claimed, holder: holderWorker(holder) })) return
    d.yieldConsumers(rt, ord)
    // Handed back with nobody holding it: a copy of its START that arrives later must not run.
    if (!claimed && (rt.node(ord).handbacks ?? 0) > (cur.handbacks ?? 0)) void d.hooks.fence?.(rt, ord, cur.attempt_epoch)
  }
  // Whether a worker took the START (its claim): asked before deciding, as a lost lease is; a
  // claimed attempt about to be handed back (its second timeout) is judged first.
  const claimed = d.hooks.claimed
  if (claimed === undefined) {
    timedOut(null)
    return
  }
  const epoch = n.attempt_epoch
  const judge = d.hooks.judge
  const ask = claimed(rt, ord, epoch).then(async (holder): Promise<Claim> => {
    if (holder === null || judge === undefined || (n.resends ?? 0) < 1) return { holder, verdict: 'check' }
    return { holder, verdict: await judge(rt, ord, epoch) }
  })
  d.check(rt, ord, ask, UNCLAIMED, (c) => {
    if (rt.node(ord).accepted_at_ms !== null) return
    if (c.verdict === 'check') timedOut(c.holder)
    else d.apply(rt, ord, recoveredComplete(rt, ord, c.verdict.complete))
  })
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

/**
 * A cancel (or timeout) of an attempt no worker has accepted. Its START may wait behind a busy
 * worker — in a partition paused while that worker's slots are full, its TASK_CANCEL behind it —
 * and would run when a slot frees, however long after the cancel; or wait for a worker of its type
 * when none is live (it ended at the cancel deadline and the lease after it: 75 s by default).
 * So the attempt is claimed for
 * nobody in the store (the fence of a hand-back): a flowkit worker then drops that START
 * (`worker.attempt_held_elsewhere`), and the node ends at once (`withdrawn`). Not when a live
 * worker of its type makes no claims (a Python worker: it waits for that worker's confirmation,
 * or the cancel deadline, as before), nor while a slot of its type is free (the START is taken
 * up at once: its handler sees the cancel), nor when a worker claimed the attempt first (it runs:
 * its acceptance brings it the CANCEL signal: the fence's claim fails). `withdrawable` (wiring)
 * decides the first two.
 */
export function withdrawUnaccepted(d: AcceptDeps, rt: TaskRuntime, ord: number, epoch: number, owned: () => boolean): void {
  const fence = d.hooks.fence
  if (fence === undefined || rt.isFn(ord) || d.hooks.withdrawable?.(rt.spec(ord).type) !== true) return
  fence(rt, ord, epoch).then(
    (fenced) => {
      const n = rt.node(ord)
      if (!fenced || !owned() || n.attempt_epoch !== epoch) return
      if (d.apply(rt, ord, { kind: 'withdrawn' })) d.log.info('node.withdrawn', { task_id: rt.id, node_id: n.node_id, attempt_epoch: epoch })
    },
    () => undefined,
  )
}
