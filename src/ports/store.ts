/**
 * Store port: the durable truth, in domain verbs.
 *
 * A task is a snapshot document plus a journal of entries (src/model/journal.ts): the coordinator
 * that owns a task appends one entry per flush, unique by (task, version), so a writer that lost
 * the version is refused, never silently overwritten; snapshots are rewritten rarely, guarded by
 * the version. Only operations a MongoDB-protocol server without transactions supports are
 * assumed: single-document atomic writes and unique-index inserts; the event path uses inserts
 * only (see docs/write-path.md). Dedup rules are carried by unique keys. User-supplied keys (node ids, variable paths)
 * are validated by the caller before they reach a verb; adapters validate node ids again before
 * building a document path.
 */

export {
  TaskStatus,
  NodeStatus,
  TERMINAL_TASK_STATUSES,
  TERMINAL_NODE_STATUSES,
} from '../model/state.ts'
export type { Lease, NodeError, NodeState, RunView, TaskDoc } from '../model/state.ts'
import type { RunView, TaskDoc, TaskStatus } from '../model/state.ts'
import type { JournalEntry, VersionedTask } from '../model/journal.ts'
export type { JournalCommand, JournalEntry, TaskChanges, VersionedTask } from '../model/journal.ts'
export { applyJournal } from '../model/journal.ts'

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
  /**
   * On a complete artifact a flowkit worker wrote: its run's finalize metrics (TASK_DONE's, the
   * `__final__` batch), so that a coordinator that finishes the node from this artifact — its
   * TASK_DONE lost with the worker — counts them too. Absent otherwise. A Python worker's complete
   * artifact has its finalize metrics as `meta`: the Mongo store reads them as `final_metrics` too.
   */
  final_metrics?: Record<string, unknown>
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
  /** A complete artifact's finalize metrics (ArtifactDoc.final_metrics). */
  final_metrics?: Record<string, unknown>
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

/** A batch's metrics as the newest attempt that reported it left them. */
export interface BatchMetricsRow {
  node_id: string
  batch_uid: string
  attempt_epoch: number
  metrics: Record<string, unknown>
}

export interface CheckpointWrite {
  task_id: string
  node_id: string
  attempt_epoch: number
  /** JSON data (what a retried attempt needs to resume). */
  state: unknown
}

export interface Checkpoint {
  attempt_epoch: number
  state: unknown
  saved_at_ms: number
}

/**
 * The holder of an attempt its coordinator handed back before any worker claimed it: claimed for
 * no worker, so that a copy of its START still on its way (a partition held up) is not run there —
 * the worker's claim fails. Best effort: a copy claimed first runs, and is cancelled as stale.
 */
export const HANDED_BACK_HOLDER = 'flowkit:handed-back'

/** A worker's claim on one attempt of a node (see Store.claimAttempt). */
export interface AttemptClaim {
  task_id: string
  node_id: string
  attempt_epoch: number
  worker_id: string
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
  /**
   * The task the message belongs to (a coordinator's command): its rows still in the outbox (dead
   * letters, requeued ones) go with it when retention deletes it (purgeTasks). Null or absent: none.
   */
  task_id?: string | null
}

/** A message in the outbox. A sent row keeps its ids, topic, key and times; its `value` is ''. */
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

/** What purgeBefore deleted. */
export interface PurgeCounts {
  journal: number
  outbox: number
  workers: number
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
  /**
   * The process instance that wrote it (src/worker/instance.ts); absent in a document of a Python
   * worker or of a flowkit before 7 December 2026.
   */
  instance?: string
}

/** Which outbox rows `outboxList` returns. */
export interface OutboxFilter {
  status?: OutboxStatus
  limit?: number
  /** One row by its id (a dead letter an operator retries), not a scan. */
  id?: string
}

export interface Store {
  /** Connects and creates collections/indexes. Idempotent. */
  init(): Promise<void>
  close(): Promise<void>

