/**
 * The transition table (src/coordinator/transitions.ts), one row per rule: from a node state and
 * an event, the state it moves to and the effects it asks for. Rows that must change nothing
 * expect `null`.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { type NodeEvent, type TransitionContext, transition } from '../../src/coordinator/transitions.ts'
import type { NodeState, NodeStatus } from '../../src/model/state.ts'
import { makeNodeState } from '../helpers/fixtures.ts'

const NOW = 1_000_000
const ctx = (over: Partial<TransitionContext> = {}): TransitionContext => ({
  now: NOW,
  policy: { max: 3, backoff_sec: 2, permanent_on: ['bad_input'] },
  isFn: false,
  cancelGraceMs: 100,
  leaseTtlMs: 1000,
  ...over,
})
const node = (status: NodeStatus, over: Partial<NodeState> = {}): NodeState =>
  makeNodeState('n', 'step', { status, attempt_epoch: status === 'queued' ? 0 : 1, ...over })

interface Row {
  rule: string
  from: NodeState
  event: NodeEvent
  ctx?: Partial<TransitionContext>
  /** Expected fields of the new state (null: no change). */
  to: Partial<NodeState> | null
  /** Effect kinds expected, in order (log effects left out). */
  effects?: string[]
  /** Events of the log effects expected among them. */
  logs?: string[]
}

const lease = { kind: 'lease', accepted: true, workerId: 'w1', leaseId: 'l1', deadline: NOW + 5000, expiresAt: NOW + 5000 } as const

