/**
 * The task/node state model: pure domain types shared by the engine, the store port and its
 * adapters. A task document holds its graph and one NodeState per node; the coordinator owns the
 * live copy in memory and the store keeps a snapshot plus a journal of applied transitions.
 */
import type { GraphSpec } from '../graph/types.ts'

export const TaskStatus = {
  Queued: 'queued',
  Running: 'running',
  Cancelling: 'cancelling',
  Finished: 'finished',
  Failed: 'failed',
  Cancelled: 'cancelled',
} as const
export type TaskStatus = (typeof TaskStatus)[keyof typeof TaskStatus]

export const NodeStatus = {
  Queued: 'queued',
  Running: 'running',
  Deferred: 'deferred',
  Cancelling: 'cancelling',
  Finished: 'finished',
  Failed: 'failed',
  Cancelled: 'cancelled',
  Skipped: 'skipped',
} as const
export type NodeStatus = (typeof NodeStatus)[keyof typeof NodeStatus]

export const TERMINAL_TASK_STATUSES: readonly TaskStatus[] = ['finished', 'failed', 'cancelled']
export const TERMINAL_NODE_STATUSES: readonly NodeStatus[] = ['finished', 'failed', 'cancelled', 'skipped']

export interface Lease {
  worker_id?: string | null
  lease_id?: string | null
  deadline_ts_ms?: number | null
}

export interface NodeError {
  reason_code: string
  error: string | null
  permanent: boolean
  at_ms: number
  attempt_epoch: number
}

export interface NodeState {
  node_id: string
  type: string
  status: NodeStatus
  attempt_epoch: number
  lease: Lease
  /** Aggregated metrics of the node's batches (numbers summed), plus final metrics. */
  stats: Record<string, unknown>
  last_error: NodeError | null
  /** Number of failed attempts so far (transient or permanent). */
  failures: number
  next_retry_at_ms: number | null
  dispatched_at_ms: number | null
  accepted_at_ms: number | null
  last_event_at_ms: number | null
  finished_at_ms: number | null
  /** True once the node produced at least one (partial or complete) artifact / batch. */
  has_output: boolean
  /** Why the node ended `cancelled`/`skipped`, when it did; a `finished` node's is null, or says it was recovered from its complete artifact. */
  end_reason: string | null
  /** While `cancelling`: when the coordinator stops waiting for the worker's CANCELLED. */
  cancel_deadline_ms?: number | null
  /** Times the start command was sent again because no worker accepted it. */
  resends?: number
  /** Distinct BATCH_OK reports applied for the current attempt. */
  batches_seen?: number
  /**
   * A TASK_DONE that announced more batches than have been reported yet (a batch report was
   * delayed behind it): the node finishes when the last report arrives.
   */
  done_pending?: { batches: number; metrics: Record<string, unknown>; final_uid: string } | null
  /** No status from the worker for longer than the soft heartbeat limit (clears when it speaks). */
  suspected?: boolean
  /**
   * When the lease runs out on the coordinator's own clock: the lease's duration as the worker
   * stated it (its deadline minus its send time), counted from when the coordinator applied it,
   * so a worker clock that is off never makes a healthy lease expire.
   */
  lease_expires_at_ms?: number | null
  /**
   * Ledger key of the last status event whose node update was applied. A node's events arrive in
   * order (one key, one partition), so a redelivered event that finds its own key here knows its
   * node update is done and only the steps after it remain.
   */
  last_event_key?: string | null
  /**
   * Attempts given back without a failure (a worker stopping for a deploy, a start no worker
   * accepted, a streaming consumer yielding its slot): they do not use up the retry budget.
   */
  handbacks?: number
  /**
   * Of those hand-backs, the attempts lost with their worker before it ended them: claimed and
   * never accepted (the holder died or hung before its first report), or found by a process
   * restarted with the worker's id. Bounded by `retry_policy.max`: one more fails the node
   * (`worker_lost`), so a node whose runs kill their worker does not take worker after worker.
   */
  lost_attempts?: number
  /**
   * A yielded streaming consumer waits (queued) until this upstream node is accepted by a worker
   * or ends, so it does not take the slot back before the upstream's retry can run.
   */
  held_for?: string | null
  /**
   * Set (to the limit, seconds) while an attempt past its `timeout_sec` is being stopped on its
   * worker (`cancelling`): when that is over, the attempt fails with reason `timeout`.
   */
  timed_out?: number | null
  /**
   * Why a `cancelling` node is being stopped (the task's cancel reason, `timeout`, a yield): what
   * its worker is told, also a holder only known after the cancel was decided.
   */
  cancel_reason?: string | null
}

/** What a worker needs to know about a task before it runs one of its nodes. */
export interface RunView {
  cancelled: boolean
  vars: Record<string, unknown>
  /** The node's state in flowkit's layout; null when the task document has no such node. */
  node: NodeState | null
}

export interface TaskDoc {
  id: string
  status: TaskStatus
  params: Record<string, unknown>
  graph: GraphSpec
  nodes: Record<string, NodeState>
  /** Python workers read `coordinator.cancelled`; `vars` are the task variables. */
  coordinator: { vars: Record<string, unknown>; cancelled: boolean; cancel_reason: string | null }
  result: unknown
  error: string | null
  created_at_ms: number
  updated_at_ms: number
  finished_at_ms: number | null
  /** The task must be terminal by then (createTask `deadlineSec`); absent: no deadline. */
  deadline_at_ms?: number | null
  /**
   * The writer id (as in its journal entries) of the coordinator whose `createTask` inserted the
   * task; absent when it was submitted through the store (`flowkit submit`, `flowkit ui`). The
   * coordinator that takes up a task without it, never written, counts its creation (metrics).
   */
  created_by?: string
}

