/**
 * The node transition table: every rule that changes one node's state, as one pure function
 *
 *     transition(node, event, ctx) → { node, effects }   (or null: the event changes nothing)
 *
 * No I/O, no clock, no store: the caller (the task runtime) gives the time and the node's policy
 * in `ctx`, applies the returned state in memory and carries out the effects after the flush that
 * makes the new state durable. Epoch fencing is done by the caller before it gets here (an event
 * of another attempt never reaches this table).
 *
 * | event               | from                     | to                     | effects                                |
 * |---------------------|--------------------------|------------------------|----------------------------------------|
 * | dispatch            | queued, deferred         | running (epoch + 1)    | start (worker) or run_fn               |
 * | skip                | queued                   | skipped                | terminal                               |
 * | lease (accepted/hb) | running, cancelling      | same, lease moved on   | recovered (if it was suspected)        |
 * | batch_ok            | running                  | running, stats += Δ    | metrics_row, output (first output)     |
 * | batch_ok            | finished (overtaken)     | finished, stats += Δ   | metrics_row                            |
 * | batch_ok            | running + done pending   | finished               | metrics_row, terminal                  |
 * | batch_failed        | running                  | running, last_error    |                                        |
 * | done                | running                  | finished               | metrics_row, terminal                  |
 * | done (batches left) | running                  | running, done_pending  |                                        |
 * | done                | finished (recovered)     | finished, stats += Δ   | metrics_row                            |
 * | done / failed / cancelled | cancelling         | cancelled              | terminal                               |
 * | failed (transient)  | running                  | deferred (retry at)    | retry_timer (+ cancel_holder on lease) |
 * | failed (permanent, exhausted, permanent_on) | queued, running, deferred | failed | terminal              |
 * | worker cancelled    | running                  | as a transient failure `cancelled_by_worker`                    |
 * | worker cancelled `worker_stopping` | running   | deferred (due now), hand-back: no retry used | cancel_timer   |
 * | lease (accepted)    | cancelling, no holder    | same, holder known     | cancel signal to the holder            |
 * | lease (accepted)    | running, other holder    | unchanged              | cancel signal to the second worker     |
 * | accept_timeout (4th)| running (not accepted)   | deferred (due now), hand-back `not_accepted`                    |
 * | yield               | running (accepted)       | cancelling, held for an upstream | cancel (cmd + signal)        |
 * | cancelled (held)    | cancelling               | queued (hand-back), waits for the upstream | requeued           |
 * | cancel              | cancelling (held)        | cancelling, no longer requeued |                                 |
 * | lease_expired / heartbeat_lost | running       | as a transient failure, the holder is told to give up           |
 * | timeout (timeout_sec) | running                | as a transient failure `timeout`, the holder is told to give up |
 * | suspect             | running                  | running, suspected     |                                        |
 * | accept_timeout      | running (not accepted)   | running, resends + 1   | start (same epoch)                     |
 * | cancel              | queued, deferred         | cancelled              | terminal                               |
 * | cancel              | running                  | cancelling (deadline)  | cancel (cmd + signal), cancel_timer    |
 * | cancel_deadline     | cancelling               | cancelled              | terminal                               |
 * | recovered_complete  | running                  | finished               | terminal                               |
 * | adopt               | running                  | running, lease of the live run |                                |
 * | fn_done             | running                  | finished, stats merged | terminal                               |
 * | fn_done             | cancelling               | cancelled              | terminal                               |
 * | fn_failed           | like failed                                                                                |
 * | stats_patch         | any                      | same, stats merged     |                                        |
 */
import type { RetryPolicy } from '../graph/types.ts'
import type { NodeError, NodeState, NodeStatus } from '../model/state.ts'
import { WORKER_STOPPING_REASON } from '../protocol/messages.ts'

