/**
 * Kafka Bus (see src/ports/bus.ts) on `@platformatic/kafka` 2.x.
 *
 * Producer: one idempotent producer per bus (acks=all, bounded retries), string serializers, the
 * Java-compatible murmur2 partitioner for keys (the library's default is not Java-compatible) and
 * a per-topic round robin for null keys. All records of one `produce()` call go in one `send()`.
 *
 * Subscriptions: one consumer per subscription (classic group protocol, `autocommit: false`),
 * one MessagesStream in mode COMMITTED with fallback EARLIEST (LATEST for `fromLatest`), values
 * read as strings with a deserializer that cannot throw. The stream only feeds per-partition
 * buffers; one partition worker per owned partition hands records to the handler one at a time in
 * offset order (different partitions concurrently) — or, for a `batchHandler`, every buffered
 * record of the partition up to `maxBatch` — and, when the handler resolves, marks the last
 * `offset + 1` for commit. Commits are coalesced, monotonic per partition, one request in flight
 * per subscription, and only for partitions this member still owns. A throwing handler gets the
 * same record (the same first offset; a batch may have grown) again after a capped exponential
 * backoff (20 ms doubling to 1 s).
 *
 * caughtUp: when a partition is first assigned, its end offset is listed; the backlog is replayed
 * once the committed offsets reach those ends (bus-replay.ts).
 *
 * Rebalances: on every group join the assignment is diffed. Revoked partitions stop after their
 * in-flight handler, their buffered (uncommitted) records are dropped and nothing more is committed
 * for them (the new owner gets them again from the committed offset). A gained partition starts
 * with an empty buffer; its stale stream position is forgotten so the stream restarts it from the
 * group's committed offset (or the fallback). Records that arrive again (the stream re-reads from
 * the committed offset after a join) are recognised by offset and dropped. From the moment a
 * member rejoins until its join completes it sends no commits (the group would refuse them, and
 * the library answers a refused commit with one more rejoin). With `assignor: 'cooperative'`
 * (cooperative-sticky) a rebalance takes two rounds: partitions that move are revoked (and
 * reported to `onAssignment`) before the member rejoins, and assigned to their new owner in the
 * next round; the others stay where they are.
 *
 * Pause: `pause()` stops the stream's fetch loop and the partition workers; records that were
 * already fetched stay buffered and are delivered after `resume()`. The stream is also paused
 * while the buffers hold more than `maxBufferedRecords` (internal backpressure).
 *
 * Failures: a stream that dies is consumed again (with backoff) while the subscription is open; a
 * consumer whose rejoin failed rejoins again with backoff. No client error event is left without a
 * listener.
 *
 * Lost topics (bus-topics.ts): a broker that lost its data, or a deleted topic, is noticed by a
 * periodic check and after errors that hint at it; the topics are created again with their
 * partition count, the producer is replaced (its producer id and sequences belong to the old
 * logs) and the affected subscriptions start over with a new consumer (bus-session.ts); a produce
 * that failed on a missing topic is sent once more after that. Warning `bus.topics_recreated`.
 *
 * Static membership: with an `instanceId` (bus option, or a subscription's own) each consumer joins
 * with a `group.instance.id`, so a restarted process takes its dead predecessor's place in the
 * group at once instead of after the session timeout. A clean close still leaves the group. Errors surface as FlowkitError BUS_UNAVAILABLE (retryable) or BUS_ERROR; SASL
 * credentials never appear in an error message or a log record.
 *
 * Modules: bus-settings.ts (options, settings, shared helpers), bus-errors.ts (error mapping,
 * redaction), bus-topics.ts (creation, the lost-topic watch), bus-worker.ts, bus-partitions.ts
 * (partition ownership, rebalances), bus-commits.ts, bus-replay.ts, bus-session.ts,
 * bus-subscription.ts; this file is the facade (producer, topics, subscriptions).
 *
 * Known limit: while a group rebalances, the previous owner of a partition may still be running
 * the handler of a record that the new owner also receives (also with the cooperative assignor:
 * the library does not wait for in-flight handlers before rejoining); delivery stays
 * at-least-once, and a partition is never handled twice at once inside one subscription.
 */
