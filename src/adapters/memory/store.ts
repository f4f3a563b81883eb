/**
 * In-process Store with the semantics the MongoDB store has (the conformance suite in
 * test/conformance/store.suite.ts pins them down for both):
 * - documents are deep-copied on the way in and out (no shared references with callers);
 * - every verb is atomic (it runs synchronously between two awaits of the caller);
 * - unique keys carry dedup (task id, event key, stream claim, outbox id);
 * - strings order by code point, i.e. like MongoDB's binary comparison of UTF-8;
 * - `undefined` is handled like the MongoDB driver with `ignoreUndefined: true`: patch keys and
 *   object fields holding it are dropped (a patch key is then neither set nor unset), array
 *   elements holding it become null;
 * - a `limit` <= 0 returns nothing (MongoDB's `limit(0)` would mean "no limit": adapters must
 *   short-circuit it).
 *
 * This file holds the Store verbs: each checks the store is open, lets the event loop run every
 * 64 calls, and hands over to the module of its concern (each runs synchronously):
 * - copy.ts: copies in and out, listing limits;
 * - tasks.ts: task snapshots and their journal;
 * - metrics.ts: batch metrics rows;
 * - artifacts.ts: artifacts and stream claims;
 * - attempts.ts: attempt claims and checkpoints;
 * - outbox.ts: the outbox;
 * - workers.ts: the worker registry and worker run state.
 */
import { setImmediate as yieldToLoop } from 'node:timers/promises'
import { ErrorCode, FlowkitError } from '../../errors.ts'
import type {
  ArtifactDoc,
  AttemptClaim,
  Checkpoint,
  CheckpointWrite,
  ArtifactQuery,
  ArtifactWrite,
  BatchMetricsRow,
  BatchMetricsWrite,
  JournalEntry,
  OutboxEnqueue,
  OutboxRow,
  OutboxStatus,
  OutboxFilter,
  RunView,
  Store,
  StreamClaim,
  TaskDoc,
  TaskStatus,
  VersionedTask,
  PurgeCounts,
  WorkerInfo,
  WorkerStateDoc,
} from '../../ports/store.ts'
import { MemoryArtifacts } from './artifacts.ts'
import { MemoryAttempts } from './attempts.ts'
import { MemoryMetrics } from './metrics.ts'
import { MemoryOutbox } from './outbox.ts'
import { MemoryTasks } from './tasks.ts'
import { MemoryWorkers } from './workers.ts'
import { assertStringKeys, assertStringList } from '../../ports/store-rules.ts'

export { compareCodePoints } from '../../ports/store-rules.ts'

/** Calls between two yields to the event loop: an in-process store must not starve timers and I/O. */
const YIELD_EVERY = 64

export class MemoryStore implements Store {
  #closed = false
  #calls = 0
  readonly #tasks = new MemoryTasks()
  readonly #metrics = new MemoryMetrics()
  readonly #arts = new MemoryArtifacts()
  readonly #attempts = new MemoryAttempts()
  readonly #outbox = new MemoryOutbox()
  readonly #workers = new MemoryWorkers()

  #open(): void {
    if (this.#closed) throw new FlowkitError(ErrorCode.Closed, 'store is closed')
  }

  /** Every YIELD_EVERY calls, lets the event loop run (timers, I/O) before answering. */
  async #pace(): Promise<void> {
    if (++this.#calls % YIELD_EVERY === 0) await yieldToLoop()
    this.#open()
  }

  async init(): Promise<void> {
    this.#open()
  }

  async close(): Promise<void> {
    this.#closed = true
  }

  // ---- tasks: snapshot + journal (tasks.ts)

  async createTask(task: TaskDoc): Promise<void> {
    await this.#pace()
    this.#tasks.create(task)
  }

  async createTasks(tasks: readonly TaskDoc[]): Promise<(Error | null)[]> {
    const out: (Error | null)[] = []
    for (const t of tasks) {
      try {
        await this.createTask(t)
        out.push(null)
      } catch (err) {
        out.push(err as Error)
      }
    }
    return out
  }

  async getTask(taskId: string): Promise<TaskDoc | null> {
    assertStringKeys('getTask', { taskId })
    await this.#pace()
    return this.#tasks.get(taskId)
  }

