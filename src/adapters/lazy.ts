/**
 * The real adapters as the main entry exports them: same names and options as `flowkit/kafka`'s
 * KafkaBus and `flowkit/mongo`'s MongoStore, but the driver is loaded on first use, so
 * `import 'flowkit'` stays light (the Kafka client alone takes most of a second to load) for
 * programs that run on the embedded runtime.
 */
import { ErrorCode, FlowkitError } from '../errors.ts'
import type { Bus, BusRecord, SubscribeOptions, Subscription, TopicSpec } from '../ports/bus.ts'
import type {
  ArtifactDoc,
  ArtifactQuery,
  ArtifactWrite,
  BatchMetricsWrite,
  NodeGuard,
  NodePatch,
  OutboxEnqueue,
  OutboxRow,
  OutboxStatus,
  RunView,
  Store,
  StreamClaim,
  TaskDoc,
  TaskPatch,
  TaskStatus,
  WorkerInfo,
  WorkerStateDoc,
} from '../ports/store.ts'
import type { KafkaBusOptions } from './kafka/bus.ts'
import type { MongoStoreOptions } from './mongo/store.ts'
import { dbNameFromUrl } from './mongo/url.ts'

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
    this.#options = options
  }

  #bus(): Promise<Bus> {
    this.#impl ??= import('./kafka/bus.ts').then((m) => new m.KafkaBus(this.#options))
    return this.#impl
  }

  async ensureTopics(topics: TopicSpec[]): Promise<void> {
    return (await this.#bus()).ensureTopics(topics)
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
    this.#options = options
    this.dbName = options.dbName ?? dbNameFromUrl(url) ?? 'flowkit'
  }

  #store(): Promise<Store> {
    if (this.#closed) return Promise.reject(new FlowkitError(ErrorCode.Closed, 'store is closed'))
    this.#impl ??= import('./mongo/store.ts').then((m) => new m.MongoStore(this.#options))
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
  async getTask(taskId: string): Promise<TaskDoc | null> {
    return (await this.#store()).getTask(taskId)
  }
  async getRunView(taskId: string, nodeId: string): Promise<RunView | null> {
    return (await this.#store()).getRunView(taskId, nodeId)
  }
  async listTasks(filter?: { statuses?: readonly TaskStatus[]; limit?: number }): Promise<TaskDoc[]> {
    return (await this.#store()).listTasks(filter)
  }
  async transitionNode(taskId: string, nodeId: string, guard: NodeGuard, patch: NodePatch, now: number): Promise<TaskDoc | null> {
    return (await this.#store()).transitionNode(taskId, nodeId, guard, patch, now)
  }
  async updateTask(taskId: string, guard: { status?: readonly TaskStatus[] }, patch: TaskPatch, now: number): Promise<TaskDoc | null> {
    return (await this.#store()).updateTask(taskId, guard, patch, now)
  }
  async hasEvent(key: string): Promise<boolean> {
    return (await this.#store()).hasEvent(key)
  }
  async recordEventOnce(key: string, info: { task_id: string; node_id: string; kind: string }, now: number): Promise<boolean> {
    return (await this.#store()).recordEventOnce(key, info, now)
  }
  async upsertBatchMetrics(row: BatchMetricsWrite, now: number): Promise<Record<string, unknown> | null> {
    return (await this.#store()).upsertBatchMetrics(row, now)
  }
  async listBatchMetrics(taskId: string, nodeId: string): Promise<{ batch_uid: string; metrics: Record<string, unknown> }[]> {
    return (await this.#store()).listBatchMetrics(taskId, nodeId)
  }
  async getBatchMetrics(taskId: string, nodeId: string, batchUid: string): Promise<Record<string, unknown> | null> {
    return (await this.#store()).getBatchMetrics(taskId, nodeId, batchUid)
  }
  async upsertArtifact(artifact: ArtifactWrite, now: number): Promise<boolean> {
    return (await this.#store()).upsertArtifact(artifact, now)
  }
  async listArtifacts(taskId: string, query?: ArtifactQuery): Promise<ArtifactDoc[]> {
    return (await this.#store()).listArtifacts(taskId, query)
  }
  async getArtifact(taskId: string, nodeId: string, batchUid: string | null): Promise<ArtifactDoc | null> {
    return (await this.#store()).getArtifact(taskId, nodeId, batchUid)
  }
  async claimStreamBatch(claim: StreamClaim, now: number): Promise<boolean> {
    return (await this.#store()).claimStreamBatch(claim, now)
  }
  async outboxEnqueue(row: OutboxEnqueue, now: number): Promise<boolean> {
    return (await this.#store()).outboxEnqueue(row, now)
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
  async outboxRequeue(id: string, now: number): Promise<boolean> {
    return (await this.#store()).outboxRequeue(id, now)
  }
  async purgeBefore(cutoff: number): Promise<{ events: number; outbox: number }> {
    return (await this.#store()).purgeBefore(cutoff)
  }
  async upsertWorker(info: WorkerInfo): Promise<void> {
    return (await this.#store()).upsertWorker(info)
  }
  async listWorkers(): Promise<WorkerInfo[]> {
    return (await this.#store()).listWorkers()
  }
  async saveWorkerState(state: WorkerStateDoc): Promise<void> {
    return (await this.#store()).saveWorkerState(state)
  }
  async getWorkerState(workerId: string): Promise<WorkerStateDoc | null> {
    return (await this.#store()).getWorkerState(workerId)
  }
}