export type NodeEvent =
  | { kind: 'dispatch' }
  | { kind: 'skip'; reason: string }
  | { kind: 'lease'; accepted: boolean; workerId: string; leaseId: string; deadline: number; expiresAt: number }
  | { kind: 'batch_ok'; uid: string; metrics: Record<string, unknown>; prev: Record<string, unknown> | null; duplicate: boolean }
  | { kind: 'batch_failed'; uid: string; reasonCode: string; error: string | null; permanent: boolean }
  | { kind: 'done'; metrics: Record<string, unknown>; finalUid: string; batches?: number; prev: Record<string, unknown> | null }
  | { kind: 'failed'; reasonCode: string; error: string | null; permanent: boolean }
  | { kind: 'worker_cancelled'; reason: string }
  | { kind: 'lease_expired' }
  /** The attempt ran longer than the node's `timeout_sec`. */
  | { kind: 'timeout'; limitSec: number }
  | { kind: 'heartbeat_lost'; silentMs: number }
  | { kind: 'suspect' }
  | { kind: 'accept_timeout' }
  /** A streaming consumer gives its worker slot up so that `upstream`'s retry can run. */
  | { kind: 'yield'; upstream: string }
  | { kind: 'cancel'; reason: string }
  | { kind: 'cancel_deadline' }
  | { kind: 'recovered_complete' }
  | { kind: 'adopt'; workerId: string; leaseId: string; deadline: number; expiresAt: number }
  | { kind: 'fn_done'; stats: Record<string, unknown> }
  | { kind: 'fn_failed'; reasonCode: string; error: string; permanent: boolean }
  | { kind: 'stats_patch'; stats: Record<string, unknown> }

export type Effect =
  /** Send the node's TASK_START (resend: same epoch, counted in `resends`). */
  | { kind: 'start'; resend: number }
  /** Run the coordinator function of the node. */
  | { kind: 'run_fn' }
  /** Send TASK_CANCEL to the role and a CANCEL signal to the lease holder (if any). */
  | { kind: 'cancel'; reason: string; holder: string | null; deadline: number; cmd: boolean }
  /** Write the metrics row of a batch (or of the final report). */
  | { kind: 'metrics_row'; uid: string; metrics: Record<string, unknown> }
  /** The node produced its first output: first-batch children may start. */
  | { kind: 'output' }
  /** The node reached a terminal status: children and the task's completion are re-evaluated. */
  | { kind: 'terminal' }
  /** A worker accepted the node (nodes held for it may start again). */
  | { kind: 'accepted' }
  /** A yielded node is queued again (hand-back, not a failure). */
  | { kind: 'requeued' }
  /** A structured log record (stable event name). */
  | { kind: 'log'; level: 'debug' | 'info' | 'warn' | 'error'; event: string; fields?: Record<string, unknown> }

export interface TransitionContext {
  now: number
  policy: RetryPolicy
  /** Is the node a coordinator function (no worker, no lease)? */
  isFn: boolean
  cancelGraceMs: number
  leaseTtlMs: number
  /** Random source in [0, 1) for the retry jitter (injectable for tests). */
  random?: () => number
}

/**
 * The delay before the next attempt after attempt `n` (1-based, hand-backs not counted) failed:
 * `backoff_sec * backoff_factor^(n-1)`, capped at `backoff_max_sec`, spread by ±`jitter`.
 */
export function retryDelayMs(policy: RetryPolicy, n: number, random: () => number): number {
  const base = policy.backoff_sec * (policy.backoff_factor ?? 1) ** Math.max(0, n - 1)
  const capped = Math.min(base, policy.backoff_max_sec ?? Number.POSITIVE_INFINITY)
  const jitter = policy.jitter ?? 0
  const spread = jitter > 0 ? capped * jitter * (2 * random() - 1) : 0
  return Math.max(0, Math.round((capped + spread) * 1000))
}

export interface TransitionResult {
  node: NodeState
  effects: Effect[]
}

const TERMINAL: ReadonlySet<NodeStatus> = new Set(['finished', 'failed', 'cancelled', 'skipped'])

export function isTerminal(status: NodeStatus): boolean {
  return TERMINAL.has(status)
}

