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
 * The events, effects and context are declared in transition-types.ts; the outcomes several rules
 * share (`failure`: deferred for a retry or failed; `handBack`; `cancelled`) and the metrics sums
 * are in transition-outcomes.ts. The rules themselves are all here, in `transition` below.
 *
 * | event               | from                     | to                     | effects                                |
 * |---------------------|--------------------------|------------------------|----------------------------------------|
 * | dispatch            | queued, deferred         | running (epoch + 1)    | start (worker) or run_fn               |
 * | skip                | queued                   | skipped                | terminal                               |
 * | lease (accepted/hb) | running, cancelling      | same, lease moved on   | recovered (if it was suspected)        |
 * | batch_ok            | running                  | running, stats += Δ    | metrics_row, output (first output), recovered (if suspected) |
 * | batch_ok            | finished (recovered)     | finished, stats += Δ   | metrics_row                            |
 * | batch_ok            | running + done pending   | finished               | metrics_row, terminal                  |
 * | batch_failed        | running                  | running, last_error    | recovered (if suspected)               |
 * | done                | running                  | finished               | metrics_row, terminal                  |
 * | done (batches left) | running                  | running, done_pending  |                                        |
 * | done                | finished (recovered)     | finished, stats += Δ, no longer `recovered` | metrics_row       |
 * | done / failed / cancelled | cancelling         | cancelled              | terminal                               |
 * | failed (transient)  | running                  | deferred (retry at)    | retry_timer (+ cancel_holder on lease) |
 * | failed (permanent, exhausted, permanent_on) | queued, running, deferred | failed | terminal              |
 * | worker cancelled    | running                  | as a transient failure `cancelled_by_worker`                    |
 * | worker cancelled `worker_stopping` | running   | deferred (due now), hand-back: no retry used | cancel_timer   |
 * | lease (accepted)    | cancelling, no holder    | same, holder known     | cancel signal to the holder            |
 * | lease (accepted)    | running, other holder    | unchanged              | cancel signal to the second worker     |
 * | accept_timeout (4th, or 2nd claimed) | running (not accepted) | deferred (due now), hand-back `not_accepted`; a claim's holder told to give it up |
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
 * | withdrawn           | cancelling (not accepted) | cancelled (a timeout: retried) | terminal                        |
 * | lease_expired       | cancelling (held lease)  | as at the cancel deadline (the holder is gone)                  |
 * | recovered_complete  | running                  | finished (+ finalize metrics the artifact carries) | metrics_row, terminal |
 * | adopt               | running                  | running, lease of the live run |                                |
 * | fn_done             | running                  | finished, stats merged | terminal                               |
 * | fn_done             | cancelling               | cancelled (its reason) | terminal                               |
 * | fn_failed           | like failed                                                                                |
 * | stats_patch         | any                      | same, stats merged     |                                        |
 */
import type { NodeState } from '../model/state.ts'
import { FINAL_UID } from '../protocol/messages.ts'
import { RECOVERED_COMPLETE, cancelled, failure, handBack, lostAttempt, metricOverflow, overflowed, sumDelta, timeoutError } from './transition-outcomes.ts'
import { type Effect, type NodeEvent, type TransitionContext, type TransitionResult, WORKER_RESTARTED, WORKER_STOPPING, isTerminal, logEffect as log } from './transition-types.ts'

export type { Effect, NodeEvent, TransitionContext, TransitionResult } from './transition-types.ts'
export { WORKER_STOPPING, isTerminal } from './transition-types.ts'
export { retryDelayMs, sumDelta } from './transition-outcomes.ts'