  async getRunView(taskId: string, nodeId: string): Promise<RunView | null> {
    assertStringKeys('getRunView', { taskId })
    await this.#pace()
    return this.#tasks.runView(taskId, nodeId)
  }

  async listTasks(filter: { statuses?: readonly TaskStatus[]; limit?: number } = {}): Promise<TaskDoc[]> {
    if (filter.statuses !== undefined) assertStringList('listTasks', 'statuses', filter.statuses)
    await this.#pace()
    return this.#tasks.list(filter)
  }

  async listTaskIds(statuses: readonly TaskStatus[]): Promise<string[]> {
    assertStringList('listTaskIds', 'statuses', statuses)
    await this.#pace()
    return this.#tasks.listIds(statuses)
  }

  async listTaskStatuses(statuses: readonly TaskStatus[]): Promise<Array<{ id: string; status: TaskStatus }>> {
    assertStringList('listTaskStatuses', 'statuses', statuses)
    await this.#pace()
    return this.#tasks.listStatuses(statuses)
  }

  async appendJournal(entries: readonly JournalEntry[]): Promise<boolean[]> {
    await this.#pace()
    return this.#tasks.appendJournal(entries)
  }

  async readJournal(taskIds: readonly string[], afterSeq = 0): Promise<JournalEntry[]> {
    assertStringList('readJournal', 'taskIds', taskIds)
    await this.#pace()
    return this.#tasks.readJournal(taskIds, afterSeq)
  }

  async writeSnapshot(task: VersionedTask, now: number): Promise<boolean> {
    await this.#pace()
    return this.#tasks.writeSnapshot(task, now)
  }

  // ---- batch metrics (metrics.ts)

  async insertBatchMetrics(rows: readonly BatchMetricsWrite[], now: number): Promise<void> {
    await this.#pace()
    this.#metrics.insert(rows, now)
  }

  async listBatchMetrics(taskId: string, nodeId?: string): Promise<BatchMetricsRow[]> {
    assertStringKeys('listBatchMetrics', { taskId }, { nodeId })
    await this.#pace()
    return this.#metrics.list(taskId, nodeId)
  }