/** Numbers of `next` replace the batch's previous contribution `prev`; other keys are kept once. */
export function sumDelta(stats: Record<string, unknown>, next: Record<string, unknown>, prev: Record<string, unknown> | null): Record<string, unknown> {
  const out = { ...stats }
  for (const k of Object.keys(next)) addKey(out, k, next[k], prev?.[k])
  if (prev !== null) for (const k of Object.keys(prev)) if (!(k in next)) addKey(out, k, undefined, prev[k])
  return out
}

function addKey(out: Record<string, unknown>, k: string, n: unknown, p: unknown): void {
  if (typeof n === 'number' || typeof p === 'number') {
    const cur = typeof out[k] === 'number' ? (out[k] as number) : 0
    out[k] = cur + (typeof n === 'number' ? n : 0) - (typeof p === 'number' ? p : 0)
  } else if (n !== undefined && !(k in out)) {
    out[k] = n
  }
}

const log = (level: 'debug' | 'info' | 'warn' | 'error', event: string, fields?: Record<string, unknown>): Effect =>
  fields === undefined ? { kind: 'log', level, event } : { kind: 'log', level, event, fields }

/** Applies one event to one node. Null when the event changes nothing in this state. */
export function transition(node: NodeState, ev: NodeEvent, ctx: TransitionContext): TransitionResult | null {
  const s = node.status
  const now = ctx.now
  switch (ev.kind) {
    case 'dispatch': {
      if (s !== 'queued' && s !== 'deferred') return null
      const next: NodeState = {
        ...node,
        status: 'running',
        attempt_epoch: node.attempt_epoch + 1,
        lease: {},
        dispatched_at_ms: now,
        accepted_at_ms: null,
        next_retry_at_ms: null,
        last_event_at_ms: now,
        resends: 0,
        batches_seen: 0,
        done_pending: null,
        suspected: false,
        lease_expires_at_ms: null,
        held_for: null,
      }
      const effects: Effect[] = [ctx.isFn ? { kind: 'run_fn' } : { kind: 'start', resend: 0 }]
      if (s === 'deferred') effects.push(log('info', 'node.retried', { failures: node.failures }))
      return { node: next, effects }
    }
    case 'skip':
      if (s !== 'queued') return null
      return {
        node: { ...node, status: 'skipped', end_reason: ev.reason, finished_at_ms: now },
        effects: [log('info', 'node.skipped', { reason: ev.reason }), { kind: 'terminal' }],
      }
    case 'lease':
    case 'adopt': {
      if (s !== 'running' && s !== 'cancelling') return null
      if (ev.kind === 'adopt' && s !== 'running') return null
      const holder = node.lease.worker_id ?? null
      if (ev.kind === 'lease' && holder !== null && holder !== ev.workerId) {
        // A second worker runs the same attempt (a command delivered twice across a rebalance):
        // the first holder keeps it, the second is told to give it up.
        return {
          node: { ...node },
          effects: [
            log('warn', 'node.duplicate_holder', { worker_id: ev.workerId, holder }),
            { kind: 'cancel', reason: 'duplicate_holder', holder: ev.workerId, deadline: now + ctx.cancelGraceMs, cmd: false },
          ],
        }
      }
      const old = node.lease.deadline_ts_ms ?? 0
      const next: NodeState = {
        ...node,
        lease: { worker_id: ev.workerId, lease_id: ev.leaseId, deadline_ts_ms: Math.max(old, ev.deadline) },
        lease_expires_at_ms: Math.max(node.lease_expires_at_ms ?? 0, ev.expiresAt),
        last_event_at_ms: now,
        suspected: false,
      }
      const effects: Effect[] = []
      if (s === 'cancelling' && holder === null) {
        // The cancel was decided before anyone held the node: the holder learns it now (its command
        // topic may be paused at capacity, the signal topic never is).
        effects.push({ kind: 'cancel', reason: 'cancelled', holder: ev.workerId, deadline: now + ctx.cancelGraceMs, cmd: false })
      }
      if (ev.kind === 'lease' && ev.accepted && node.accepted_at_ms === null) {
        next.accepted_at_ms = now
        effects.push(log('info', 'node.accepted', { worker_id: ev.workerId, lease_id: ev.leaseId }), { kind: 'accepted' })
      } else if (ev.kind === 'adopt') {
        if (next.accepted_at_ms === null) next.accepted_at_ms = now
        effects.push(log('info', 'node.adopted', { worker_id: ev.workerId }))
      }
      if (node.suspected === true) effects.push(log('info', 'node.recovered'))
      return { node: next, effects }
    }
    case 'batch_ok': {
      if (s !== 'running' && s !== 'finished') return null
      if (ev.duplicate) return null
      let next: NodeState = {
        ...node,
        stats: sumDelta(node.stats, ev.metrics, ev.prev),
        has_output: true,
      }
      const effects: Effect[] = [{ kind: 'metrics_row', uid: ev.uid, metrics: ev.metrics }]
      if (s === 'finished') return { node: next, effects }
      next.last_event_at_ms = now
      next.batches_seen = (node.batches_seen ?? 0) + 1
      next.suspected = false
      effects.push(log('debug', 'node.batch_ok', { batch_uid: ev.uid }))
      if (!node.has_output) effects.push({ kind: 'output' })
      const pending = node.done_pending
      if (pending && (next.batches_seen ?? 0) >= pending.batches) {
        next = { ...next, status: 'finished', stats: sumDelta(next.stats, pending.metrics, null), finished_at_ms: now, done_pending: null }
        effects.push({ kind: 'metrics_row', uid: pending.final_uid, metrics: pending.metrics }, log('info', 'node.done'), { kind: 'terminal' })
      }
      return { node: next, effects }
    }
    case 'batch_failed':
      if (s !== 'running') return null
      return {
        node: {
          ...node,
          last_error: { reason_code: ev.reasonCode, error: ev.error, permanent: ev.permanent, at_ms: now, attempt_epoch: node.attempt_epoch },
          last_event_at_ms: now,
        },
        effects: [log('warn', 'node.batch_failed', { batch_uid: ev.uid, reason_code: ev.reasonCode, permanent: ev.permanent })],
      }
    case 'done': {
      if (s === 'cancelling') return cancelled(node, 'finished while cancelling', now)
      if (s === 'finished') {
        // Finished without this report (recovered from its complete artifact): keep its metrics.
        if (ev.prev !== null) return null
        return { node: { ...node, stats: sumDelta(node.stats, ev.metrics, null) }, effects: [{ kind: 'metrics_row', uid: ev.finalUid, metrics: ev.metrics }] }
      }
      if (s !== 'running') return null
      if (ev.batches !== undefined && (node.batches_seen ?? 0) < ev.batches) {
        // Some batch reports are still on their way: finish when the last one is applied.
        return {
          node: { ...node, done_pending: { batches: ev.batches, metrics: ev.metrics, final_uid: ev.finalUid }, last_event_at_ms: now },
          effects: [log('info', 'node.done_pending', { batches: ev.batches, seen: node.batches_seen ?? 0 })],
        }
      }
      return {
        node: {
          ...node,
          status: 'finished',
          stats: sumDelta(node.stats, ev.metrics, ev.prev),
          has_output: true,
          finished_at_ms: now,
          last_event_at_ms: now,
          done_pending: null,
        },
        effects: [{ kind: 'metrics_row', uid: ev.finalUid, metrics: ev.metrics }, log('info', 'node.done'), { kind: 'terminal' }],
      }
    }
    case 'failed':
    case 'fn_failed': {
      if (s === 'cancelling') return cancelled(node, 'failed while cancelling', now)
      if (TERMINAL.has(s)) return null
      if (!ev.permanent && s !== 'running') return null
      return failure(node, ev.reasonCode, ev.error, ev.permanent, ctx, false)
    }
    case 'worker_cancelled':
      if (s === 'cancelling') return cancelled(node, ev.reason || 'cancelled', now)
      if (s !== 'running') return null
      // A worker stopping for a deploy gives the run back: run again at once, no retry used.
      if (ev.reason === WORKER_STOPPING) return handBack(node, WORKER_STOPPING, now)
      // A worker gave the run up on its own (e.g. shutting down): a transient failure.
      return failure(node, 'cancelled_by_worker', ev.reason, false, ctx, false)
    case 'lease_expired': {
      if (s !== 'running') return null
      const r = failure(node, 'lease_expired', `no heartbeat since lease deadline ${node.lease.deadline_ts_ms ?? '?'}`, false, ctx, true)
      r.effects.unshift(log('warn', 'node.lease_expired', { worker_id: node.lease.worker_id ?? null }))
      return r
    }
    case 'timeout': {
      if (s !== 'running') return null
      const r = failure(node, 'timeout', `no result within timeout_sec ${ev.limitSec} s`, false, ctx, true)
      r.effects.unshift(log('warn', 'node.timeout', { timeout_sec: ev.limitSec, worker_id: node.lease.worker_id ?? null }))
      return r
    }
    case 'heartbeat_lost': {
      if (s !== 'running') return null
      const r = failure(node, 'heartbeat_lost', `no status for ${ev.silentMs} ms (hard limit)`, false, ctx, true)
      r.effects.unshift(log('warn', 'node.heartbeat_lost', { worker_id: node.lease.worker_id ?? null, silent_ms: ev.silentMs }))
      return r
    }
    case 'suspect':
      if (s !== 'running' || node.suspected === true) return null
      return { node: { ...node, suspected: true }, effects: [log('warn', 'node.suspected', { worker_id: node.lease.worker_id ?? null })] }
    case 'accept_timeout': {
      if (s !== 'running' || node.accepted_at_ms !== null || ctx.isFn) return null
      const resends = (node.resends ?? 0) + 1
      // Sent four times and never accepted: a worker may have taken it and died before accepting
      // (the attempt is claimed, nobody else may run it). A new attempt, without using a retry.
      if (resends > MAX_RESENDS) return handBack(node, 'not_accepted', now)
      return { node: { ...node, resends }, effects: [{ kind: 'start', resend: resends }, log('warn', 'node.start_resent', { resends })] }
    }
    case 'cancel': {
      if (s === 'queued' || s === 'deferred') {
        return {
          node: { ...node, status: 'cancelled', end_reason: ev.reason, finished_at_ms: now, next_retry_at_ms: null },
          effects: [log('info', 'node.cancelled', { reason: ev.reason }), { kind: 'terminal' }],
        }
      }
      if (s === 'cancelling' && node.held_for) return { node: { ...node, held_for: null }, effects: [] }
      if (s !== 'running') return null
      const deadline = now + ctx.cancelGraceMs + ctx.leaseTtlMs
      const effects: Effect[] = [log('info', 'node.cancelling', { reason: ev.reason })]
      if (!ctx.isFn) effects.push({ kind: 'cancel', reason: ev.reason, holder: node.lease.worker_id ?? null, deadline: now + ctx.cancelGraceMs, cmd: true })
      return { node: { ...node, status: 'cancelling', cancel_deadline_ms: deadline }, effects }
    }
    case 'yield': {
      if (s !== 'running' || ctx.isFn || node.accepted_at_ms === null) return null
      const holder = node.lease.worker_id ?? null
      return {
        node: { ...node, status: 'cancelling', held_for: ev.upstream, cancel_deadline_ms: now + ctx.cancelGraceMs + ctx.leaseTtlMs },
        effects: [
          log('warn', 'node.yielded', { upstream: ev.upstream, worker_id: holder }),
          { kind: 'cancel', reason: `yield: ${ev.upstream} waits for a worker slot`, holder, deadline: now + ctx.cancelGraceMs, cmd: true },
        ],
      }
    }
    case 'cancel_deadline':
      if (s !== 'cancelling') return null
      return cancelled(node, 'cancel grace expired', now)
    case 'recovered_complete':
      if (s !== 'running') return null
      return {
        node: { ...node, status: 'finished', has_output: true, finished_at_ms: now, last_event_at_ms: now, done_pending: null },
        effects: [log('info', 'node.recovered_complete'), { kind: 'terminal' }],
      }
    case 'fn_done':
      if (s === 'cancelling') return cancelled(node, 'finished while cancelling', now)
      if (s !== 'running') return null
      return {
        node: { ...node, status: 'finished', stats: { ...node.stats, ...ev.stats }, has_output: true, finished_at_ms: now, last_event_at_ms: now },
        effects: [log('info', 'node.done'), { kind: 'terminal' }],
      }
    case 'stats_patch':
      return { node: { ...node, stats: { ...node.stats, ...ev.stats } }, effects: [] }
  }
}

