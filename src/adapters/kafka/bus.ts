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
 * the committed offset after a join) are recognised by offset and dropped.
 *
 * Pause: `pause()` stops the stream's fetch loop and the partition workers; records that were
 * already fetched stay buffered and are delivered after `resume()`. The stream is also paused
 * while the buffers hold more than `maxBufferedRecords` (internal backpressure).
 *
 * Failures: a stream that dies is consumed again (with backoff) while the subscription is open; a
 * consumer whose rejoin failed rejoins again with backoff. No client error event is left without a
 * listener. Errors surface as FlowkitError BUS_UNAVAILABLE (retryable) or BUS_ERROR; SASL
 * credentials never appear in an error message or a log record.
 *
 * Modules: bus-settings.ts (options, settings, shared helpers), bus-errors.ts (error mapping,
 * redaction), bus-worker.ts, bus-commits.ts, bus-replay.ts, bus-subscription.ts; this file is the
 * facade (producer, topics, subscriptions).
 *
 * Known limit (eager rebalance in the classic protocol): while a group rebalances, the previous
 * owner of a partition may still be running the handler of a record that the new owner also
 * receives; delivery stays at-least-once, and a partition is never handled twice at once inside
 * one subscription.
 */
import { Admin, Producer, compatibilityPartitioner, stringSerializers } from '@platformatic/kafka'
import type { ClusterMetadata, MessageToProduce } from '@platformatic/kafka'
import type { Bus, BusRecord, SubscribeOptions, Subscription, TopicSpec } from '../../ports/bus.ts'
import { ErrorCode, FlowkitError } from '../../errors.ts'
import { createLogger } from '../../log.ts'
import type { Logger } from '../../log.ts'
import { checkRecord, checkTopicName } from '../../ports/bus-rules.ts'
import { Redactor, hasApiId, toBusError } from './bus-errors.ts'
import { backoffMs, delay, retryDelay, sanitizeClientId, settingsFrom } from './bus-settings.ts'
import type { KafkaBusOptions, Settings, StringProducer } from './bus-settings.ts'
import { KafkaSubscription } from './bus-subscription.ts'
import type { BusInternals } from './bus-subscription.ts'

export type { KafkaBusOptions, KafkaSaslMechanism, KafkaSaslOptions } from './bus-settings.ts'

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
}

export class KafkaBus implements Bus {
  readonly #settings: Settings
  readonly #log: Logger
  readonly #redactor: Redactor
  readonly #producer: StringProducer
  #admin: Admin | null = null
  readonly #subs = new Set<KafkaSubscription>()
  readonly #inflight = new Set<Promise<unknown>>()
  readonly #roundRobin = new Map<string, number>()
  readonly #internals: BusInternals
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
    const s = this.#settings
    this.#producer = new Producer<string, string, string, string>({
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
    this.#producer.on('error', (err: unknown) => this.#log.warn('bus.kafka.producer_error', { err: this.#redactor.describe(err) }))
    this.#internals = {
      settings: this.#settings,
      log: this.#log,
      redactor: this.#redactor,
      forget: (sub) => {
        this.#subs.delete(sub)
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
    const admin = this.#adminClient()
    const run = (async () => {
      await Promise.all(
        [...wanted].map(async ([name, partitions]) => {
          try {
            await admin.createTopics({
              topics: [name],
              partitions: partitions ?? this.#settings.defaultPartitions,
              replicas: this.#settings.replicationFactor,
            })
            this.#log.info('bus.kafka.topic_created', { topic: name, partitions: partitions ?? this.#settings.defaultPartitions })
          } catch (err) {
            if (!hasApiId(err, 'TOPIC_ALREADY_EXISTS')) throw err
          }
        }),
      )
      await this.#waitForLeaders(admin, [...wanted.keys()])
    })()
    try {
      await this.#track(run)
    } catch (err) {
      throw toBusError(err, 'ensureTopics', this.#redactor, this.#closed)
    }
  }

  async produce(records: BusRecord[]): Promise<void> {
    this.#assertOpen()
    if (!Array.isArray(records)) throw new FlowkitError(ErrorCode.BadMessage, 'produce: records must be an array')
    for (const record of records) checkRecord(record)
    if (records.length === 0) return
    const messages: MessageToProduce<string, string, string, string>[] = records.map((r) => {
      const m: MessageToProduce<string, string, string, string> = { topic: r.topic, value: r.value }
      if (r.key !== null) m.key = r.key
      if (r.headers && Object.keys(r.headers).length > 0) m.headers = new Map(Object.entries(r.headers))
      return m
    })
    try {
      await this.#track(this.#producer.send({ messages }))
    } catch (err) {
      throw toBusError(err, 'produce', this.#redactor, this.#closed)
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
    const sub = new KafkaSubscription(this.#internals, options)
    this.#subs.add(sub)
    try {
      await this.#track(sub.start())
    } catch (err) {
      await sub.close().catch(() => {})
      throw toBusError(err, `subscribe(${options.groupId})`, this.#redactor, this.#closed)
    }
    if (this.#closed) {
      await sub.close()
      throw new FlowkitError(ErrorCode.Closed, 'kafka bus is closed')
    }
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

  /** Waits until the metadata shows a leader for every partition of every topic. */
  async #waitForLeaders(admin: Admin, topics: string[]): Promise<void> {
    const deadline = performance.now() + this.#settings.topicReadyTimeoutMs
    let lastError: unknown = null
    for (let attempt = 1; ; attempt++) {
      this.#assertOpen()
      try {
        const metadata: ClusterMetadata = await admin.metadata({ topics, forceUpdate: true })
        const notReady = topics.filter((name) => {
          const topic = metadata.topics.get(name)
          return !topic || topic.partitions.length === 0 || topic.partitions.some((p) => p === undefined || p.leader < 0)
        })
        if (notReady.length === 0) return
        lastError = new Error(`no leader yet for ${notReady.join(', ')}`)
      } catch (err) {
        lastError = err
      }
      if (performance.now() >= deadline) {
        throw new FlowkitError(
          ErrorCode.BusUnavailable,
          `kafka bus: topics not ready after ${this.#settings.topicReadyTimeoutMs}ms: ${this.#redactor.describe(lastError)}`,
          { retryable: true },
        )
      }
      await delay(backoffMs(attempt, 50, 500))
    }
  }

  async #close(): Promise<void> {
    this.#closed = true
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
