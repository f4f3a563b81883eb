/**
 * Store on MongoDB (official driver), restricted to what FerretDB 1.x also supports: single-document
 * updates, unique-index inserts; no transactions, positional operators, arrayFilters, nested
 * arrays, keys with '.' or a leading '$', NaN/Infinity, TTL/partial indexes, change streams or
 * `$lookup`/`$facet`. Semantics follow the memory store (the conformance suite
 * test/conformance/store.suite.ts pins them down for both).
 *
 * FerretDB 1.x (on SQLite) uses no index for lookups: a filter on exact `_id` is run by SQLite,
 * scanning the collection up to the match (about 4.5 µs per 2 KB document), any other filter
 * (`$in` or ranges on `_id` too) by FerretDB on every document (about 48 µs each), while inserts,
 * and their duplicate-key check, take constant time. The hot paths are therefore inserts only: journal entries, batch
 * metrics rows, artifacts (insert first, update only when the key exists) and stream claims.
 *
 * This file holds the Store verbs; the connection (options, connect, schema, read-only mode, error
 * mapping) is connection.ts, and each verb's storage lives in a module per concern (layouts are
 * described there):
 * - schema.ts: collection names, indexes, shared write helpers;
 * - tasks.ts: task snapshots (`tasks`) and their journal (`journal`);
 * - artifacts.ts: `artifacts`, `metrics_raw`, `stream_progress`;
 * - outbox.ts: `outbox`, `outbox_sent`;
 * - workers.ts: `workers`, `worker_state`.
 * User JSON is stored as itself when BSON-safe, else as JSON text in `<field>_json` (codec.ts).
 */
