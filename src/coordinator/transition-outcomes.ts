/**
 * Outcomes that several rules of the node transition table (transitions.ts) end in, and the
 * arithmetic they use: a failed attempt retried after a backoff or failed for good (`failure`,
 * `retryDelayMs`), an attempt given back without using a retry (`handBack`), the end of a cancel
 * (`cancelled`: cancelled, or queued again when the node yielded), and batch metrics summed
 * exactly across retries and duplicates (`sumDelta`). Pure, like the table.
 */
import type { RetryPolicy } from '../graph/types.ts'
import type { NodeError, NodeState } from '../model/state.ts'
import { type Contributions, type Effect, type TransitionContext, type TransitionResult, WORKER_STOPPING, logEffect as log } from './transition-types.ts'
import { MAX_ERROR_CHARS, clip } from '../util/text.ts'

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

/**
 * Largest ledger summed again for a replaced contribution: a retried stream of n batches costs n
 * sums of its ledger (a longer one keeps the running sum, exact for integers below 2^53).
 */
const RESUM_MAX = 2048

/**
 * Numbers of `next` replace the batch's previous contribution `prev`; other keys are kept once.
 * A replaced contribution (`replacing`: the batch's uid and the node's ledger before it) sums its
 * keys again over the ledger, in the order first applied, with `next` in the batch's place: the
 * same floating-point sum as a run that reported each batch once (`cur + next - prev` drifts:
 * 239.07999999999998 once, 239.08 after a retry).
 */
export function sumDelta(stats: Record<string, unknown>, next: Record<string, unknown>, prev: Record<string, unknown> | null, replacing?: { uid: string; ledger: Contributions }): Record<string, unknown> {
  const out = { ...stats }
  for (const k of Object.keys(next)) addKey(out, k, next[k], prev?.[k])
  if (prev !== null) for (const k of Object.keys(prev)) if (!(k in next)) addKey(out, k, undefined, prev[k])
  if (prev !== null && replacing !== undefined && replacing.ledger.size <= RESUM_MAX) {
    for (const k of Object.keys(next)) if (typeof next[k] === 'number' || typeof prev[k] === 'number') setKey(out, k, sumOver(replacing, next, k))
    for (const k of Object.keys(prev)) if (!(k in next) && typeof prev[k] === 'number') setKey(out, k, sumOver(replacing, next, k))
  }
  return out
}

function sumOver(r: { uid: string; ledger: Contributions }, next: Record<string, unknown>, k: string): number {
  let total = 0
  let placed = false
  for (const [uid, c] of r.ledger) {
    const v = uid === r.uid ? next[k] : c.metrics[k]
    if (uid === r.uid) placed = true
    if (typeof v === 'number') total += v
  }
  const own = next[k]
  return placed || typeof own !== 'number' ? total : total + own
}

/** The first key of `touched` whose stat in `stats` is a number but not a finite one (a sum that overflowed); null for none. */
export function overflowed(stats: Record<string, unknown>, touched: Record<string, unknown>): string | null {
  for (const k of Object.keys(touched)) {
    const v = stats[k]
    if (typeof v === 'number' && !Number.isFinite(v)) return k
  }
  return null
}

function addKey(out: Record<string, unknown>, k: string, n: unknown, p: unknown): void {
  if (typeof n === 'number' || typeof p === 'number') {
    const cur = typeof out[k] === 'number' ? (out[k] as number) : 0
    setKey(out, k, cur + (typeof n === 'number' ? n : 0) - (typeof p === 'number' ? p : 0))
  } else if (n !== undefined && !Object.hasOwn(out, k)) {
    setKey(out, k, n)
  }
}

/** A metric name is a worker's key: `__proto__` is defined as a key (assigning it would set the prototype). */
function setKey(out: Record<string, unknown>, k: string, v: unknown): void {
  if (k === '__proto__') Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true })
  else out[k] = v
}

/** The error of an attempt past its `timeout_sec`. */
export function timeoutError(limitSec: number): string {
  return `no result within timeout_sec ${limitSec} s`
}

/**
 * The `end_reason` of a node finished from its complete artifact (recovery found the run's
 * result stored before its TASK_DONE was applied): the reports of that run still count when they
 * come (BATCH_OK, then TASK_DONE once); after its TASK_DONE, or on a node its TASK_DONE finished,
 * they are not the run's and change nothing.
 */
export const RECOVERED_COMPLETE = 'recovered from its complete artifact'

