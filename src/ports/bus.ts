/**
 * Bus port: Kafka semantics, also in memory.
 *
 * - Topics have N partitions; a record's key picks its partition (murmur2, as Java clients do),
 *   so all records of one key are delivered in order.
 * - Consumers join a group; the group's members share the topic's partitions.
 * - The handler is called for one record of a partition at a time, in offset order. When it
 *   resolves, the record's offset is committed (explicit commit after handling). When it throws,
 *   the same record is retried after a short backoff (the partition waits): at-least-once.
 *   Handlers that must never block a partition (malformed input) catch and return instead.
 * - A group that restarts resumes from its committed offset; a new group starts from the earliest
 *   record unless `fromLatest` is set.
 * - `pause()` stops fetching new records for the subscription (backpressure); `resume()` restarts.
 */
export interface BusRecord {
  topic: string
  key: string | null
  value: string
  headers?: Record<string, string>
}

export interface BusMessage extends BusRecord {
  partition: number
  offset: number
  /** Producer or broker timestamp, epoch ms. */
  timestamp: number
}

export type BusHandler = (message: BusMessage) => Promise<void>

export interface SubscribeOptions {
  groupId: string
  topics: string[]
  handler: BusHandler
  /** Start a brand-new group at the end of the topics instead of the beginning. Default false. */
  fromLatest?: boolean
  /** Optional label for logs. */
  name?: string
}

export interface Subscription {
  readonly groupId: string
  pause(): void
  resume(): void
  readonly paused: boolean
  /** Leaves the group; in-flight handlers finish, their commits are kept. Idempotent. */
  close(): Promise<void>
}

export interface TopicSpec {
  name: string
  partitions?: number
}

export interface Bus {
  /** Creates missing topics (existing ones are fine) and waits until they are usable. */
  ensureTopics(topics: TopicSpec[]): Promise<void>
  /** Sends records; resolves once the bus has them (acked). Records of one call may be batched. */
  produce(records: BusRecord[]): Promise<void>
  subscribe(options: SubscribeOptions): Promise<Subscription>
  /** Closes every subscription and the producer. Idempotent. */
  close(): Promise<void>
}