  // ---- tasks: a snapshot document per task plus its journal (see src/model/journal.ts)
  /** Inserts a new task as its snapshot at version 0; `STORE_DUPLICATE_KEY` if the id exists. */
  createTask(task: TaskDoc): Promise<void>
  /**
   * Inserts several new tasks in one round trip where the server allows; per task, in order, null
   * when stored or the error that createTask would have thrown for it.
   */
  createTasks(tasks: readonly TaskDoc[]): Promise<(Error | null)[]>
  /**
   * The task as it is now: its snapshot with every later journal entry applied, or null (it also
   * carries `v`, the seq of the last entry applied, and `sent_through`: see VersionedTask). Its
   * `graph` never changes after creation: adapters may return one shared, deep-frozen graph object
   * instead of a copy (everything else is a copy).
   */
  getTask(taskId: string): Promise<TaskDoc | null>
  /**
   * Cancel flag, variables and one node of a task, read from its snapshot only (a cheap read for
   * workers): the coordinator rewrites the snapshot before it sends anything that depends on the
   * cancel flag or the variables, but the node's state may be behind. Null if no task.
   */
  getRunView(taskId: string, nodeId: string): Promise<RunView | null>
  /**
   * Tasks (snapshot + journal, as getTask) whose current status is one of `statuses` (all when
   * omitted), oldest first.
   */
  listTasks(filter?: { statuses?: readonly TaskStatus[]; limit?: number }): Promise<TaskDoc[]>
  /** Ids of the tasks whose snapshot status is one of `statuses` (a cheap read: no journal). */
  listTaskIds(statuses: readonly TaskStatus[]): Promise<string[]>
  /**
   * Id and snapshot status of every task whose snapshot status is one of `statuses`: one read
   * (a dashboard's list of 10,000 tasks; on a server that scans for any filter, one scan instead
   * of a listTaskIds per status).
   */
  listTaskStatuses(statuses: readonly TaskStatus[]): Promise<Array<{ id: string; status: TaskStatus }>>
  /**
   * Appends journal entries (one per task at most), in one round trip where the server allows.
   * Each entry is stored only if no entry with its `(task_id, seq)` exists: the result says, per
   * entry in order, true (stored now, or already stored by the same `writer` with the same seq: a
   * retried write) or false (another writer holds that version: this writer is fenced).
   */
  appendJournal(entries: readonly JournalEntry[]): Promise<boolean[]>
  /** Journal entries of these tasks with `seq > afterSeq` (default 0), by task then seq. */
  readJournal(taskIds: readonly string[], afterSeq?: number): Promise<JournalEntry[]>
  /**
   * Rewrites a task's snapshot (status, nodes, coordinator, result, error, timestamps) at version
   * `task.v`, only when the stored version is lower. True when written. Graph and params are
   * immutable and not rewritten.
   */
  writeSnapshot(task: VersionedTask, now: number): Promise<boolean>

  // ---- metrics per batch and attempt: insert-only, one row per (task, node, batch_uid, epoch)
  /** Inserts rows; a row whose key exists is left as it is (a retried write). */
  insertBatchMetrics(rows: readonly BatchMetricsWrite[], now: number): Promise<void>
  /** A task's batch rows (of one node when given): per (node, batch_uid) the newest epoch's row. */
  listBatchMetrics(taskId: string, nodeId?: string): Promise<BatchMetricsRow[]>

  // ---- artifacts: one per (task, node, batch_uid); fenced by attempt_epoch
  /**
   * Upserts an artifact unless one with a higher attempt_epoch exists for the same key (then it
   * returns false and changes nothing).
   */
  upsertArtifact(artifact: ArtifactWrite, now: number): Promise<boolean>
  /**
   * Several upsertArtifact calls in one round trip where the server allows (new keys inserted
   * together); per artifact, in order, what upsertArtifact would return.
   */
  upsertArtifacts(artifacts: readonly ArtifactWrite[], now: number): Promise<boolean[]>
  /**
   * Artifacts of a task ordered by created_at, then the complete artifact after the partials of
   * the same time, then insertion: a writer's partials in the order it wrote them (also those of
   * one `upsertArtifacts`, which share a time), whenever they are listed, so a consumer reading
   * them as they appear and one reading them all later get them in the same order. An update
   * keeps the artifact's place.
   */
  listArtifacts(taskId: string, query?: ArtifactQuery): Promise<ArtifactDoc[]>
  getArtifact(taskId: string, nodeId: string, batchUid: string | null): Promise<ArtifactDoc | null>