import { Admin, Producer, compatibilityPartitioner, stringSerializers } from '@platformatic/kafka'
import type { MessageToProduce } from '@platformatic/kafka'
import type { Bus, BusRecord, SubscribeOptions, Subscription, TopicSpec } from '../../ports/bus.ts'
import { ErrorCode, FlowkitError } from '../../errors.ts'
import { createLogger } from '../../log.ts'
import type { Logger } from '../../log.ts'
import { checkRecord, checkTopicName } from '../../ports/bus-rules.ts'
import { Redactor, toBusError } from './bus-errors.ts'
import { checkInstanceId, instanceIdFor, retryDelay, sanitizeClientId, settingsFrom } from './bus-settings.ts'
import type { KafkaBusOptions, Settings, StringProducer } from './bus-settings.ts'
import { KafkaSubscription } from './bus-subscription.ts'
import type { BusInternals } from './bus-subscription.ts'
import { TopicWatch, createTopics, isUnknownTopic } from './bus-topics.ts'

export type { KafkaBusOptions, KafkaSaslMechanism, KafkaSaslOptions } from './bus-settings.ts'

type StringMessageToProduce = MessageToProduce<string, string, string, string>

/** Checks the handler options of `subscribe` (exactly one of handler / batchHandler). */
function checkHandlerOptions(options: SubscribeOptions): void {
  const hasHandler = options.handler !== undefined
  const hasBatch = options.batchHandler !== undefined
  if (hasHandler === hasBatch) throw new FlowkitError(ErrorCode.Config, 'subscribe: give exactly one of handler and batchHandler')
  if (hasHandler && typeof options.handler !== 'function') throw new FlowkitError(ErrorCode.Config, 'subscribe: handler must be a function')
  if (hasBatch && typeof options.batchHandler !== 'function') {
    throw new FlowkitError(ErrorCode.Config, 'subscribe: batchHandler must be a function')
  }
  if (options.maxBatch !== undefined && (!Number.isInteger(options.maxBatch) || options.maxBatch < 1)) {
    throw new FlowkitError(ErrorCode.Config, 'subscribe: maxBatch must be a positive integer')
  }
  if (options.instanceId !== undefined) checkInstanceId(options.instanceId, 'subscribe: instanceId')
}

export class KafkaBus implements Bus {
  readonly #settings: Settings
  readonly #log: Logger
  readonly #redactor: Redactor
  #producer: StringProducer
  #admin: Admin | null = null
  readonly #subs = new Set<KafkaSubscription>()
  readonly #inflight = new Set<Promise<unknown>>()
  readonly #roundRobin = new Map<string, number>()
  readonly #internals: BusInternals
  readonly #watch: TopicWatch
  #closed = false
  #closing: Promise<void> | null = null

  /** A bus on the brokers named by FLOWKIT_KAFKA_BROKERS (comma-separated), with other options as given. */
  static fromEnv(options: Partial<KafkaBusOptions> = {}, env: NodeJS.ProcessEnv = process.env): KafkaBus {
    const brokers = env['FLOWKIT_KAFKA_BROKERS']
    if (!brokers) throw new FlowkitError(ErrorCode.Config, 'kafka bus: FLOWKIT_KAFKA_BROKERS is not set')
    return new KafkaBus({ ...options, brokers })
  }

