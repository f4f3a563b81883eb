/**
 * The real adapters as the main entry exports them: same names and options as `flowkit/kafka`'s
 * KafkaBus and `flowkit/mongo`'s MongoStore, but the driver is loaded on first use, so
 * `import 'flowkit'` stays light (the Kafka client alone takes most of a second to load) for
 * programs that run on the embedded runtime, and works without the drivers: they are optional
 * peer dependencies. Without its driver, the constructor throws a FlowkitError
 * (MISSING_DEPENDENCY) that names the package to install. Nothing here may import a driver (only
 * types and driver-free modules): test/unit/optional-drivers.test.ts checks it.
 */
import { ErrorCode, FlowkitError, assertDependency, importDependency } from '../errors.ts'
import type { Bus, BusRecord, SubscribeOptions, Subscription, TopicSpec } from '../ports/bus.ts'
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
  RunView,
  Store,
  StreamClaim,
  TaskDoc,
  TaskStatus,
  VersionedTask,
  PurgeCounts,
  WorkerInfo,
  WorkerStateDoc,
} from '../ports/store.ts'
import type { KafkaBusOptions } from './kafka/bus.ts'
import { DEFAULT_SESSION_TIMEOUT_MS } from './kafka/bus-settings.ts'
import type { MongoStoreOptions } from './mongo/store.ts'
import { dbNameFromUrl } from './mongo/url.ts'

const KAFKA_DRIVER = '@platformatic/kafka'
const MONGO_DRIVER = 'mongodb'

export class KafkaBus implements Bus {
  /** A bus on the brokers named by FLOWKIT_KAFKA_BROKERS (comma-separated), with other options as given. */
  static fromEnv(options: Partial<KafkaBusOptions> = {}, env: NodeJS.ProcessEnv = process.env): KafkaBus {
    const brokers = env['FLOWKIT_KAFKA_BROKERS']
    if (!brokers) throw new FlowkitError(ErrorCode.Config, 'kafka bus: FLOWKIT_KAFKA_BROKERS is not set')
    return new KafkaBus({ ...options, brokers })
  }

  readonly #options: KafkaBusOptions
  #impl: Promise<Bus> | null = null

  constructor(options: KafkaBusOptions) {
    const b = options?.brokers
    const list = typeof b === 'string' ? b.split(',') : Array.isArray(b) ? b : []
    if (list.map((x) => String(x).trim()).filter(Boolean).length === 0) {
      throw new FlowkitError(ErrorCode.Config, 'kafka bus: brokers must list at least one host:port')
    }
    assertDependency('KafkaBus', KAFKA_DRIVER)
    this.#options = options
  }