/**
 * The end of a cancel: cancelled for good, queued again when the node had yielded, or the
 * attempt's failure when it was stopped for its timeout (a retry per its policy).
 */
export function cancelled(node: NodeState, reason: string, ctx: TransitionContext): TransitionResult {
  const now = ctx.now
  if (node.timed_out != null) {
    return failure({ ...node, timed_out: null, cancel_reason: null, cancel_deadline_ms: null }, 'timeout', timeoutError(node.timed_out), false, ctx, false)
  }
  if (node.held_for) {
    // A yielded consumer: queued again, it starts once its upstream runs (or ends).
    return {
      node: { ...node, status: 'queued', lease: {}, cancel_deadline_ms: null, cancel_reason: null, accepted_at_ms: null, lease_expires_at_ms: null, handbacks: (node.handbacks ?? 0) + 1, last_event_at_ms: now },
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
export function failure(node: NodeState, reasonCode: string, errorIn: string | null, permanentIn: boolean, ctx: TransitionContext, leaseLost: boolean): TransitionResult {
  const now = ctx.now
  let permanent = permanentIn || ctx.policy.permanent_on.includes(reasonCode)
  let reason = reasonCode
  let error = errorIn
  if (!permanent && node.attempt_epoch - (node.handbacks ?? 0) >= ctx.policy.max) {
    permanent = true
    reason = 'retries_exhausted'
    // At most MAX_ERROR_CHARS with the attempt count: the worker's text is cut further if needed.
    const count = ` (attempt ${node.attempt_epoch - (node.handbacks ?? 0)} of ${ctx.policy.max})`
    error = `${clip(`${reasonCode}${errorIn ? `: ${errorIn}` : ''}`, MAX_ERROR_CHARS - count.length)}${count}`
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

/**
 * An attempt lost with its worker before that worker reported its end (`why`: claimed and never
 * accepted, `not_accepted`; found by a restarted process with the worker's id, `worker_restarted`):
 * given back like `handBack`, the retry budget untouched, since a worker that died says nothing of
 * the node. But counted: once more attempts than `retry_policy.max` are lost so, the node fails
 * (`worker_lost`, permanent). A node whose input kills or hangs the worker running it (a crash in
 * native code, memory running out, a synchronous loop) would otherwise take worker after worker.
 */
export function lostAttempt(node: NodeState, why: string, ctx: TransitionContext): TransitionResult {
  const lost = (node.lost_attempts ?? 0) + 1
  if (lost <= ctx.policy.max) {
    const r = handBack(node, why, ctx.now)
    r.node.lost_attempts = lost
    return r
  }
  const error = `attempt ${node.attempt_epoch} ended with its worker before any report (${why}): ${lost} attempts of this node were lost so, more than retry_policy.max (${ctx.policy.max}); a run of this node may be crashing or hanging its worker`
  const r = failure(node, 'worker_lost', error, true, ctx, false)
  r.node.lost_attempts = lost
  return r
}

/**
 * A report whose metrics would make a stat of the node a number that is not finite (batches of
 * finite values whose sum overflows): not applied. A running node fails (`metric_overflow`,
 * permanent): its stats could no longer be shown, stored as JSON or summed again after a retry.
 */
export function metricOverflow(node: NodeState, key: string, uid: string, ctx: TransitionContext): TransitionResult {
  const error = `metric ${JSON.stringify(key)} of batch ${uid} makes the node's stat overflow (the sum of its batches is not a finite number)`
  if (node.status !== 'running') return { node: { ...node }, effects: [log('error', 'node.metric_overflow', { metric: key, batch_uid: uid })] }
  // Its worker, still running the attempt, is told to stop.
  const r = failure(node, 'metric_overflow', error, true, ctx, true)
  r.effects.unshift(log('error', 'node.metric_overflow', { metric: key, batch_uid: uid }))
  return r
}

/** An attempt given back without failing: due again at once, the retry budget untouched. */
export function handBack(node: NodeState, reason: string, now: number): TransitionResult {
  return {
    node: { ...node, status: 'deferred', next_retry_at_ms: now, lease: {}, last_event_at_ms: now, lease_expires_at_ms: null, handbacks: (node.handbacks ?? 0) + 1 },
    effects: [log(reason === WORKER_STOPPING ? 'info' : 'warn', 'node.handed_back', { reason, worker_id: node.lease.worker_id ?? null })],
  }
}
