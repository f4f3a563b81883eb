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
 * - A `batchHandler` instead receives every record of one partition that is available now (up to
 *   `maxBatch`), in offset order; when it resolves, the last record's offset is committed; when it
 *   throws, the same batch (possibly grown) is delivered again after a short backoff. Different
 *   partitions' batches may be in flight at once. This lets a consumer apply many records in
 *   memory and acknowledge them together once one durable write covers them (group commit).
 * - A group that restarts resumes from its committed offset; a new group starts from the earliest
 *   record unless `fromLatest` is set.
 * - `pause()` stops fetching new records for the subscription (backpressure); `resume()` restarts.
 */
export interface BusRecord {
  topic: string
  key: string | null
  value: string
  headers?: Record<string, string>
  /**
   * Optional: the object `value` is the JSON text of, from a producer in the same process (equal
   * to `JSON.parse(value)`; nobody changes it once produced). A bus in memory delivers it with the
   * record, so a consumer need not parse `value` again; a bus on the network ignores it (its
   * consumers get `value` only).
   */
  decoded?: object
}

/**
 * A record (or a message of a bus in memory) whose `value` is the JSON text of its `decoded`, made
 * the first time it is read: a bus in memory carries it without reading `value`, so its text is
 * made only if someone reads it (a bus on the network, a test, a dead letter). `value` is a getter
 * of its class: a copy made by spreading one has no `value` (copy with copyMessage).
 */
export abstract class TextLater {
  abstract readonly decoded: object
  abstract get value(): string
  /** At least the length of the text, when its producer knows it (a size check then need not make the text). */
  abstract readonly lengthBound: number | undefined
}

class LaterRecord extends TextLater implements BusRecord {
  readonly topic: string
  readonly key: string | null
  readonly decoded: object
  headers?: Record<string, string>
  readonly lengthBound: number | undefined
  #text: string | undefined = undefined

  constructor(topic: string, key: string | null, decoded: object, lengthBound: number | undefined) {
    super()
    this.topic = topic
    this.key = key
    this.decoded = decoded
    this.lengthBound = lengthBound
  }

  get value(): string {
    this.#text ??= JSON.stringify(this.decoded)
    return this.#text
  }
}

/**
 * A record of `decoded` (handed over: never changed again) whose `value`, its JSON text, is made
 * the first time it is read, once: anything that reads it gets the text an eager record carries.
 * `lengthBound`: at least the length of that text, if the producer knows one.
 */
export function encodedLater(topic: string, key: string | null, decoded: object, lengthBound?: number): BusRecord {
  return new LaterRecord(topic, key, decoded, lengthBound)
}

/** Whether `value` of `r` is made on first read (encodedLater): a memory bus then does not read it. */
export function isTextLater(r: BusRecord): r is BusRecord & TextLater {
  return r instanceof TextLater
}

export interface BusMessage extends BusRecord {
  partition: number
  offset: number
  /** Producer or broker timestamp, epoch ms. */
  timestamp: number
}

export type BusHandler = (message: BusMessage) => Promise<void>

/** Receives a batch of one partition's records, in offset order (never empty). */
export type BusBatchHandler = (messages: BusMessage[]) => Promise<void>

export interface SubscribeOptions {
  groupId: string
  topics: string[]
  /** Called per record. Exactly one of `handler` and `batchHandler` is given. */
  handler?: BusHandler
  /** Called per batch of one partition's available records (see the port's notes). */
  batchHandler?: BusBatchHandler
  /** Most records in one batch (batchHandler only). Default 500. */
  maxBatch?: number
  /** Start a brand-new group at the end of the topics instead of the beginning. Default false. */
  fromLatest?: boolean
  /** Optional label for logs. */
  name?: string
  /**
   * Optional stable identity of this member across process restarts (Kafka: `group.instance.id`,
   * static membership): a restarted member with the same id takes over its predecessor's
   * partitions at once instead of waiting until the dead member's session times out. Unique
   * among the group's live members; [a-zA-Z0-9._-], at most 200 characters. Buses without group
   * membership (memory) ignore it.
   */
  instanceId?: string
  /**
   * Called with this member's whole assignment each time it changes (partitions gained or lost in
   * a rebalance), before any record of a gained partition is handled; `generation` is the group's
   * generation of that assignment. Lets a consumer own what the partitions stand for (e.g. the
   * coordinator owns the tasks of its partitions). With the memory bus and with the cooperative
   * assignor a partition is reported to its new owner only after its previous owner was reported
   * losing it; with Kafka's default (eager) assignor the two reports may come in either order.
   */
  onAssignment?: (assigned: TopicPartition[], generation: number) => void
  /**
   * 'cooperative': incremental rebalancing (Kafka `cooperative-sticky`): a member joining or
   * leaving moves only the partitions it must, the others keep being consumed. Default: the bus's
   * own assignor (Kafka round robin, memory range).
   */
  assignor?: 'cooperative'
}

export interface TopicPartition {
  topic: string
  partition: number
}

export interface Subscription {
  readonly groupId: string
  pause(): void
  resume(): void
  readonly paused: boolean
  /**
   * Resolves once every record that was in this subscription's partitions when they were first
   * assigned to it has been handled (the backlog is replayed). Resolves at once for a
   * subscription that started at the end (`fromLatest`) or found nothing to replay.
   */
  caughtUp(): Promise<void>
  /**
   * Resolves once every record that is in this subscription's owned partitions now (at the call)
   * has been handled and committed, or the partition moved to another member. Used before a
   * decision that must not overtake queued records (a lease judged expired while its holder's
   * reports still wait in the topic). Optional: a bus without it is treated as drained.
   */
  drained?(): Promise<void>
  /**
   * Wall-clock ms when the group last confirmed this member (a heartbeat answered, a join
   * completed). A member that has not been confirmed for longer than the group's session timeout
   * may have been replaced by another one (it was paused, partitioned away): it must not act on
   * what its partitions stand for until confirmed again. Optional: a bus without membership
   * (memory) is always confirmed.
   */
  confirmedAt?(): number
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
  /** How many partitions `topic` has (an existing topic; ensureTopics first). */
  partitionCount(topic: string): Promise<number>
  /** Sends records; resolves once the bus has them (acked). Records of one call may be batched. */
  produce(records: BusRecord[]): Promise<void>
  subscribe(options: SubscribeOptions): Promise<Subscription>
  /**
   * How long a group member that dies without leaving (a killed process) keeps its partitions
   * before the group gives them to another member. Absent: members cannot die that way (the
   * memory bus), nothing to wait for.
   */
  readonly sessionTimeoutMs?: number
  /** Closes every subscription and the producer. Idempotent. */
  close(): Promise<void>
}
