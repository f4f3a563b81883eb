/**
 * Store port: the durable truth, in domain verbs.
 *
 * Every state transition is a compare-and-set on ONE document (status + epoch in the filter), so
 * a lost race is detected, never silently overwritten. Only operations a MongoDB-protocol server
 * without transactions supports are assumed: single-document atomic updates, unique-index
 * inserts. Dedup rules are carried by unique keys. User-supplied keys (node ids, variable paths)
 * are validated by the caller before they reach a verb; adapters validate node ids again before
 * building a document path.
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
  /** Why the node ended `cancelled`/`skipped`, when it did. */
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
   * Ledger key of the last status event whose node update was applied. A node's events arrive in
   * order (one key, one partition), so a redelivered event that finds its own key here knows its
   * node update is done and only the steps after it remain.
   */
  last_event_key?: string | null
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
}

export type NodePatch = Partial<Omit<NodeState, 'node_id' | 'type'>>

/**
 * NodeState fields a transitionNode patch may set (node_id and type are fixed at creation): one
 * list for every adapter. The `satisfies` fails the typecheck when NodePatch gains or loses a field.
 */
export const NODE_PATCH_FIELDS = {
  status: true,
  attempt_epoch: true,
  lease: true,
  stats: true,
  last_error: true,
  failures: true,
  next_retry_at_ms: true,
  dispatched_at_ms: true,
  accepted_at_ms: true,
  last_event_at_ms: true,
  finished_at_ms: true,
  has_output: true,
  end_reason: true,
  cancel_deadline_ms: true,
  resends: true,
  batches_seen: true,
  done_pending: true,
  suspected: true,
  last_event_key: true,
} as const satisfies Record<keyof NodePatch, true>
export const NODE_PATCH_KEYS: ReadonlySet<string> = new Set(Object.keys(NODE_PATCH_FIELDS))

export interface NodeGuard {
  /** The node's status must be one of these. */
  status?: NodeStatus | readonly NodeStatus[]
  /** The node's attempt_epoch must equal this. */
  epoch?: number
}

export interface TaskPatch {
  status?: TaskStatus
  result?: unknown
  error?: string | null
  finished_at_ms?: number | null
  vars?: Record<string, unknown>
  cancelled?: boolean
  cancel_reason?: string | null
}

/** TaskPatch field → its path in the task document. */
export const TASK_PATCH_PATHS = {
  status: 'status',
  result: 'result',
  error: 'error',
  finished_at_ms: 'finished_at_ms',
  vars: 'coordinator.vars',
  cancelled: 'coordinator.cancelled',
  cancel_reason: 'coordinator.cancel_reason',
} as const satisfies Record<keyof TaskPatch, string>
export const TASK_PATCH_KEYS: ReadonlySet<string> = new Set(Object.keys(TASK_PATCH_PATHS))

export const ArtifactStatus = { Partial: 'partial', Complete: 'complete', Failed: 'failed' } as const
export type ArtifactStatus = (typeof ArtifactStatus)[keyof typeof ArtifactStatus]

export interface ArtifactDoc {
  task_id: string
  node_id: string
  /** Set for partial (per batch) artifacts; null for the node's complete artifact. */
  batch_uid: string | null
  status: ArtifactStatus
  meta: Record<string, unknown>
  attempt_epoch: number
  worker_id: string | null
  created_at: number
  updated_at: number
}

export interface ArtifactWrite {
  task_id: string
  node_id: string
  batch_uid: string | null
  status: ArtifactStatus
  meta: Record<string, unknown>
  attempt_epoch: number
  worker_id: string | null
}

export interface ArtifactQuery {
  nodeId?: string
  status?: ArtifactStatus
  /** Only artifacts created at or after this time (epoch ms): an incremental read of a stream. */
  createdAfter?: number
}

export interface BatchMetricsWrite {
  task_id: string
  node_id: string
  batch_uid: string
  attempt_epoch: number
  metrics: Record<string, unknown>
}

export interface StreamClaim {
  task_id: string
  consumer_node: string
  from_node: string
  batch_uid: string
  consumer_epoch: number
}

export const OutboxStatus = { Pending: 'pending', Sent: 'sent', Failed: 'failed' } as const
export type OutboxStatus = (typeof OutboxStatus)[keyof typeof OutboxStatus]

export interface OutboxEnqueue {
  topic: string
  key: string | null
  value: string
  dedup_id: string
}

export interface OutboxRow extends OutboxEnqueue {
  /** Stable id derived from (topic, key, dedup_id). */
  id: string
  status: OutboxStatus
  attempts: number
  next_attempt_at_ms: number
  last_error: string | null
  created_at_ms: number
  updated_at_ms: number
  sent_at_ms: number | null
}

export interface WorkerInfo {
  worker_id: string
  roles: string[]
  capacity: number
  version: string
  status: 'online' | 'offline'
  last_seen_ms: number
}

export interface WorkerRun {
  task_id: string
  node_id: string
  step_type: string
  attempt_epoch: number
  lease_id: string
  started_at_ms: number
}