  constructor(options: KafkaBusOptions) {
    this.#settings = settingsFrom(options)
    this.#log = (options.logger ?? createLogger({ name: 'flowkit' })).child({ component: 'kafka-bus' })
    this.#redactor = new Redactor([options.sasl?.password])
    this.#producer = this.#newProducer()
    this.#watch = new TopicWatch({
      settings: this.#settings,
      log: this.#log,
      redactor: this.#redactor,
      admin: () => this.#adminClient(),
      assertOpen: () => this.#assertOpen(),
      replaced: (ids, cluster, since) => this.#onTopicsReplaced(ids, cluster, since),
    })
    this.#internals = {
      settings: this.#settings,
      log: this.#log,
      redactor: this.#redactor,
      forget: (sub) => {
        this.#subs.delete(sub)
      },
      troubled: () => this.#watch.poke(),
      admin: () => {
        this.#assertOpen() // never a new admin client after close (it would not be closed)
        return this.#adminClient()
      },
    }
  }

  async ensureTopics(topics: TopicSpec[]): Promise<void> {
    this.#assertOpen()
    if (!Array.isArray(topics)) throw new FlowkitError(ErrorCode.Config, 'ensureTopics: topics must be an array')
    const wanted = new Map<string, number | undefined>()
    for (const spec of topics) {
      checkTopicName(spec?.name)
      if (spec.partitions !== undefined && (!Number.isInteger(spec.partitions) || spec.partitions < 1)) {
        throw new FlowkitError(ErrorCode.Config, `ensureTopics: partitions of ${spec.name} must be a positive integer`)
      }
      if (!wanted.has(spec.name) || spec.partitions !== undefined) wanted.set(spec.name, spec.partitions)
    }
    if (wanted.size === 0) return
    const partitions = new Map([...wanted].map(([name, n]) => [name, n ?? this.#settings.defaultPartitions]))
    const admin = this.#adminClient()
    const run = createTopics(admin, this.#settings, this.#log, this.#redactor, partitions, () => this.#assertOpen())
    try {
      const { metadata } = await this.#track(run)
      this.#watch.learn(metadata, [...partitions.keys()], partitions)
    } catch (err) {
      throw toBusError(err, 'ensureTopics', this.#redactor, this.#closed)
    }
  }

  get sessionTimeoutMs(): number {
    return this.#settings.sessionTimeout
  }

  async partitionCount(topic: string): Promise<number> {
    this.#assertOpen()
    checkTopicName(topic)
    try {
      const metadata = await this.#adminClient().metadata({ topics: [topic], forceUpdate: true })
      const n = metadata.topics.get(topic)?.partitionsCount
      if (n === undefined || n < 1) throw new FlowkitError(ErrorCode.BusUnavailable, `partitionCount: topic ${topic} has no partitions yet`, { retryable: true })
      return n
    } catch (err) {
      throw err instanceof FlowkitError ? err : toBusError(err, 'partitionCount', this.#redactor, this.#closed)
    }
  }

  async produce(records: BusRecord[]): Promise<void> {
    this.#assertOpen()
    if (!Array.isArray(records)) throw new FlowkitError(ErrorCode.BadMessage, 'produce: records must be an array')
    for (const record of records) checkRecord(record)
    if (records.length === 0) return
    const messages: StringMessageToProduce[] = records.map((r) => {
      const m: StringMessageToProduce = { topic: r.topic, value: r.value }
      if (r.key !== null) m.key = r.key
      if (r.headers && Object.keys(r.headers).length > 0) m.headers = new Map(Object.entries(r.headers))
      return m
    })
    const producer = this.#producer
    try {
      await this.#track(producer.send({ messages }))
    } catch (err) {
      if (this.#closed) throw toBusError(err, 'produce', this.#redactor, true)
      // A topic that vanished (or a cluster that lost its data) is recreated by the check; then the
      // records go once more, on the new producer.
      let retry = this.#producer !== producer
      if (!retry && isUnknownTopic(err)) retry = await this.#watch.check()
      else if (!retry) this.#watch.poke()
      if (!retry || this.#closed) throw toBusError(err, 'produce', this.#redactor, this.#closed)
      try {
        await this.#track(this.#producer.send({ messages }))
      } catch (again) {
        throw toBusError(again, 'produce', this.#redactor, this.#closed)
      }
    }
  }

  async subscribe(options: SubscribeOptions): Promise<Subscription> {
    this.#assertOpen()
    if (options === null || typeof options !== 'object') throw new FlowkitError(ErrorCode.Config, 'subscribe: options are required')
    if (typeof options.groupId !== 'string' || options.groupId.trim() === '' || /\s/.test(options.groupId)) {
      throw new FlowkitError(ErrorCode.Config, 'subscribe: groupId must be a non-empty string without whitespace')
    }
    if (!Array.isArray(options.topics) || options.topics.length === 0) {
      throw new FlowkitError(ErrorCode.Config, 'subscribe: topics must be a non-empty array')
    }
    for (const topic of options.topics) checkTopicName(topic)
    checkHandlerOptions(options)
    const sub = new KafkaSubscription(this.#internals, options, this.#uniqueInstanceId(options))
    this.#subs.add(sub)
    try {
      await this.#track(sub.start())
    } catch (err) {
      await sub.close().catch(() => {})
      if (isUnknownTopic(err)) this.#watch.poke()
      throw toBusError(err, `subscribe(${options.groupId})`, this.#redactor, this.#closed)
    }
    if (this.#closed) {
      await sub.close()
      throw new FlowkitError(ErrorCode.Closed, 'kafka bus is closed')
    }
    this.#watch.watch(sub.topics, sub.identity)
    return sub
  }

  close(): Promise<void> {
    this.#closing ??= this.#close()
    return this.#closing
  }

  // ---- Internals ----

  #assertOpen(): void {
    if (this.#closed) throw new FlowkitError(ErrorCode.Closed, 'kafka bus is closed')
  }

  #track<T>(promise: Promise<T>): Promise<T> {
    this.#inflight.add(promise)
    const done = (): void => {
      this.#inflight.delete(promise)
    }
    promise.then(done, done)
    return promise
  }

  #newProducer(): StringProducer {
    const s = this.#settings
    const producer: StringProducer = new Producer<string, string, string, string>({
      clientId: s.clientId,
      bootstrapBrokers: s.brokers,
      ...s.connection,
      idempotent: true,
      retries: s.produceRetries,
      retryDelay,
      serializers: stringSerializers,
      partitioner: (message, key) => {
        // Keyed: murmur2 masked like Java's Utils.toPositive; the producer then takes it modulo
        // the partition count (BuiltInPartitioner.partitionForKey). Null key: round robin.
        if (key !== undefined) return compatibilityPartitioner(message, key)
        const n = this.#roundRobin.get(message.topic) ?? 0
        this.#roundRobin.set(message.topic, (n + 1) % 0x7fffffff)
        return n
      },
      autocreateTopics: false,
    })
    producer.on('error', (err: unknown) => this.#log.warn('bus.kafka.producer_error', { err: this.#redactor.describe(err) }))
    return producer
  }

  /**
   * The subscription's `group.instance.id`; a second subscription of this bus in the same group
   * and with the same name gets a numbered one (ids are unique per group).
   */
  #uniqueInstanceId(options: SubscribeOptions): string | null {
    const base = instanceIdFor(this.#settings, options)
    if (base === null) return null
    const taken = new Set([...this.#subs].filter((s) => s.groupId === options.groupId).map((s) => s.instanceId))
    let id = base
    for (let n = 2; taken.has(id); n++) id = `${base.slice(0, 240)}-${n}`
    return id
  }

  #adminClient(): Admin {
    if (!this.#admin) {
      const s = this.#settings
      this.#admin = new Admin({
        clientId: sanitizeClientId(`${s.clientId}-admin`),
        bootstrapBrokers: s.brokers,
        ...s.connection,
        retries: 3,
        retryDelay,
      })
      this.#admin.on('error', (err: unknown) => this.#log.warn('bus.kafka.admin_error', { err: this.#redactor.describe(err) }))
    }
    return this.#admin
  }

  /**
   * Topics were recreated: a new producer (the old one's ids and sequences are void), and the
   * subscriptions on those topics start over (unless they already did).
   */
  async #onTopicsReplaced(ids: Map<string, string>, cluster: boolean, since: number): Promise<void> {
    if (this.#closed) return
    const old = this.#producer
    this.#producer = this.#newProducer()
    void this.#track(
      old.close().catch((err: unknown) => {
        this.#log.debug('bus.kafka.producer_close_failed', { err: this.#redactor.describe(err) })
      }),
    )
    const affected = [...this.#subs].filter((sub) => cluster || sub.topics.some((t) => ids.has(t)))
    await Promise.all(affected.map((sub) => sub.reset({ ids, since })))
  }

  async #close(): Promise<void> {
    this.#closed = true
    this.#watch.stop()
    await Promise.allSettled([...this.#subs].map((s) => s.close()))
    await Promise.allSettled([...this.#inflight])
    await Promise.allSettled([...this.#subs].map((s) => s.close()))
    await this.#producer.close().catch((err: unknown) => {
      this.#log.warn('bus.kafka.producer_close_failed', { err: this.#redactor.describe(err) })
    })
    await this.#admin?.close().catch((err: unknown) => {
      this.#log.warn('bus.kafka.admin_close_failed', { err: this.#redactor.describe(err) })
    })
  }
}