/** Resends of an unaccepted start before a new attempt is made. */
export const MAX_RESENDS = 3

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
      if (ev.kind === 'lease' && ev.accepted && isTerminal(s)) {
        // A worker took up this attempt after it ended (its START waited in a queue while the node
        // was cancelled, say): it is told to stop, so no work runs for nothing.
        return {
          node: { ...node },
          effects: [
            log('info', 'node.stale_run', { worker_id: ev.workerId, why: s }),
            { kind: 'cancel', reason: `attempt ${s}`, holder: ev.workerId, deadline: now + ctx.cancelGraceMs, cmd: false },
          ],
        }
      }
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
        effects.push({ kind: 'cancel', reason: node.cancel_reason ?? 'cancelled', holder: ev.workerId, deadline: now + ctx.cancelGraceMs, cmd: false })
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
      // A finished node takes the reports of its run only when it was finished from its complete
      // artifact (they come late); after its TASK_DONE, a BATCH_OK is not one of its run's.
      if (s !== 'running' && !(s === 'finished' && node.end_reason === RECOVERED_COMPLETE)) return null
      if (ev.duplicate) return null
      const stats = sumDelta(node.stats, ev.metrics, ev.prev, ev.ledger && { uid: ev.uid, ledger: ev.ledger })
      const over = overflowed(stats, ev.metrics)
      if (over !== null) return metricOverflow(node, over, ev.uid, ctx)
      let next: NodeState = { ...node, stats, has_output: true }
      const effects: Effect[] = [{ kind: 'metrics_row', uid: ev.uid, metrics: ev.metrics }]
      if (s === 'finished') return { node: next, effects }
      next.last_event_at_ms = now
      next.batches_seen = (node.batches_seen ?? 0) + 1
      next.suspected = false
      if (node.suspected === true) effects.push(log('info', 'node.recovered'))
      effects.push(log('debug', 'node.batch_ok', { batch_uid: ev.uid }))
      if (!node.has_output) effects.push({ kind: 'output' })
      const pending = node.done_pending
      if (pending && (next.batches_seen ?? 0) >= pending.batches) {
        const final = sumDelta(next.stats, pending.metrics, null)
        const overFinal = overflowed(final, pending.metrics)
        if (overFinal !== null) return metricOverflow(node, overFinal, pending.final_uid, ctx)
        next = { ...next, status: 'finished', stats: final, finished_at_ms: now, done_pending: null }
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
          suspected: false,
        },
        effects: [
          ...(node.suspected === true ? [log('info', 'node.recovered')] : []),
          log('warn', 'node.batch_failed', { batch_uid: ev.uid, reason_code: ev.reasonCode, permanent: ev.permanent }),
        ],
      }
    case 'done': {
      if (s === 'cancelling') return cancelled(node, 'finished while cancelling', ctx)
      if (s === 'finished') {
        // Finished without this report (recovered from its complete artifact): keep its metrics,
        // once (a node finished by its TASK_DONE, or recovered and then reported, takes no other).
        if (ev.prev !== null || node.end_reason !== RECOVERED_COMPLETE) return null
        const recovered = sumDelta(node.stats, ev.metrics, null)
        const overRecovered = overflowed(recovered, ev.metrics)
        if (overRecovered !== null) return metricOverflow(node, overRecovered, ev.finalUid, ctx)
        return { node: { ...node, stats: recovered, end_reason: null }, effects: [{ kind: 'metrics_row', uid: ev.finalUid, metrics: ev.metrics }] }
      }
      if (s !== 'running') return null
      if (ev.batches !== undefined && (node.batches_seen ?? 0) < ev.batches) {
        // Some batch reports are still on their way: finish when the last one is applied.
        return {
          node: { ...node, done_pending: { batches: ev.batches, metrics: ev.metrics, final_uid: ev.finalUid }, last_event_at_ms: now },
          effects: [log('info', 'node.done_pending', { batches: ev.batches, seen: node.batches_seen ?? 0 })],
        }
      }
      const stats = sumDelta(node.stats, ev.metrics, ev.prev, ev.ledger && { uid: ev.finalUid, ledger: ev.ledger })
      const over = overflowed(stats, ev.metrics)
      if (over !== null) return metricOverflow(node, over, ev.finalUid, ctx)
      return {
        node: {
          ...node,
          status: 'finished',
          stats,
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
      if (s === 'cancelling') return cancelled(node, 'failed while cancelling', ctx)
      if (isTerminal(s)) return null
      if (!ev.permanent && s !== 'running') return null
      return failure(node, ev.reasonCode, ev.error, ev.permanent, ctx, false)
    }
    case 'worker_cancelled':
      if (s === 'cancelling') return cancelled(node, ev.reason || 'cancelled', ctx)
      if (s !== 'running') return null
      // The task's cancel is requested (a worker read it from the task): the run is cancelled.
      if (ctx.cancelRequested === true) return cancelled(node, ev.reason || 'cancelled', ctx)
      // A worker stopping for a deploy gives the run back: run again at once, no retry used.
      if (ev.reason === WORKER_STOPPING) return handBack(node, WORKER_STOPPING, now)
      // Its worker died with it and was started again (same id): given back, but counted.
      if (ev.reason === WORKER_RESTARTED) return lostAttempt(node, WORKER_RESTARTED, ctx)
      // A worker gave the run up on its own (e.g. shutting down): a transient failure.
      return failure(node, 'cancelled_by_worker', ev.reason, false, ctx, false)
    case 'lease_expired': {
      if (s === 'cancelling') {
        // Its holder stopped heartbeating (dead, or cut off as at any lease expiry): the cancel
        // ends now, as at its deadline, instead of waiting out cancelGraceSec + leaseTtlSec with
        // the node's slot held (a yielded consumer's slot is what its upstream waits for).
        const r = cancelled(node, 'lease expired while cancelling', ctx)
        r.effects.unshift(log('warn', 'node.lease_expired', { worker_id: node.lease.worker_id ?? null }))
        return r
      }
      if (s !== 'running') return null
      const deadline = node.lease.deadline_ts_ms
      const r = failure(node, 'lease_expired', `no heartbeat before the lease deadline${typeof deadline === 'number' && Number.isFinite(deadline) ? ` ${new Date(deadline).toISOString()}` : ''}`, false, ctx, true)
      r.effects.unshift(log('warn', 'node.lease_expired', { worker_id: node.lease.worker_id ?? null }))
      return r
    }
    case 'timeout': {
      if (s !== 'running') return null
      const holder = node.lease.worker_id ?? null
      if (ctx.isFn) {
        const r = failure(node, 'timeout', timeoutError(ev.limitSec), false, ctx, true)
        r.effects.unshift(log('warn', 'node.timeout', { timeout_sec: ev.limitSec, worker_id: holder }))
        return r
      }
      // Cancelled on its worker; it fails (and its retry may start) once the worker has stopped it
      // or the cancel deadline passed: until then it keeps its slot (a retry started at once ran
      // next to it, past the concurrency limits).
      return {
        node: { ...node, status: 'cancelling', timed_out: ev.limitSec, cancel_reason: 'timeout', cancel_deadline_ms: now + ctx.cancelGraceMs + ctx.leaseTtlMs },
        effects: [
          log('warn', 'node.timeout', { timeout_sec: ev.limitSec, worker_id: holder }),
          { kind: 'cancel', reason: 'timeout', holder, deadline: now + ctx.cancelGraceMs, cmd: true },
        ],
      }
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
      // Known to be claimed and still silent a timeout after the first (a live holder reports at
      // once, and retries a failed report for 30 s): its holder died, no need to wait longer.
      if (resends > MAX_RESENDS || (ev.claimed === true && resends > 1)) {
        // Claimed, its holder silent: lost with it (counted); never taken: given back.
        const r = ev.claimed === true ? lostAttempt(node, 'not_accepted', ctx) : handBack(node, 'not_accepted', now)
        // Its holder may be alive, its reports late (status partitions moving between coordinators):
        // told to give the attempt up, so that it does not run next to the next one.
        // (Before the end of the node, when it failed: lost too often.)
        if (ev.holder) r.effects.splice(r.node.status === 'failed' ? r.effects.length - 1 : r.effects.length, 0, { kind: 'cancel', reason: 'not_accepted', holder: ev.holder, deadline: now + ctx.cancelGraceMs, cmd: false })
        return r
      }
      return { node: { ...node, resends }, effects: [{ kind: 'start', resend: resends }, log('warn', 'node.start_resent', { resends })] }
    }
    case 'cancel': {
      if (s === 'queued' || s === 'deferred') {
        return {
          node: { ...node, status: 'cancelled', end_reason: ev.reason, finished_at_ms: now, next_retry_at_ms: null },
          effects: [log('info', 'node.cancelled', { reason: ev.reason }), { kind: 'terminal' }],
        }
      }
      // A cancel of a node already being stopped (yield, timeout): it ends cancelled, not requeued or retried.
      if (s === 'cancelling' && (node.held_for || node.timed_out != null)) return { node: { ...node, held_for: null, timed_out: null, cancel_reason: ev.reason }, effects: [] }
      if (s !== 'running') return null
      const deadline = now + ctx.cancelGraceMs + ctx.leaseTtlMs
      const effects: Effect[] = [log('info', 'node.cancelling', { reason: ev.reason })]
      if (!ctx.isFn) effects.push({ kind: 'cancel', reason: ev.reason, holder: node.lease.worker_id ?? null, deadline: now + ctx.cancelGraceMs, cmd: true })
      return { node: { ...node, status: 'cancelling', cancel_reason: ev.reason, cancel_deadline_ms: deadline }, effects }
    }
    case 'yield': {
      if (s !== 'running' || ctx.isFn || node.accepted_at_ms === null) return null
      const holder = node.lease.worker_id ?? null
      const reason = `yield: ${ev.upstream} waits for a worker slot`
      return {
        node: { ...node, status: 'cancelling', held_for: ev.upstream, cancel_reason: reason, cancel_deadline_ms: now + ctx.cancelGraceMs + ctx.leaseTtlMs },
        effects: [
          log('warn', 'node.yielded', { upstream: ev.upstream, worker_id: holder }),
          { kind: 'cancel', reason, holder, deadline: now + ctx.cancelGraceMs, cmd: true },
        ],
      }
    }
    case 'cancel_deadline':
      if (s !== 'cancelling') return null
      return cancelled(node, 'cancel grace expired', ctx)
    case 'withdrawn':
      // Nobody will run the START: the cancel needs no worker's confirmation.
      if (s !== 'cancelling' || node.accepted_at_ms !== null || node.held_for) return null
      return cancelled(node, node.cancel_reason ?? 'cancelled', ctx)
    case 'recovered_complete':
      if (s !== 'running') return null
      return {
        node: {
          ...node,
          status: 'finished',
          end_reason: RECOVERED_COMPLETE,
          ...(ev.final === null ? {} : { stats: sumDelta(node.stats, ev.final, ev.prev) }),
          has_output: true,
          finished_at_ms: now,
          last_event_at_ms: now,
          done_pending: null,
        },
        effects: [...(ev.final === null ? [] : [{ kind: 'metrics_row' as const, uid: FINAL_UID, metrics: ev.final }]), log('info', 'node.recovered_complete'), { kind: 'terminal' }],
      }
    case 'fn_done':
      // Cancelled while it ran: its result is dropped (fn-runner.ts), so it ends with the cancel's
      // reason, as the task's other nodes do (also when the runner left it behind, never returned).
      if (s === 'cancelling') return cancelled(node, node.cancel_reason ?? 'cancelled', ctx)
      if (s !== 'running') return null
      return {
        node: { ...node, status: 'finished', stats: { ...node.stats, ...ev.stats }, has_output: true, finished_at_ms: now, last_event_at_ms: now },
        effects: [log('info', 'node.done'), { kind: 'terminal' }],
      }
    case 'stats_patch':
      return { node: { ...node, stats: { ...node.stats, ...ev.stats } }, effects: [] }
  }
}