export interface WorkerStateDoc {
  worker_id: string
  active_runs: WorkerRun[]
  updated_at_ms: number
}

export interface Store {
  /** Connects and creates collections/indexes. Idempotent. */
  init(): Promise<void>
  close(): Promise<void>

  // ---- tasks and nodes
  /** Inserts a new task; `STORE_DUPLICATE_KEY` if the id exists. */
  createTask(task: TaskDoc): Promise<void>
  /**
   * The task, or null. Its `graph` never changes after creation: adapters may return one shared,
   * deep-frozen graph object instead of a copy (everything else is a copy).
   */
  getTask(taskId: string): Promise<TaskDoc | null>
  /** Cancel flag, variables and one node of a task (a cheap read for workers); null if no task. */
  getRunView(taskId: string, nodeId: string): Promise<RunView | null>
  /** Tasks whose status is one of `statuses` (all when omitted), oldest first. */
  listTasks(filter?: { statuses?: readonly TaskStatus[]; limit?: number }): Promise<TaskDoc[]>
  /**
   * Compare-and-set of one node: applies `patch` only if the guard holds. Returns the task as
   * it is after the update, or null when the guard failed (or the task/node does not exist).
   */
  transitionNode(taskId: string, nodeId: string, guard: NodeGuard, patch: NodePatch, now: number): Promise<TaskDoc | null>
  /** Compare-and-set of the task itself (status, result, vars, cancel flag). Null when the guard failed. */
  updateTask(taskId: string, guard: { status?: readonly TaskStatus[] }, patch: TaskPatch, now: number): Promise<TaskDoc | null>

  // ---- dedup ledger of applied worker events
  hasEvent(key: string): Promise<boolean>
  /** Records an applied event; true when it was new, false when already recorded. */
  recordEventOnce(key: string, info: { task_id: string; node_id: string; kind: string }, now: number): Promise<boolean>

  // ---- metrics per batch: one row per (task, node, batch_uid), the newest attempt wins
  /** Upserts the batch's metrics; returns the metrics it replaced (null when the row is new). */
  upsertBatchMetrics(row: BatchMetricsWrite, now: number): Promise<Record<string, unknown> | null>
  /** The batch's stored metrics, or null when there is no row. */
  getBatchMetrics(taskId: string, nodeId: string, batchUid: string): Promise<Record<string, unknown> | null>
  /** Every metrics row of a node (batches and the final row), in no particular order. */
  listBatchMetrics(taskId: string, nodeId: string): Promise<{ batch_uid: string; metrics: Record<string, unknown> }[]>

  // ---- artifacts: one per (task, node, batch_uid); fenced by attempt_epoch
  /**
   * Upserts an artifact unless one with a higher attempt_epoch exists for the same key (then it
   * returns false and changes nothing).
   */
  upsertArtifact(artifact: ArtifactWrite, now: number): Promise<boolean>
  /** Artifacts of a task ordered by created_at then batch_uid. */
  listArtifacts(taskId: string, query?: ArtifactQuery): Promise<ArtifactDoc[]>
  getArtifact(taskId: string, nodeId: string, batchUid: string | null): Promise<ArtifactDoc | null>

  // ---- stream progress: a consumer attempt claims each upstream batch once
  claimStreamBatch(claim: StreamClaim, now: number): Promise<boolean>

  // ---- transactional outbox
  /** Inserts a pending row; false when (topic, key, dedup_id) is already there. */
  outboxEnqueue(row: OutboxEnqueue, now: number): Promise<boolean>
  /**
   * Claims up to `limit` pending rows due at `now`: each claimed row's next_attempt_at_ms moves to
   * `claimUntil` so other dispatchers skip it until then.
   */
  outboxClaimDue(now: number, limit: number, claimUntil: number): Promise<OutboxRow[]>
  outboxMarkSent(id: string, now: number): Promise<void>
  outboxMarkRetry(id: string, attempts: number, nextAttemptAt: number, error: string, now: number): Promise<void>
  outboxMarkFailed(id: string, attempts: number, error: string, now: number): Promise<void>
  outboxList(filter?: { status?: OutboxStatus; limit?: number }): Promise<OutboxRow[]>
  /** Operator action: a failed (dead-lettered) row goes back to pending, due now. */
  outboxRequeue(id: string, now: number): Promise<boolean>

  // ---- retention (servers without TTL indexes: done by the application)
  /**
   * Deletes dedup-ledger rows recorded before `cutoff` and outbox rows sent before it (pending and
   * dead-lettered rows are kept). Returns how many rows went.
   */
  purgeBefore(cutoff: number): Promise<{ events: number; outbox: number }>

  // ---- worker registry and worker run state
  upsertWorker(info: WorkerInfo): Promise<void>
  listWorkers(): Promise<WorkerInfo[]>
  saveWorkerState(state: WorkerStateDoc): Promise<void>
  getWorkerState(workerId: string): Promise<WorkerStateDoc | null>
}