import type { Collection, Document } from 'mongodb'
import { ErrorCode, FlowkitError } from '../../errors.ts'
import type {
  AttemptClaim,
  Checkpoint,
  CheckpointWrite,
  ArtifactDoc,
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
import { assertNodeId, assertStringKeys, assertStringList } from '../../ports/store-rules.ts'
import * as artifacts from './artifacts.ts'
import { attemptHolder, claimAttempt, claimAttempts, getCheckpoint, saveCheckpoint } from './claims.ts'
import { MongoConnection, type MongoStoreOptions } from './connection.ts'
import { Merger } from './listings.ts'
import * as outbox from './outbox.ts'
import * as retention from './retention.ts'
import type { Collections, MongoCollectionKey } from './schema.ts'
import { encodeEntry, encodeNewTask, encodeSnapshot } from './task-codec.ts'
import { MongoTasks } from './tasks.ts'
import * as workers from './workers.ts'

export { MONGO_COLLECTIONS } from './schema.ts'
export type { MongoCollectionKey } from './schema.ts'
export type { MongoStoreOptions } from './connection.ts'

export class MongoStore implements Store {
  readonly #conn: MongoConnection
  readonly #tasks = new MongoTasks()
  /** Concurrent artifact listings merged into one query on FerretDB (listings.ts). */
  readonly #listings = new Merger<artifacts.ArtifactListing, ArtifactDoc[]>((batch) => this.#run('listArtifacts', (c) => artifacts.listArtifactsMerged(c, batch)))
  /** Concurrent lookups of artifacts by their fields (a Python worker's) merged on FerretDB. */
  readonly #byFields = new Merger<artifacts.ArtifactRef, ArtifactDoc | null>((batch) => this.#run('getArtifact', (c) => artifacts.findArtifactsByFields(c, batch)))

  /** A store on the server named by FLOWKIT_MONGO_URL, with other options as given. */
  static fromEnv(options: Omit<MongoStoreOptions, 'url' | 'uri'> = {}, env: NodeJS.ProcessEnv = process.env): MongoStore {
    const url = env['FLOWKIT_MONGO_URL']
    if (!url) throw new FlowkitError(ErrorCode.Config, 'MongoStore: FLOWKIT_MONGO_URL is not set')
    return new MongoStore({ ...options, url })
  }

  constructor(options: MongoStoreOptions) {
    this.#conn = new MongoConnection(options)
  }

  /** The database name in use (for tests and operators). */
  get dbName(): string {
    return this.#conn.dbName
  }

  /** The full name of a collection (prefix included). */
  collectionName(key: MongoCollectionKey): string {
    return this.#conn.collectionName(key)
  }

  // ---- lifecycle (connection.ts)

  async init(): Promise<void> {
    await this.#conn.ready()
  }

  /**
   * The driver collection behind `key` (connecting first): an escape hatch for operators and tests
   * (inspecting the stored layout, migrations). Writes through it bypass the store's rules.
   */
  async rawCollection(key: MongoCollectionKey): Promise<Collection<Document>> {
    return this.#conn.rawCollection(key)
  }

  async close(): Promise<void> {
    await this.#conn.close()
  }

  #open(): void {
    this.#conn.open()
  }

  /** Runs `fn` on the collections, mapping driver errors. Arguments are checked before a call. */
  #run<T>(op: string, fn: (c: Collections) => Promise<T>): Promise<T> {
    return this.#conn.run(op, fn)
  }

  // ---- tasks: snapshot + journal

  async createTask(task: TaskDoc): Promise<void> {
    this.#open()
    const doc = encodeNewTask(task)
    await this.#run('createTask', (c) => this.#tasks.create(c, doc))
  }

  async createTasks(tasks: readonly TaskDoc[]): Promise<(Error | null)[]> {
    this.#open()
    const docs = tasks.map(encodeNewTask)
    return this.#run('createTasks', (c) => this.#tasks.createMany(c, docs))
  }

  async getTask(taskId: string): Promise<TaskDoc | null> {
    assertStringKeys('getTask', { taskId })
    this.#open()
    return this.#run('getTask', (c) => this.#tasks.get(c, taskId, this.#conn.ferret))
  }

  async getRunView(taskId: string, nodeId: string): Promise<RunView | null> {
    assertStringKeys('getRunView', { taskId })
    this.#open()
    assertNodeId(nodeId)
    return this.#run('getRunView', (c) => this.#tasks.runView(c, taskId, nodeId))
  }

  async listTasks(filter: { statuses?: readonly TaskStatus[]; limit?: number } = {}): Promise<TaskDoc[]> {
    if (filter.statuses !== undefined) assertStringList('listTasks', 'statuses', filter.statuses)
    this.#open()
    return this.#run('listTasks', (c) => this.#tasks.list(c, filter))
  }

  /** Ids of tasks whose snapshot status is one of `statuses`: one projected query, no journal read. */
  async listTaskIds(statuses: readonly TaskStatus[]): Promise<string[]> {
    return (await this.listTaskStatuses(statuses)).map((t) => t.id)
  }

  async listTaskStatuses(statuses: readonly TaskStatus[]): Promise<Array<{ id: string; status: TaskStatus }>> {
    assertStringList('listTaskIds', 'statuses', statuses)
    assertStringList('listTaskStatuses', 'statuses', statuses)
    this.#open()
    if (statuses.length === 0) return []
    return this.#run('listTaskStatuses', async (c) =>
      (await c.tasks.find({ status: { $in: [...statuses] }, nodes: { $exists: true } }, { projection: { _id: 1, status: 1 } }).toArray()).map((d) => ({ id: String(d['_id']), status: d['status'] as TaskStatus })),
    )
  }

  async appendJournal(entries: readonly JournalEntry[]): Promise<boolean[]> {
    this.#open()
    const docs = entries.map(encodeEntry)
    if (docs.length === 0) return []
    return this.#run('appendJournal', (c) => this.#tasks.append(c, docs))
  }

  async readJournal(taskIds: readonly string[], afterSeq = 0): Promise<JournalEntry[]> {
    assertStringList('readJournal', 'taskIds', taskIds)
    this.#open()
    return this.#run('readJournal', (c) => this.#tasks.read(c, taskIds, afterSeq, this.#conn.ferret))
  }

  async writeSnapshot(task: VersionedTask, now: number): Promise<boolean> {
    this.#open()
    const update = encodeSnapshot(task, now)
    return this.#run('writeSnapshot', (c) => this.#tasks.writeSnapshot(c, task.id, task.v, update, this.#conn.ferret))
  }

  // ---- batch metrics

  async insertBatchMetrics(rows: readonly BatchMetricsWrite[], now: number): Promise<void> {
    this.#open()
    const docs = artifacts.encodeMetrics(rows, now)
    if (docs.length === 0) return
    await this.#run('insertBatchMetrics', (c) => artifacts.insertMetrics(c, docs))
  }

  async listBatchMetrics(taskId: string, nodeId?: string): Promise<BatchMetricsRow[]> {
    assertStringKeys('listBatchMetrics', { taskId }, { nodeId })
    this.#open()
    return this.#run('listBatchMetrics', (c) => artifacts.listMetrics(c, taskId, nodeId))
  }

  // ---- retention

  async purgeBefore(cutoff: number): Promise<PurgeCounts> {
    this.#open()
    return this.#run('purgeBefore', (c) => retention.purgeBefore(c, cutoff))
  }

  async purgeTasks(cutoff: number, limit: number): Promise<string[]> {
    this.#open()
    return this.#run('purgeTasks', (c) => retention.purgeTasks(c, cutoff, limit))
  }

  // ---- artifacts

  async upsertArtifacts(list: readonly ArtifactWrite[], now: number): Promise<boolean[]> {
    this.#open()
    if (list.length === 0) return []
    return this.#run('upsertArtifacts', (c) => artifacts.upsertArtifacts(c, this.#conn.ferret, list, now))
  }

  async upsertArtifact(artifact: ArtifactWrite, now: number): Promise<boolean> {
    this.#open()
    return this.#run('upsertArtifact', (c) => artifacts.upsertArtifact(c, this.#conn.ferret, artifact, now))
  }

  async listArtifacts(taskId: string, query: ArtifactQuery = {}): Promise<ArtifactDoc[]> {
    assertStringKeys('listArtifacts', { taskId }, { nodeId: query.nodeId, status: query.status })
    this.#open()
    if (this.#conn.ferret) return this.#listings.ask({ taskId, query })
    return this.#run('listArtifacts', (c) => artifacts.listArtifacts(c, taskId, query))
  }

  async getArtifact(taskId: string, nodeId: string, batchUid: string | null): Promise<ArtifactDoc | null> {
    assertStringKeys('getArtifact', { taskId, nodeId }, { batchUid })
    this.#open()
    if (!this.#conn.ferret) return this.#run('getArtifact', (c) => artifacts.getArtifact(c, taskId, nodeId, batchUid))
    const own = await this.#run('getArtifact', (c) => artifacts.getOwnArtifact(c, taskId, nodeId, batchUid))
    return own ?? this.#byFields.ask({ taskId, nodeId, batchUid })
  }

  // ---- stream progress

  async claimAttempt(claim: AttemptClaim, now: number): Promise<boolean> {
    this.#open()
    assertNodeId(claim.node_id)
    return this.#run('claimAttempt', (c) => claimAttempt(c, claim, now))
  }

  async claimAttempts(claims: readonly AttemptClaim[], now: number): Promise<boolean[]> {
    this.#open()
    for (const cl of claims) assertNodeId(cl.node_id)
    return this.#run('claimAttempts', (c) => claimAttempts(c, claims, now))
  }

  async saveCheckpoint(cp: CheckpointWrite, now: number): Promise<boolean> {
    this.#open()
    assertNodeId(cp.node_id)
    return this.#run('saveCheckpoint', (c) => saveCheckpoint(c, cp, now))
  }

  async attemptHolder(taskId: string, nodeId: string, attemptEpoch: number): Promise<string | null> {
    this.#open()
    if (typeof taskId !== 'string' || !Number.isSafeInteger(attemptEpoch)) {
      throw new FlowkitError(ErrorCode.InvalidKey, `attemptHolder: a task id (string) and an attempt epoch (integer), got ${typeof taskId} and ${String(attemptEpoch)}`)
    }
    assertNodeId(nodeId)
    return this.#run('attemptHolder', (c) => attemptHolder(c, taskId, nodeId, attemptEpoch))
  }

  async getCheckpoint(taskId: string, nodeId: string): Promise<Checkpoint | null> {
    assertStringKeys('getCheckpoint', { taskId, nodeId })
    this.#open()
    return this.#run('getCheckpoint', (c) => getCheckpoint(c, taskId, nodeId))
  }

  async claimStreamBatches(claims: readonly StreamClaim[], now: number): Promise<boolean[]> {
    this.#open()
    return this.#run('claimStreamBatches', (c) => artifacts.claimStreamBatches(c, claims, now))
  }

  async claimStreamBatch(claim: StreamClaim, now: number): Promise<boolean> {
    this.#open()
    return this.#run('claimStreamBatch', (c) => artifacts.claimStreamBatch(c, claim, now))
  }

  // ---- outbox

  async outboxEnqueue(row: OutboxEnqueue, now: number, parked?: { attempts: number; error: string }): Promise<boolean> {
    this.#open()
    return this.#run('outboxEnqueue', (c) => outbox.enqueue(c, row, now, parked))
  }

  async outboxClaimDue(now: number, limit: number, claimUntil: number): Promise<OutboxRow[]> {
    this.#open()
    return this.#run('outboxClaimDue', (c) => outbox.claimDue(c, now, limit, claimUntil))
  }

  async outboxMarkSent(id: string, now: number): Promise<void> {
    this.#open()
    await this.#run('outboxMarkSent', (c) => outbox.markSent(c, id, now))
  }

  async outboxMarkRetry(id: string, attempts: number, nextAttemptAt: number, error: string, now: number): Promise<void> {
    this.#open()
    await this.#run('outboxMarkRetry', (c) => outbox.markRetry(c, id, attempts, nextAttemptAt, error, now))
  }

  async outboxMarkFailed(id: string, attempts: number, error: string, now: number): Promise<void> {
    this.#open()
    await this.#run('outboxMarkFailed', (c) => outbox.markFailed(c, id, attempts, error, now))
  }

  async outboxList(filter: OutboxFilter = {}): Promise<OutboxRow[]> {
    assertStringKeys('outboxList', {}, { id: filter.id, status: filter.status })
    this.#open()
    return this.#run('outboxList', (c) => outbox.list(c, filter))
  }

  async outboxCount(status: OutboxStatus): Promise<number> {
    assertStringKeys('outboxCount', { status })
    this.#open()
    return this.#run('outboxCount', (c) => outbox.count(c, status))
  }

  async outboxRequeue(id: string, now: number): Promise<boolean> {
    assertStringKeys('outboxRequeue', { id })
    this.#open()
    return this.#run('outboxRequeue', (c) => outbox.requeue(c, id, now))
  }

  // ---- workers

  async upsertWorker(info: WorkerInfo): Promise<void> {
    this.#open()
    await this.#run('upsertWorker', (c) => workers.upsertWorker(c, info))
  }

  async listWorkers(): Promise<WorkerInfo[]> {
    this.#open()
    return this.#run('listWorkers', (c) => workers.listWorkers(c))
  }

  async saveWorkerState(state: WorkerStateDoc): Promise<boolean> {
    this.#open()
    return this.#run('saveWorkerState', (c) => workers.saveWorkerState(c, state))
  }

  async getWorkerState(workerId: string): Promise<WorkerStateDoc | null> {
    assertStringKeys('getWorkerState', { workerId })
    this.#open()
    return this.#run('getWorkerState', (c) => workers.getWorkerState(c, workerId))
  }
}