  #bus(): Promise<Bus> {
    this.#impl ??= importDependency('KafkaBus', KAFKA_DRIVER, () => import('./kafka/bus.ts')).then((m) => new m.KafkaBus(this.#options))
    return this.#impl
  }

  async ensureTopics(topics: TopicSpec[]): Promise<void> {
    return (await this.#bus()).ensureTopics(topics)
  }
  get sessionTimeoutMs(): number {
    return this.#options.sessionTimeoutMs ?? DEFAULT_SESSION_TIMEOUT_MS
  }
  async partitionCount(topic: string): Promise<number> {
    return (await this.#bus()).partitionCount(topic)
  }
  async produce(records: BusRecord[]): Promise<void> {
    return (await this.#bus()).produce(records)
  }
  async subscribe(options: SubscribeOptions): Promise<Subscription> {
    return (await this.#bus()).subscribe(options)
  }
  async close(): Promise<void> {
    if (this.#impl === null) return
    return (await this.#impl).close()
  }
}

export class MongoStore implements Store {
  /** A store on the server named by FLOWKIT_MONGO_URL, with other options as given. */
  static fromEnv(options: Omit<MongoStoreOptions, 'url' | 'uri'> = {}, env: NodeJS.ProcessEnv = process.env): MongoStore {
    const url = env['FLOWKIT_MONGO_URL']
    if (!url) throw new FlowkitError(ErrorCode.Config, 'MongoStore: FLOWKIT_MONGO_URL is not set')
    return new MongoStore({ ...options, url })
  }

  readonly #options: MongoStoreOptions
  readonly dbName: string
  #impl: Promise<Store> | null = null
  #closed = false

  constructor(options: MongoStoreOptions) {
    const url = options?.url ?? options?.uri
    if (typeof url !== 'string' || url === '') throw new FlowkitError(ErrorCode.Config, 'MongoStore: url is required')
    assertDependency('MongoStore', MONGO_DRIVER)
    this.#options = options
    this.dbName = options.dbName ?? dbNameFromUrl(url) ?? 'flowkit'
  }

  #store(): Promise<Store> {
    if (this.#closed) return Promise.reject(new FlowkitError(ErrorCode.Closed, 'store is closed'))
    this.#impl ??= importDependency('MongoStore', MONGO_DRIVER, () => import('./mongo/store.ts')).then((m) => new m.MongoStore(this.#options))
    return this.#impl
  }

  async init(): Promise<void> {
    return (await this.#store()).init()
  }
  async close(): Promise<void> {
    this.#closed = true
    if (this.#impl === null) return
    return (await this.#impl).close()
  }
  async createTask(task: TaskDoc): Promise<void> {
    return (await this.#store()).createTask(task)
  }
  async createTasks(tasks: readonly TaskDoc[]): Promise<(Error | null)[]> {
    return (await this.#store()).createTasks(tasks)
  }
  async getTask(taskId: string): Promise<TaskDoc | null> {
    return (await this.#store()).getTask(taskId)
  }
  async getRunView(taskId: string, nodeId: string): Promise<RunView | null> {
    return (await this.#store()).getRunView(taskId, nodeId)
  }
  async listTasks(filter?: { statuses?: readonly TaskStatus[]; limit?: number }): Promise<TaskDoc[]> {
    return (await this.#store()).listTasks(filter)
  }
  async listTaskIds(statuses: readonly TaskStatus[]): Promise<string[]> {
    return (await this.#store()).listTaskIds(statuses)
  }
  async listTaskStatuses(statuses: readonly TaskStatus[]): Promise<Array<{ id: string; status: TaskStatus }>> {
    return (await this.#store()).listTaskStatuses(statuses)
  }
  async appendJournal(entries: readonly JournalEntry[]): Promise<boolean[]> {
    return (await this.#store()).appendJournal(entries)
  }
  async readJournal(taskIds: readonly string[], afterSeq?: number): Promise<JournalEntry[]> {
    return (await this.#store()).readJournal(taskIds, afterSeq)
  }
  async writeSnapshot(task: VersionedTask, now: number): Promise<boolean> {
    return (await this.#store()).writeSnapshot(task, now)
  }
  async insertBatchMetrics(rows: readonly BatchMetricsWrite[], now: number): Promise<void> {
    return (await this.#store()).insertBatchMetrics(rows, now)
  }
  async listBatchMetrics(taskId: string, nodeId?: string): Promise<BatchMetricsRow[]> {
    return (await this.#store()).listBatchMetrics(taskId, nodeId)
  }
  async upsertArtifact(artifact: ArtifactWrite, now: number): Promise<boolean> {
    return (await this.#store()).upsertArtifact(artifact, now)
  }
  async upsertArtifacts(list: readonly ArtifactWrite[], now: number): Promise<boolean[]> {
    return (await this.#store()).upsertArtifacts(list, now)
  }
  async listArtifacts(taskId: string, query?: ArtifactQuery): Promise<ArtifactDoc[]> {
    return (await this.#store()).listArtifacts(taskId, query)
  }
  async getArtifact(taskId: string, nodeId: string, batchUid: string | null): Promise<ArtifactDoc | null> {
    return (await this.#store()).getArtifact(taskId, nodeId, batchUid)
  }
  async claimAttempt(claim: AttemptClaim, now: number): Promise<boolean> {
    return (await this.#store()).claimAttempt(claim, now)
  }
  async claimAttempts(claims: readonly AttemptClaim[], now: number): Promise<boolean[]> {
    return (await this.#store()).claimAttempts(claims, now)
  }
  async saveCheckpoint(cp: CheckpointWrite, now: number): Promise<boolean> {
    return (await this.#store()).saveCheckpoint(cp, now)
  }
  async attemptHolder(taskId: string, nodeId: string, attemptEpoch: number): Promise<string | null> {
    return (await this.#store()).attemptHolder(taskId, nodeId, attemptEpoch)
  }
  async getCheckpoint(taskId: string, nodeId: string): Promise<Checkpoint | null> {
    return (await this.#store()).getCheckpoint(taskId, nodeId)
  }
  async claimStreamBatches(claims: readonly StreamClaim[], now: number): Promise<boolean[]> {
    return (await this.#store()).claimStreamBatches(claims, now)
  }
  async claimStreamBatch(claim: StreamClaim, now: number): Promise<boolean> {
    return (await this.#store()).claimStreamBatch(claim, now)
  }
  async outboxEnqueue(row: OutboxEnqueue, now: number, parked?: { attempts: number; error: string }): Promise<boolean> {
    return (await this.#store()).outboxEnqueue(row, now, parked)
  }
  async outboxClaimDue(now: number, limit: number, claimUntil: number): Promise<OutboxRow[]> {
    return (await this.#store()).outboxClaimDue(now, limit, claimUntil)
  }
  async outboxMarkSent(id: string, now: number): Promise<void> {
    return (await this.#store()).outboxMarkSent(id, now)
  }
  async outboxMarkRetry(id: string, attempts: number, nextAttemptAt: number, error: string, now: number): Promise<void> {
    return (await this.#store()).outboxMarkRetry(id, attempts, nextAttemptAt, error, now)
  }
  async outboxMarkFailed(id: string, attempts: number, error: string, now: number): Promise<void> {
    return (await this.#store()).outboxMarkFailed(id, attempts, error, now)
  }
  async outboxList(filter?: { status?: OutboxStatus; limit?: number }): Promise<OutboxRow[]> {
    return (await this.#store()).outboxList(filter)
  }
  async outboxCount(status: OutboxStatus): Promise<number> {
    return (await this.#store()).outboxCount(status)
  }
  async outboxRequeue(id: string, now: number): Promise<boolean> {
    return (await this.#store()).outboxRequeue(id, now)
  }
  async purgeBefore(cutoff: number): Promise<PurgeCounts> {
    return (await this.#store()).purgeBefore(cutoff)
  }
  async purgeTasks(cutoff: number, limit: number): Promise<string[]> {
    return (await this.#store()).purgeTasks(cutoff, limit)
  }
  async upsertWorker(info: WorkerInfo): Promise<void> {
    return (await this.#store()).upsertWorker(info)
  }
  async listWorkers(): Promise<WorkerInfo[]> {
    return (await this.#store()).listWorkers()
  }
  async saveWorkerState(state: WorkerStateDoc): Promise<boolean> {
    return (await this.#store()).saveWorkerState(state)
  }
  async getWorkerState(workerId: string): Promise<WorkerStateDoc | null> {
    return (await this.#store()).getWorkerState(workerId)
  }
}