  async purgeBefore(cutoff: number): Promise<PurgeCounts> {
    await this.#pace()
    const journal = this.#tasks.purgeJournal(cutoff)
    this.#attempts.purge(cutoff)
    const outbox = this.#outbox.purgeSent(cutoff)
    return { journal, outbox, workers: this.#workers.purge(cutoff) }
  }

  async purgeTasks(cutoff: number, limit: number): Promise<string[]> {
    await this.#pace()
    const ids = this.#tasks.ended(cutoff, limit)
    if (ids.length === 0) return ids
    const gone = new Set(ids)
    this.#metrics.drop(gone)
    this.#arts.drop(gone)
    this.#attempts.drop(gone)
    this.#outbox.dropTasks(gone)
    this.#tasks.drop(gone)
    return ids
  }

  // ---- artifacts (artifacts.ts)

  async upsertArtifact(artifact: ArtifactWrite, now: number): Promise<boolean> {
    await this.#pace()
    return this.#arts.upsert(artifact, now)
  }

  async upsertArtifacts(artifacts: readonly ArtifactWrite[], now: number): Promise<boolean[]> {
    const out: boolean[] = []
    for (const a of artifacts) out.push(await this.upsertArtifact(a, now))
    return out
  }

  async listArtifacts(taskId: string, query: ArtifactQuery = {}): Promise<ArtifactDoc[]> {
    assertStringKeys('listArtifacts', { taskId }, { nodeId: query.nodeId, status: query.status })
    await this.#pace()
    return this.#arts.list(taskId, query)
  }

  async getArtifact(taskId: string, nodeId: string, batchUid: string | null): Promise<ArtifactDoc | null> {
    assertStringKeys('getArtifact', { taskId, nodeId }, { batchUid })
    await this.#pace()
    return this.#arts.get(taskId, nodeId, batchUid)
  }

  // ---- attempts (attempts.ts)

  async claimAttempt(claim: AttemptClaim, now: number): Promise<boolean> {
    await this.#pace()
    return this.#attempts.claim(claim, now)
  }

  async claimAttempts(claims: readonly AttemptClaim[], now: number): Promise<boolean[]> {
    await this.#pace()
    return claims.map((c) => this.#attempts.claim(c, now))
  }

  async attemptHolder(taskId: string, nodeId: string, attemptEpoch: number): Promise<string | null> {
    await this.#pace()
    return this.#attempts.holder(taskId, nodeId, attemptEpoch)
  }

  async saveCheckpoint(cp: CheckpointWrite, now: number): Promise<boolean> {
    await this.#pace()
    return this.#attempts.saveCheckpoint(cp, now)
  }

  async getCheckpoint(taskId: string, nodeId: string): Promise<Checkpoint | null> {
    assertStringKeys('getCheckpoint', { taskId, nodeId })
    await this.#pace()
    return this.#attempts.getCheckpoint(taskId, nodeId)
  }

  // ---- stream progress (artifacts.ts)

  async claimStreamBatches(claims: readonly StreamClaim[], now: number): Promise<boolean[]> {
    const out: boolean[] = []
    for (const c of claims) out.push(await this.claimStreamBatch(c, now))
    return out
  }

  async claimStreamBatch(claim: StreamClaim, now: number): Promise<boolean> {
    await this.#pace()
    return this.#arts.claimStream(claim, now)
  }

  // ---- outbox (outbox.ts)

  async outboxEnqueue(row: OutboxEnqueue, now: number, parked?: { attempts: number; error: string }): Promise<boolean> {
    await this.#pace()
    return this.#outbox.enqueue(row, now, parked)
  }

  async outboxClaimDue(now: number, limit: number, claimUntil: number): Promise<OutboxRow[]> {
    await this.#pace()
    return this.#outbox.claimDue(now, limit, claimUntil)
  }

  /** Pending → sent. A row that is not pending (sent, dead-lettered, unknown) is left as is. */
  async outboxMarkSent(id: string, now: number): Promise<void> {
    await this.#pace()
    this.#outbox.markSent(id, now)
  }

  /** Stays pending, due again at `nextAttemptAt`. Only applies to a pending row. */
  async outboxMarkRetry(id: string, attempts: number, nextAttemptAt: number, error: string, now: number): Promise<void> {
    await this.#pace()
    this.#outbox.markRetry(id, attempts, nextAttemptAt, error, now)
  }

  /** Pending → failed (dead letter). Only applies to a pending row. */
  async outboxMarkFailed(id: string, attempts: number, error: string, now: number): Promise<void> {
    await this.#pace()
    this.#outbox.markFailed(id, attempts, error, now)
  }

  /** Rows ordered by created_at_ms then id. */
  async outboxList(filter: OutboxFilter = {}): Promise<OutboxRow[]> {
    assertStringKeys('outboxList', {}, { id: filter.id, status: filter.status })
    await this.#pace()
    return this.#outbox.list(filter)
  }

  async outboxCount(status: OutboxStatus): Promise<number> {
    assertStringKeys('outboxCount', { status })
    await this.#pace()
    return this.#outbox.count(status)
  }

  /** Failed → pending, due `now`, attempts reset to 0 (last_error kept). False otherwise. */
  async outboxRequeue(id: string, now: number): Promise<boolean> {
    assertStringKeys('outboxRequeue', { id })
    await this.#pace()
    return this.#outbox.requeue(id, now)
  }

  // ---- workers (workers.ts)

  async upsertWorker(info: WorkerInfo): Promise<void> {
    await this.#pace()
    this.#workers.upsert(info)
  }

  /** Ordered by worker_id. */
  async listWorkers(): Promise<WorkerInfo[]> {
    await this.#pace()
    return this.#workers.list()
  }

  async saveWorkerState(state: WorkerStateDoc): Promise<boolean> {
    await this.#pace()
    return this.#workers.saveState(state)
  }

  async getWorkerState(workerId: string): Promise<WorkerStateDoc | null> {
    assertStringKeys('getWorkerState', { workerId })
    await this.#pace()
    return this.#workers.getState(workerId)
  }
}