/** Reason a stopping worker gives for the runs it hands back (not a failure). */
export const WORKER_STOPPING = WORKER_STOPPING_REASON
/** Resends of an unaccepted start before a new attempt is made. */
export const MAX_RESENDS = 3

function cancelled(node: NodeState, reason: string, now: number): TransitionResult {
  if (node.held_for) {
    // A yielded consumer: queued again, it starts once its upstream runs (or ends).
    return {
      node: { ...node, status: 'queued', lease: {}, cancel_deadline_ms: null, accepted_at_ms: null, lease_expires_at_ms: null, handbacks: (node.handbacks ?? 0) + 1, last_event_at_ms: now },
      effects: [log('info', 'node.requeued', { upstream: node.held_for }), { kind: 'requeued' }],
    }
  }
  return {
    node: { ...node, status: 'cancelled', end_reason: reason, finished_at_ms: now, cancel_deadline_ms: null },
    effects: [log('info', 'node.cancelled', { reason }), { kind: 'terminal' }],
  }
}

/**
 * A failed attempt: deferred for a retry after the backoff, or failed for good when the failure
 * is permanent, its reason is in `permanent_on`, or the attempts are used up.
 */
function failure(node: NodeState, reasonCode: string, errorIn: string | null, permanentIn: boolean, ctx: TransitionContext, leaseLost: boolean): TransitionResult {
  const now = ctx.now
  let permanent = permanentIn || ctx.policy.permanent_on.includes(reasonCode)
  let reason = reasonCode
  let error = errorIn
  if (!permanent && node.attempt_epoch - (node.handbacks ?? 0) >= ctx.policy.max) {
    permanent = true
    reason = 'retries_exhausted'
    error = `${reasonCode}${errorIn ? `: ${errorIn}` : ''} (attempt ${node.attempt_epoch - (node.handbacks ?? 0)} of ${ctx.policy.max})`
  }
  const last_error: NodeError = { reason_code: reason, error, permanent, at_ms: now, attempt_epoch: node.attempt_epoch }
  const effects: Effect[] = []
  if (leaseLost && node.lease.worker_id) {
    // The old holder may still be alive (partitioned, hung): tell it to give the run up.
    effects.push({ kind: 'cancel', reason: reasonCode, holder: node.lease.worker_id, deadline: now + ctx.cancelGraceMs, cmd: true })
  }
  if (!permanent) {
    const at = now + retryDelayMs(ctx.policy, node.attempt_epoch - (node.handbacks ?? 0), ctx.random ?? Math.random)
    effects.push(log('warn', 'node.deferred', { reason_code: reasonCode, retry_at_ms: at }))
    return {
      node: { ...node, status: 'deferred', next_retry_at_ms: at, last_error, failures: node.failures + 1, lease: {}, last_event_at_ms: now, lease_expires_at_ms: null },
      effects,
    }
  }
  effects.push(log('error', 'node.failed', { reason_code: reason, error }), { kind: 'terminal' })
  return {
    node: { ...node, status: 'failed', last_error, failures: node.failures + 1, finished_at_ms: now, next_retry_at_ms: null, last_event_at_ms: now, lease_expires_at_ms: null },
    effects,
  }
}

/** An attempt given back without failing: due again at once, the retry budget untouched. */
function handBack(node: NodeState, reason: string, now: number): TransitionResult {
  return {
    node: { ...node, status: 'deferred', next_retry_at_ms: now, lease: {}, last_event_at_ms: now, lease_expires_at_ms: null, handbacks: (node.handbacks ?? 0) + 1 },
    effects: [log(reason === WORKER_STOPPING ? 'info' : 'warn', 'node.handed_back', { reason, worker_id: node.lease.worker_id ?? null })],
  }
}