  // ---- attempts: one worker per attempt
  /**
   * Claims an attempt (task, node, epoch) for a worker before it runs it: true when this worker
   * holds it (claimed now, or earlier by the same worker id), false when another worker does. So
   * a start delivered twice (a rebalance, a resend) never runs one attempt on two workers.
   */
  claimAttempt(claim: AttemptClaim, now: number): Promise<boolean>
  /** Several claimAttempt calls in one round trip where the server allows; per claim, in order. */
  claimAttempts(claims: readonly AttemptClaim[], now: number): Promise<boolean[]>
  /**
   * The worker id holding an attempt's claim, null when unclaimed. Read when a claim is refused:
   * a worker restarted with the same id hands back what its dead predecessor claimed.
   */
  attemptHolder(taskId: string, nodeId: string, attemptEpoch: number): Promise<string | null>
  /**
   * Saves a handler's progress for its node (`ctx.checkpoint`): one per (task, node), the newest
   * attempt's; false (nothing changed) when a newer attempt already saved one.
   */
  saveCheckpoint(cp: CheckpointWrite, now: number): Promise<boolean>
  /** The node's last checkpoint (any attempt), or null. */
  getCheckpoint(taskId: string, nodeId: string): Promise<Checkpoint | null>

  // ---- stream progress: a consumer attempt claims each upstream batch once
  claimStreamBatch(claim: StreamClaim, now: number): Promise<boolean>
  /** Several claims in one round trip where the server allows; per claim, true when new. */
  claimStreamBatches(claims: readonly StreamClaim[], now: number): Promise<boolean[]>

  // ---- transactional outbox
  /**
   * Inserts a row, pending (default) or already dead-lettered (`failed`, with its attempts and
   * error); false when (topic, key, dedup_id) is already there.
   */
  outboxEnqueue(row: OutboxEnqueue, now: number, parked?: { attempts: number; error: string }): Promise<boolean>
  /**
   * Claims up to `limit` pending rows due at `now`: each claimed row's next_attempt_at_ms moves to
   * `claimUntil` so other dispatchers skip it until then.
   */
  outboxClaimDue(now: number, limit: number, claimUntil: number): Promise<OutboxRow[]>
  outboxMarkSent(id: string, now: number): Promise<void>
  outboxMarkRetry(id: string, attempts: number, nextAttemptAt: number, error: string, now: number): Promise<void>
  outboxMarkFailed(id: string, attempts: number, error: string, now: number): Promise<void>
  /** Rows by creation (then id); `id`: that row alone, if it matches the rest of the filter. */
  outboxList(filter?: OutboxFilter): Promise<OutboxRow[]>
  /** How many rows have `status` (counted by the server: no row is read). */
  outboxCount(status: OutboxStatus): Promise<number>
  /** Operator action: a failed (dead-lettered) row goes back to pending, due now. */
  outboxRequeue(id: string, now: number): Promise<boolean>

  // ---- retention (servers without TTL indexes: done by the application)
  /**
   * Deletes journal entries written before `cutoff` (the coordinator rewrites the snapshot of an
   * active task long before its entries get that old), outbox rows sent before it (pending and
   * dead-lettered rows are kept), and the registry rows of workers last heard before it, with
   * their run state (a live worker announces itself every `announceIntervalSec`). Returns how
   * many rows went.
   */
  purgeBefore(cutoff: number): Promise<PurgeCounts>
  /**
   * Deletes up to `limit` tasks whose stored snapshot is terminal (finished, failed, cancelled)
   * with `finished_at_ms` before `cutoff`, oldest first, and everything stored for them: journal
   * entries, artifacts, batch metrics rows, stream claims, attempt claims, checkpoints, and its
   * outbox rows not sent (dead letters nobody could retry any more: their task is gone). The task
   * document goes last, so a purge cut short is completed by the next one. Active tasks, and
   * terminal ones without `finished_at_ms`, are never touched. Returns the ids deleted.
   */
  purgeTasks(cutoff: number, limit: number): Promise<string[]>

  // ---- worker registry and worker run state
  upsertWorker(info: WorkerInfo): Promise<void>
  listWorkers(): Promise<WorkerInfo[]>
  /**
   * Replaces the run state of `state.worker_id`, unless the stored one was written by a newer
   * process instance of that id (`supersededBy`): then nothing is written and it returns false —
   * the writer is stale (a paused process resumed after its successor started, or two live
   * processes given one worker id) and must not overwrite its successor's runs. True when written.
   */
  saveWorkerState(state: WorkerStateDoc): Promise<boolean>
  getWorkerState(workerId: string): Promise<WorkerStateDoc | null>
}