const rows: Row[] = [
  { rule: 'dispatch: queued → running at epoch + 1, START sent', from: node('queued'), event: { kind: 'dispatch' }, to: { status: 'running', attempt_epoch: 1, dispatched_at_ms: NOW }, effects: ['start'] },
  { rule: 'dispatch: deferred → running at epoch + 1 (retry)', from: node('deferred', { attempt_epoch: 1 }), event: { kind: 'dispatch' }, to: { status: 'running', attempt_epoch: 2 }, effects: ['start'] },
  { rule: 'dispatch of a coordinator function runs it instead of sending', from: node('queued'), event: { kind: 'dispatch' }, ctx: { isFn: true }, to: { status: 'running' }, effects: ['run_fn'] },
  { rule: 'dispatch of a running node changes nothing', from: node('running'), event: { kind: 'dispatch' }, to: null },
  { rule: 'skip: queued → skipped', from: node('queued'), event: { kind: 'skip', reason: 'fan_in' }, to: { status: 'skipped', end_reason: 'fan_in' }, effects: ['terminal'] },
  { rule: 'accepted: lease recorded, accepted_at set', from: node('running'), event: lease, to: { accepted_at_ms: NOW, lease: { worker_id: 'w1', lease_id: 'l1', deadline_ts_ms: NOW + 5000 }, lease_expires_at_ms: NOW + 5000 }, effects: ['accepted'] },
  { rule: 'heartbeat: the deadline never moves backwards', from: node('running', { lease: { worker_id: 'w1', lease_id: 'l1', deadline_ts_ms: NOW + 9000 } }), event: { ...lease, accepted: false }, to: { lease: { worker_id: 'w1', lease_id: 'l1', deadline_ts_ms: NOW + 9000 } } },
  { rule: 'heartbeat of a queued node changes nothing', from: node('queued'), event: lease, to: null },
  { rule: 'accepted after the attempt ended (cancelled while its START waited): the worker is told to stop', from: node('cancelled'), event: lease, to: { status: 'cancelled', lease: {} }, effects: ['cancel'] },
  { rule: 'a heartbeat of an ended attempt changes nothing', from: node('cancelled'), event: { ...lease, accepted: false }, to: null },
  { rule: 'batch_ok: stats summed, first output announced', from: node('running'), event: { kind: 'batch_ok', uid: 'b0', metrics: { count: 3 }, prev: null, duplicate: false }, to: { stats: { count: 3 }, has_output: true, batches_seen: 1 }, effects: ['metrics_row', 'output'] },
  { rule: 'batch_ok: a batch reported again at a new epoch replaces its old contribution', from: node('running', { stats: { count: 5 }, has_output: true }), event: { kind: 'batch_ok', uid: 'b0', metrics: { count: 2 }, prev: { count: 3 }, duplicate: false }, to: { stats: { count: 4 } }, effects: ['metrics_row'] },
  { rule: 'batch_ok: a replaced contribution is summed again over the ledger, in its place (the sum a run that reported each batch once gets, not cur + new - prev)', from: node('running', { stats: { v: 64.27 + 45.97 + 55.12 }, has_output: true }), event: { kind: 'batch_ok', uid: 'b0', metrics: { v: 64.27 }, prev: { v: 64.27 }, duplicate: false, ledger: new Map([['b0', { metrics: { v: 64.27 } }], ['b1', { metrics: { v: 45.97 } }], ['b2', { metrics: { v: 55.12 } }]]) }, to: { stats: { v: 64.27 + 45.97 + 55.12 } }, effects: ['metrics_row'] },
  { rule: 'batch_ok whose metric would make a stat overflow (not a finite number): the running node fails, metric_overflow, permanent; its worker is told to stop', from: node('running', { stats: { big: 1.5e308 }, lease: { worker_id: 'w1' } }), event: { kind: 'batch_ok', uid: 'b1', metrics: { big: 1.5e308 }, prev: null, duplicate: false }, to: { status: 'failed', stats: { big: 1.5e308 }, last_error: { reason_code: 'metric_overflow', error: 'metric "big" of batch b1 makes the node\'s stat overflow (the sum of its batches is not a finite number)', permanent: true, at_ms: NOW, attempt_epoch: 1 } }, effects: ['cancel', 'terminal'], logs: ['node.metric_overflow', 'node.failed'] },
  { rule: 'batch_ok overflowing a stat of a recovered finished node: not applied, said', from: node('finished', { stats: { big: 1.5e308 }, end_reason: 'recovered from its complete artifact' }), event: { kind: 'batch_ok', uid: 'b1', metrics: { big: 1.5e308 }, prev: null, duplicate: false }, to: { status: 'finished', stats: { big: 1.5e308 } }, effects: [], logs: ['node.metric_overflow'] },
  { rule: 'done whose final metrics would overflow a stat: the node fails, metric_overflow', from: node('running', { stats: { big: -1.5e308 } }), event: { kind: 'done', metrics: { big: -1.5e308 }, finalUid: '__final__', prev: null }, to: { status: 'failed', stats: { big: -1.5e308 } }, effects: ['terminal'], logs: ['node.metric_overflow'] },
  { rule: 'batch_ok: a duplicate changes nothing', from: node('running'), event: { kind: 'batch_ok', uid: 'b0', metrics: { count: 3 }, prev: { count: 3 }, duplicate: true }, to: null },
  { rule: 'batch_ok of the run of a node finished from its complete artifact still counts (it came late)', from: node('finished', { stats: { count: 1 }, end_reason: 'recovered from its complete artifact' }), event: { kind: 'batch_ok', uid: 'b1', metrics: { count: 2 }, prev: null, duplicate: false }, to: { status: 'finished', stats: { count: 3 } }, effects: ['metrics_row'] },
  { rule: 'batch_ok on a node its TASK_DONE finished changes nothing (not a report of its run)', from: node('finished', { stats: { count: 1 } }), event: { kind: 'batch_ok', uid: 'b3', metrics: { count: 7 }, prev: null, duplicate: false }, to: null },
  { rule: 'batch_ok completing a done-pending node finishes it with its final metrics', from: node('running', { batches_seen: 1, has_output: true, done_pending: { batches: 2, metrics: { f: 1 }, final_uid: '__final__' } }), event: { kind: 'batch_ok', uid: 'b1', metrics: { count: 1 }, prev: null, duplicate: false }, to: { status: 'finished', stats: { count: 1, f: 1 }, done_pending: null }, effects: ['metrics_row', 'metrics_row', 'terminal'] },
  { rule: 'batch_failed: last_error recorded, still running', from: node('running'), event: { kind: 'batch_failed', uid: 'b0', reasonCode: 'x', error: 'boom', permanent: false }, to: { status: 'running', last_error: { reason_code: 'x', error: 'boom', permanent: false, at_ms: NOW, attempt_epoch: 1 } } },
  { rule: 'done: running → finished, final metrics row', from: node('running'), event: { kind: 'done', metrics: { f: 1 }, finalUid: '__final__', prev: null }, to: { status: 'finished', stats: { f: 1 }, finished_at_ms: NOW }, effects: ['metrics_row', 'terminal'] },
  { rule: 'done with batch reports still on their way: done_pending', from: node('running', { batches_seen: 1 }), event: { kind: 'done', metrics: {}, finalUid: '__final__', batches: 3, prev: null }, to: { status: 'running', done_pending: { batches: 3, metrics: {}, final_uid: '__final__' } } },
  { rule: 'done on a node finished from its artifact adds the final metrics once (no longer recovered: later reports change nothing)', from: node('finished', { end_reason: 'recovered from its complete artifact' }), event: { kind: 'done', metrics: { f: 2 }, finalUid: '__final__', prev: null }, to: { stats: { f: 2 }, end_reason: null }, effects: ['metrics_row'] },
  { rule: 'done under another final uid on a node its TASK_DONE finished changes nothing', from: node('finished', { stats: { f: 2 } }), event: { kind: 'done', metrics: { f: 5 }, finalUid: 'other', prev: null }, to: null },
  { rule: 'done duplicate on a finished node changes nothing', from: node('finished'), event: { kind: 'done', metrics: { f: 2 }, finalUid: '__final__', prev: { f: 2 } }, to: null },
  { rule: 'done while cancelling → cancelled', from: node('cancelling'), event: { kind: 'done', metrics: {}, finalUid: '__final__', prev: null }, to: { status: 'cancelled', end_reason: 'finished while cancelling' }, effects: ['terminal'] },
  { rule: 'transient failure: deferred with a retry time after the backoff', from: node('running'), event: { kind: 'failed', reasonCode: 'flaky', error: 'e', permanent: false }, to: { status: 'deferred', next_retry_at_ms: NOW + 2000, failures: 1 } },
  { rule: 'permanent failure: failed', from: node('running'), event: { kind: 'failed', reasonCode: 'x', error: 'e', permanent: true }, to: { status: 'failed', failures: 1 }, effects: ['terminal'] },
  { rule: 'a reason in permanent_on is permanent', from: node('running'), event: { kind: 'failed', reasonCode: 'bad_input', error: null, permanent: false }, to: { status: 'failed' }, effects: ['terminal'] },
  { rule: 'retries exhausted: the last attempt fails for good', from: node('running', { attempt_epoch: 3 }), event: { kind: 'failed', reasonCode: 'flaky', error: 'e', permanent: false }, to: { status: 'failed', last_error: { reason_code: 'retries_exhausted', error: 'flaky: e (attempt 3 of 3)', permanent: true, at_ms: NOW, attempt_epoch: 3 } }, effects: ['terminal'] },
  { rule: 'a transient failure of a node that is not running changes nothing', from: node('deferred'), event: { kind: 'failed', reasonCode: 'x', error: null, permanent: false }, to: null },
  { rule: 'failure while cancelling → cancelled', from: node('cancelling'), event: { kind: 'failed', reasonCode: 'x', error: null, permanent: false }, to: { status: 'cancelled', end_reason: 'failed while cancelling' }, effects: ['terminal'] },
  { rule: 'a worker that gives the run up: transient failure cancelled_by_worker', from: node('running'), event: { kind: 'worker_cancelled', reason: 'stopping' }, to: { status: 'deferred', last_error: { reason_code: 'cancelled_by_worker', error: 'stopping', permanent: false, at_ms: NOW, attempt_epoch: 1 } } },
  { rule: "a worker that gives the run up once the task's cancel is requested (it read the request): cancelled, not a failure", from: node('running'), event: { kind: 'worker_cancelled', reason: 'cancelled before start' }, ctx: { cancelRequested: true }, to: { status: 'cancelled', end_reason: 'cancelled before start' }, effects: ['terminal'] },
  { rule: 'CANCELLED while cancelling → cancelled', from: node('cancelling'), event: { kind: 'worker_cancelled', reason: 'ok' }, to: { status: 'cancelled', end_reason: 'ok' }, effects: ['terminal'] },
  { rule: 'lease expiry: transient failure, the holder told to give up', from: node('running', { lease: { worker_id: 'w1' } }), event: { kind: 'lease_expired' }, to: { status: 'deferred', lease: {} }, effects: ['cancel'] },
  { rule: 'lease expiry: the error names the deadline as a time, not epoch milliseconds', from: node('running', { lease: { worker_id: 'w1', deadline_ts_ms: Date.UTC(2026, 11, 8, 1, 2, 3) } }), event: { kind: 'lease_expired' }, to: { status: 'deferred', lease: {}, last_error: { reason_code: 'lease_expired', error: 'no heartbeat before the lease deadline 2026-12-08T01:02:03.000Z', permanent: false, at_ms: NOW, attempt_epoch: 1 } }, effects: ['cancel'] },
  { rule: 'lease expiry while cancelling: cancelled at once, as at the cancel deadline (the holder is gone)', from: node('cancelling', { lease: { worker_id: 'w1' } }), event: { kind: 'lease_expired' }, to: { status: 'cancelled', end_reason: 'lease expired while cancelling' }, effects: ['terminal'] },
  { rule: 'lease expiry of a yielded consumer (cancelling, held): queued again at once', from: node('cancelling', { lease: { worker_id: 'w1' }, held_for: 'up' }), event: { kind: 'lease_expired' }, to: { status: 'queued' }, effects: ['requeued'] },
  { rule: 'heartbeat lost (hard limit): transient failure', from: node('running', { lease: { worker_id: 'w1' } }), event: { kind: 'heartbeat_lost', silentMs: 5 }, to: { status: 'deferred' }, effects: ['cancel'] },
  { rule: 'soft limit: suspected', from: node('running'), event: { kind: 'suspect' }, to: { suspected: true } },
  { rule: 'a suspected node that speaks again recovers', from: node('running', { suspected: true }), event: { ...lease, accepted: false }, to: { suspected: false } },
  { rule: 'a suspected node whose batch reports recovers', from: node('running', { suspected: true }), event: { kind: 'batch_ok', uid: 'b0', metrics: {}, prev: null, duplicate: false }, to: { suspected: false }, effects: ['metrics_row', 'output'], logs: ['node.recovered'] },
  { rule: 'a suspected node whose batch fails recovers (it spoke)', from: node('running', { suspected: true }), event: { kind: 'batch_failed', uid: 'b0', reasonCode: 'x', error: 'e', permanent: false }, to: { suspected: false }, logs: ['node.recovered'] },
  { rule: 'timeout: the attempt is stopped on its worker, keeping its slot (cancelling)', from: node('running', { lease: { worker_id: 'w1' }, accepted_at_ms: NOW - 5 }), event: { kind: 'timeout', limitSec: 2 }, to: { status: 'cancelling', timed_out: 2, cancel_deadline_ms: NOW + 1100 }, effects: ['cancel'] },
  { rule: 'timeout of a coordinator function: it fails at once', from: node('running'), event: { kind: 'timeout', limitSec: 2 }, ctx: { isFn: true }, to: { status: 'deferred', last_error: { reason_code: 'timeout', error: 'no result within timeout_sec 2 s', permanent: false, at_ms: NOW, attempt_epoch: 1 } } },
  { rule: 'a timed-out attempt stopped by its worker fails with reason timeout (retry per policy)', from: node('cancelling', { timed_out: 2 }), event: { kind: 'worker_cancelled', reason: 'timeout' }, to: { status: 'deferred', timed_out: null, failures: 1 } },
  { rule: 'a timed-out attempt past its cancel deadline fails with reason timeout', from: node('cancelling', { timed_out: 2, attempt_epoch: 3 }), event: { kind: 'cancel_deadline' }, to: { status: 'failed', timed_out: null } },
  { rule: 'a cancel while a timed-out attempt is being stopped: it ends cancelled', from: node('cancelling', { timed_out: 2 }), event: { kind: 'cancel', reason: 'user' }, to: { status: 'cancelling', timed_out: null } },
  { rule: 'accept timeout: the same START is sent again', from: node('running'), event: { kind: 'accept_timeout' }, to: { resends: 1 }, effects: ['start'] },
  { rule: 'accept timeout after three resends: a new attempt without using a retry', from: node('running', { resends: 3 }), event: { kind: 'accept_timeout' }, to: { status: 'deferred', next_retry_at_ms: NOW, handbacks: 1, failures: 0, lost_attempts: undefined } },
  { rule: 'accept timeout after three resends, never claimed, however many attempts were lost before: a new attempt (a START nobody took says nothing of the node)', from: node('running', { resends: 3, lost_attempts: 3 }), event: { kind: 'accept_timeout' }, to: { status: 'deferred', handbacks: 1, lost_attempts: 3 } },
  { rule: 'accept timeout of a claimed attempt, the first: sent again (its holder may report late)', from: node('running'), event: { kind: 'accept_timeout', claimed: true }, to: { resends: 1 }, effects: ['start'] },
  { rule: 'accept timeout of a claimed attempt still silent a timeout later: a new attempt (its holder died)', from: node('running', { resends: 1 }), event: { kind: 'accept_timeout', claimed: true }, to: { status: 'deferred', next_retry_at_ms: NOW, handbacks: 1, failures: 0, lost_attempts: 1 } },
  { rule: 'accept timeout of a claimed attempt, silent, when retry_policy.max attempts were lost so already: the node fails (worker_lost), its holder told to stop', from: node('running', { resends: 1, attempt_epoch: 4, handbacks: 3, lost_attempts: 3 }), event: { kind: 'accept_timeout', claimed: true, holder: 'w2' }, to: { status: 'failed', lost_attempts: 4, last_error: { reason_code: 'worker_lost', error: "attempt 4 ended with its worker before any report (not_accepted): 4 attempts of this node were lost so, more than retry_policy.max (3); a run of this node may be crashing or hanging its worker", permanent: true, at_ms: NOW, attempt_epoch: 4 } }, effects: ['cancel', 'terminal'], logs: ['node.failed'] },
  { rule: 'a claimed attempt handed back: its holder is told to give it up (alive, its reports late, it must not run next to the next attempt)', from: node('running', { resends: 1 }), event: { kind: 'accept_timeout', claimed: true, holder: 'w2' }, to: { status: 'deferred', handbacks: 1 }, effects: ['cancel'] },
  { rule: 'a worker stopping hands the run back: due now, no failure counted', from: node('running', { lease: { worker_id: 'w1' } }), event: { kind: 'worker_cancelled', reason: 'worker_stopping' }, to: { status: 'deferred', next_retry_at_ms: NOW, handbacks: 1, failures: 0, lease: {}, lost_attempts: undefined } },
  { rule: 'a worker stopping hands the run back however many attempts were lost before (a deploy is not a lost attempt)', from: node('running', { lost_attempts: 3 }), event: { kind: 'worker_cancelled', reason: 'worker_stopping' }, to: { status: 'deferred', handbacks: 1, lost_attempts: 3 } },
  { rule: 'a worker restarted with the same id gives back the attempt its dead predecessor held: due now, no retry used, counted as lost', from: node('running', { lease: { worker_id: 'w1' } }), event: { kind: 'worker_cancelled', reason: 'worker_restarted' }, to: { status: 'deferred', next_retry_at_ms: NOW, handbacks: 1, failures: 0, lost_attempts: 1 }, logs: ['node.handed_back'] },
  { rule: 'an attempt lost with its worker once more than retry_policy.max: the node fails (worker_lost, permanent)', from: node('running', { attempt_epoch: 4, handbacks: 3, lost_attempts: 3 }), event: { kind: 'worker_cancelled', reason: 'worker_restarted' }, to: { status: 'failed', lost_attempts: 4, failures: 1, finished_at_ms: NOW }, effects: ['terminal'], logs: ['node.failed'] },
  { rule: 'hand-backs do not use up the retry budget', from: node('running', { attempt_epoch: 3, handbacks: 2 }), event: { kind: 'failed', reasonCode: 'x', error: null, permanent: false }, ctx: { policy: { max: 2, backoff_sec: 0, permanent_on: [] } }, to: { status: 'deferred' } },
  { rule: 'retries are exhausted once attempts minus hand-backs reach max', from: node('running', { attempt_epoch: 4, handbacks: 2 }), event: { kind: 'failed', reasonCode: 'x', error: null, permanent: false }, ctx: { policy: { max: 2, backoff_sec: 0, permanent_on: [] } }, to: { status: 'failed' } },
  { rule: 'accepted while cancelling with no holder known: the holder gets the cancel signal', from: node('cancelling'), event: lease, to: { status: 'cancelling', lease: { worker_id: 'w1', lease_id: 'l1', deadline_ts_ms: NOW + 5000 } }, effects: ['cancel', 'accepted'] },
  { rule: 'a second worker accepting the same attempt is told to give it up; the first keeps it', from: node('running', { lease: { worker_id: 'w0', lease_id: 'l0' }, accepted_at_ms: NOW - 5 }), event: lease, to: { lease: { worker_id: 'w0', lease_id: 'l0' } }, effects: ['cancel'] },
  { rule: 'yield: a running consumer is cancelled and held for its upstream', from: node('running', { accepted_at_ms: NOW - 5, lease: { worker_id: 'w1' } }), event: { kind: 'yield', upstream: 'up' }, to: { status: 'cancelling', held_for: 'up' }, effects: ['cancel'] },
  { rule: 'a yielded node confirmed cancelled is queued again (hand-back)', from: node('cancelling', { held_for: 'up' }), event: { kind: 'worker_cancelled', reason: 'yield' }, to: { status: 'queued', handbacks: 1, held_for: 'up' }, effects: ['requeued'] },
  { rule: 'a task cancel reaching a yielded node makes its cancel final', from: node('cancelling', { held_for: 'up' }), event: { kind: 'cancel', reason: 'user' }, to: { status: 'cancelling', held_for: null } },
  { rule: 'dispatch clears the hold', from: node('queued', { held_for: 'up' }), event: { kind: 'dispatch' }, to: { status: 'running', held_for: null }, effects: ['start'] },
  { rule: 'exponential backoff: the third attempt waits backoff_sec * factor^2', from: node('running', { attempt_epoch: 3 }), event: { kind: 'failed', reasonCode: 'x', error: null, permanent: false }, ctx: { policy: { max: 9, backoff_sec: 2, backoff_factor: 3, permanent_on: [] } }, to: { status: 'deferred', next_retry_at_ms: NOW + 18_000 } },
  { rule: 'backoff is capped by backoff_max_sec', from: node('running', { attempt_epoch: 6 }), event: { kind: 'failed', reasonCode: 'x', error: null, permanent: false }, ctx: { policy: { max: 9, backoff_sec: 2, backoff_factor: 3, backoff_max_sec: 60, permanent_on: [] } }, to: { status: 'deferred', next_retry_at_ms: NOW + 60_000 } },
  { rule: 'jitter spreads the delay (random 0 → -jitter)', from: node('running'), event: { kind: 'failed', reasonCode: 'x', error: null, permanent: false }, ctx: { policy: { max: 9, backoff_sec: 10, jitter: 0.2, permanent_on: [] }, random: () => 0 }, to: { status: 'deferred', next_retry_at_ms: NOW + 8_000 } },
  { rule: 'accept timeout of an accepted node changes nothing', from: node('running', { accepted_at_ms: NOW - 1 }), event: { kind: 'accept_timeout' }, to: null },
  { rule: 'cancel: queued → cancelled', from: node('queued'), event: { kind: 'cancel', reason: 'user' }, to: { status: 'cancelled', end_reason: 'user' }, effects: ['terminal'] },
  { rule: 'cancel: deferred → cancelled (the retry never happens)', from: node('deferred', { next_retry_at_ms: NOW + 5 }), event: { kind: 'cancel', reason: 'user' }, to: { status: 'cancelled', next_retry_at_ms: null }, effects: ['terminal'] },
  { rule: 'cancel: running → cancelling with a deadline, cancel sent', from: node('running', { lease: { worker_id: 'w1' } }), event: { kind: 'cancel', reason: 'user' }, to: { status: 'cancelling', cancel_deadline_ms: NOW + 1100 }, effects: ['cancel'] },
  { rule: 'cancel deadline: cancelling → cancelled', from: node('cancelling'), event: { kind: 'cancel_deadline' }, to: { status: 'cancelled', end_reason: 'cancel grace expired' }, effects: ['terminal'] },
  { rule: 'withdrawn: a cancelled attempt nobody accepted (claimed for nobody) → cancelled at once, with its cancel reason', from: node('cancelling', { cancel_reason: 'user' }), event: { kind: 'withdrawn' }, to: { status: 'cancelled', end_reason: 'user' }, effects: ['terminal'] },
  { rule: 'withdrawn: a timed-out attempt nobody accepted fails with reason timeout (retried)', from: node('cancelling', { timed_out: 2, attempt_epoch: 1 }), event: { kind: 'withdrawn' }, to: { status: 'deferred', timed_out: null } },
  { rule: 'withdrawn: an accepted attempt (its holder runs it) changes nothing', from: node('cancelling', { accepted_at_ms: NOW - 5, lease: { worker_id: 'w1' } }), event: { kind: 'withdrawn' }, to: null },
  { rule: 'withdrawn: a running node changes nothing', from: node('running'), event: { kind: 'withdrawn' }, to: null },
  { rule: 'recovered complete: running → finished from its artifact', from: node('running'), event: { kind: 'recovered_complete', final: null, prev: null }, to: { status: 'finished', has_output: true, end_reason: 'recovered from its complete artifact' }, effects: ['terminal'] },
  { rule: 'recovered complete: the finalize metrics its artifact carries are counted as TASK_DONE\'s', from: node('running', { stats: { rows: 3 } }), event: { kind: 'recovered_complete', final: { rows_total: 3, rows: 1 }, prev: null }, to: { status: 'finished', stats: { rows: 4, rows_total: 3 } }, effects: ['metrics_row', 'terminal'] },
  { rule: 'adopt: a live run keeps its epoch, lease taken over', from: node('running'), event: { kind: 'adopt', workerId: 'w2', leaseId: 'l2', deadline: NOW + 10, expiresAt: NOW + 10 }, to: { attempt_epoch: 1, lease: { worker_id: 'w2', lease_id: 'l2', deadline_ts_ms: NOW + 10 } } },
  { rule: 'coordinator function done: finished with its stats', from: node('running'), event: { kind: 'fn_done', stats: { merged: 2 } }, ctx: { isFn: true }, to: { status: 'finished', stats: { merged: 2 } }, effects: ['terminal'] },
  { rule: 'coordinator function done while cancelling → cancelled with the cancel reason (its result is dropped)', from: node('cancelling', { cancel_reason: 'user' }), event: { kind: 'fn_done', stats: { merged: 2 } }, ctx: { isFn: true }, to: { status: 'cancelled', end_reason: 'user', stats: {} }, effects: ['terminal'] },
  { rule: 'coordinator function failed (permanent): failed', from: node('running'), event: { kind: 'fn_failed', reasonCode: 'bad_fn_args', error: 'e', permanent: true }, ctx: { isFn: true }, to: { status: 'failed' }, effects: ['terminal'] },
  { rule: 'stats patch from another node: merged into stats', from: node('finished', { stats: { a: 1 } }), event: { kind: 'stats_patch', stats: { b: 2 } }, to: { stats: { a: 1, b: 2 } } },
  { rule: 'events for a terminal node change nothing (a late TASK_FAILED)', from: node('finished'), event: { kind: 'failed', reasonCode: 'x', error: null, permanent: true }, to: null },
]

