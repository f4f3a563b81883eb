/**
 * The vocabulary of the node transition table (transitions.ts): the events that reach a node, the
 * effects a rule asks for, the context the caller gives (time, policy) and what a rule returns.
 * Types and small constants only; the rules are in transitions.ts, the outcomes several rules
 * share (retry or fail, hand-back, cancel) in transition-outcomes.ts.
 */
import type { RetryPolicy } from '../graph/types.ts'
import type { NodeState, NodeStatus } from '../model/state.ts'
import { WORKER_RESTARTED_REASON, WORKER_STOPPING_REASON } from '../protocol/messages.ts'

/** A node's applied contributions by batch uid, in the order they were first applied (the runtime's ledger). */
export type Contributions = ReadonlyMap<string, { readonly metrics: Readonly<Record<string, unknown>> }>

export type NodeEvent =
  | { kind: 'dispatch' }
  | { kind: 'skip'; reason: string }
  | { kind: 'lease'; accepted: boolean; workerId: string; leaseId: string; deadline: number; expiresAt: number }
  | { kind: 'batch_ok'; uid: string; metrics: Record<string, unknown>; prev: Record<string, unknown> | null; duplicate: boolean; ledger?: Contributions }
  | { kind: 'batch_failed'; uid: string; reasonCode: string; error: string | null; permanent: boolean }
  | { kind: 'done'; metrics: Record<string, unknown>; finalUid: string; batches?: number; prev: Record<string, unknown> | null; ledger?: Contributions }
  | { kind: 'failed'; reasonCode: string; error: string | null; permanent: boolean }
  | { kind: 'worker_cancelled'; reason: string }
  | { kind: 'lease_expired' }
  /** The attempt ran longer than the node's `timeout_sec`. */
  | { kind: 'timeout'; limitSec: number }
  | { kind: 'heartbeat_lost'; silentMs: number }
  | { kind: 'suspect' }
  /**
   * `claimed`: a worker claimed the attempt in the store (it took the START) and has said nothing
   * since; `holder`: that worker's id (told to give the attempt up if it is handed back).
   */
  | { kind: 'accept_timeout'; claimed?: boolean; holder?: string | null }
  /** A streaming consumer gives its worker slot up so that `upstream`'s retry can run. */
  | { kind: 'yield'; upstream: string }
  | { kind: 'cancel'; reason: string }
  | { kind: 'cancel_deadline' }
  /**
   * The cancelled attempt, which no worker had accepted, is claimed for nobody in the store: no
   * flowkit worker will run its START (accept.ts withdrawUnaccepted).
   */
  | { kind: 'withdrawn' }
  /**
   * Finished from its complete artifact (its reports lost): `final` the finalize metrics the
   * artifact carries (null: none, an artifact of a Python worker or an earlier flowkit), `prev` the
   * `__final__` metrics already counted for the node.
   */
  | { kind: 'recovered_complete'; final: Record<string, unknown> | null; prev: Record<string, unknown> | null }
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
  /**
   * The task's cancel was requested and waits to be applied (cancel-request.ts): a worker that
   * stops the run on its own (it read the request from the task) ends the node cancelled.
   */
  cancelRequested?: boolean
}

export interface TransitionResult {
  node: NodeState
  effects: Effect[]
}

const TERMINAL: ReadonlySet<NodeStatus> = new Set(['finished', 'failed', 'cancelled', 'skipped'])

/** Finished, failed, cancelled or skipped: no event changes the node's outcome any more. */
export function isTerminal(status: NodeStatus): boolean {
  return TERMINAL.has(status)
}

/** Reason a stopping worker gives for the runs it hands back (not a failure). */
export const WORKER_STOPPING = WORKER_STOPPING_REASON
/** Reason a worker restarted with the same id gives for an attempt its dead predecessor held. */
export const WORKER_RESTARTED = WORKER_RESTARTED_REASON

/** A structured log record, as an effect. */
export const logEffect = (level: 'debug' | 'info' | 'warn' | 'error', event: string, fields?: Record<string, unknown>): Effect =>
  fields === undefined ? { kind: 'log', level, event } : { kind: 'log', level, event, fields }