describe('transition table', () => {
  for (const row of rows) {
    test(row.rule, () => {
      const res = transition(row.from, row.event, ctx(row.ctx))
      if (row.to === null) {
        assert.equal(res, null)
        return
      }
      assert.ok(res, 'the event must change the node')
      for (const [k, v] of Object.entries(row.to)) assert.deepEqual((res.node as unknown as Record<string, unknown>)[k], v, k)
      if (row.effects) assert.deepEqual(res.effects.filter((e) => e.kind !== 'log').map((e) => e.kind), row.effects)
      for (const event of row.logs ?? []) assert.ok(res.effects.some((e) => e.kind === 'log' && (e as { event?: string }).event === event), `logs ${event}`)
      assert.notEqual(res.node, row.from, 'a new state object: the old one is never mutated')
    })
  }
})

describe('cancel reasons', () => {
  const reasonOf = (res: ReturnType<typeof transition>): unknown => res?.effects.find((e) => e.kind === 'cancel')?.['reason' as never]
  // S-004 failed under load: the handler had started, the coordinator had not yet applied its
  // accept, so the cancel found no holder; the accept then told the worker "cancelled", and the
  // node ended with that instead of the user's reason.
  test("a holder known only after the cancel was decided is told the task's cancel reason", () => {
    const cancelling = transition(node('running'), { kind: 'cancel', reason: 'user asked' }, ctx())
    assert.equal(cancelling?.node.status, 'cancelling')
    assert.equal(reasonOf(cancelling), 'user asked')
    const accepted = transition(cancelling!.node, lease, ctx())
    assert.equal(reasonOf(accepted), 'user asked')
  })
  test('the same for a timeout and a yield: the holder hears why', () => {
    const timedOut = transition(node('running'), { kind: 'timeout', limitSec: 2 }, ctx())
    assert.equal(reasonOf(transition(timedOut!.node, lease, ctx())), 'timeout')
    const yielded = transition(node('running', { accepted_at_ms: NOW - 5 }), { kind: 'yield', upstream: 'up' }, ctx())
    assert.equal(reasonOf(transition(yielded!.node, lease, ctx())), 'yield: up waits for a worker slot')
  })
  test('a yielded node queued again forgets the reason; a state from before the field tells "cancelled"', () => {
    const yielded = transition(node('running', { accepted_at_ms: NOW - 5 }), { kind: 'yield', upstream: 'up' }, ctx())
    const requeued = transition(yielded!.node, { kind: 'worker_cancelled', reason: 'yield' }, ctx())
    assert.equal(requeued?.node.status, 'queued')
    assert.equal(requeued?.node.cancel_reason, null)
    assert.equal(reasonOf(transition(node('cancelling'), lease, ctx())), 'cancelled')
  })
})
