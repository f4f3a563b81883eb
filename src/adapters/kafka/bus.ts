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
 * offset order (different partitions concurrently) and, when the handler resolves, marks
 * `offset + 1` for commit. Commits are coalesced, monotonic per partition, one request in flight
 * per subscription, and only for partitions this member still owns. A throwing handler gets the
 * same record again after a capped exponential backoff (20 ms doubling to 1 s).
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
 * Known limit (eager rebalance in the classic protocol): while a group rebalances, the previous
 * owner of a partition may still be running the handler of a record that the new owner also
 * receives; delivery stays at-least-once, and a partition is never handled twice at once inside
 * one subscription.
 */
import type { ConnectionOptions as TlsConnectionOptions } from 'node:tls'
import {
  Admin,
  Consumer,
  MessagesStreamFallbackModes,
  MessagesStreamModes,
  Producer,
  compatibilityPartitioner,
  stringSerializers,
} from '@platformatic/kafka'
import type {
  ClusterMetadata,
  CommitOptionsPartition,
  ConsumeOptions,
  Deserializers,
  GroupAssignment,
  Message,
  MessagesStream,
  MessageToProduce,
  RetryDelayGetter,
  SASLOptions,
} from '@platformatic/kafka'
import type { Bus, BusHandler, BusMessage, BusRecord, SubscribeOptions, Subscription, TopicSpec } from '../../ports/bus.ts'
import { ErrorCode, FlowkitError } from '../../errors.ts'
import { createLogger } from '../../log.ts'
import type { Logger } from '../../log.ts'
import { Signal } from '../../util/signal.ts'
import { checkRecord, checkTopicName } from '../../ports/bus-rules.ts'

export type KafkaSaslMechanism = 'PLAIN' | 'SCRAM-SHA-256' | 'SCRAM-SHA-512'

export interface KafkaSaslOptions {
  mechanism: KafkaSaslMechanism
  username: string
  password: string
}

export interface KafkaBusOptions {
  /** Bootstrap brokers, `host:port` (a comma-separated string is accepted too). */
  brokers: string[] | string
  /** Kafka client id (consumers append the subscription name). Default 'flowkit'. */
  clientId?: string
  /** Partitions of a topic created by `ensureTopics` without a count. Default 3. */
  defaultPartitions?: number
  /** Replication factor of topics created by `ensureTopics`. Default 1. */
  replicationFactor?: number
  sasl?: KafkaSaslOptions
  /** `true` for TLS with Node's defaults, or Node TLS connection options (CA, client cert, ...). */
  tls?: boolean | TlsConnectionOptions
  logger?: Logger
  /** TCP connect timeout. Default 5000. */
  connectTimeoutMs?: number
  /** Timeout of one request to a broker. Must exceed `rebalanceTimeoutMs` (JoinGroup blocks). Default 30000. */
  requestTimeoutMs?: number
  /** Producer retries of a failed send (bounded; >= 2). Default 5, with 100 ms doubling to 1 s between tries. */
  produceRetries?: number
  /** Consumer group session timeout. Default 10000. */
  sessionTimeoutMs?: number
  /** Consumer heartbeat interval; also how fast a member notices a rebalance. Default 1000. */
  heartbeatIntervalMs?: number
  /** How long the group waits for members to rejoin during a rebalance. Default 20000. */
  rebalanceTimeoutMs?: number
  /** Longest time a fetch waits on the broker for new records. Default 1000. */
  maxWaitTime?: number
  /** Max bytes of one fetch response. Default 8 MiB. */
  maxBytes?: number
  /** Max bytes per partition in one fetch response. Default 1 MiB. */
  maxBytesPerPartition?: number
  /** The stream is paused while a subscription buffers more records than this. Default 1000. */
  maxBufferedRecords?: number
  /** `subscribe` rejects when the consumer has not joined and positioned within this time. Default 60000. */
  subscribeTimeoutMs?: number
  /** `ensureTopics` rejects when a partition still has no leader after this time. Default 30000. */
  topicReadyTimeoutMs?: number
}

const HANDLER_BACKOFF_START_MS = 20
const HANDLER_BACKOFF_MAX_MS = 1000
const COMMIT_RETRY_START_MS = 200
const COMMIT_RETRY_MAX_MS = 5000
const RECOVERY_START_MS = 250
const RECOVERY_MAX_MS = 10_000
const CLOSE_COMMIT_ATTEMPTS = 3

type StringMessage = Message<string | undefined, string, string, string | undefined>
type StringStream = MessagesStream<string | undefined, string, string, string | undefined>
type StringConsumer = Consumer<string | undefined, string, string, string | undefined>
type StringProducer = Producer<string, string, string, string>

/** Deserializers that never throw: bytes become UTF-8 text (invalid sequences → U+FFFD). */
const safeDeserializers: Deserializers<string | undefined, string, string, string | undefined> = {
  key: (data) => (data === undefined || data === null ? undefined : data.toString('utf8')),
  value: (data) => (data === undefined || data === null ? '' : data.toString('utf8')),
  headerKey: (data) => (data === undefined || data === null ? '' : data.toString('utf8')),
  headerValue: (data) => (data === undefined || data === null ? undefined : data.toString('utf8')),
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

function backoffMs(attempt: number, start: number, max: number): number {
  return Math.min(start * 2 ** Math.max(0, attempt - 1), max)
}

/** Exponential delay between the library's own retries: 100 ms doubling to 1 s. */
const retryDelay: RetryDelayGetter = (_client, _operation, attempt) => backoffMs(attempt, 100, 1000)

// ---- Errors ------------------------------------------------------------------------------------

interface ErrorLike {
  message?: unknown
  code?: unknown
  apiId?: unknown
  canRetry?: unknown
  errors?: unknown
  cause?: unknown
}

function asErrorLike(err: unknown): ErrorLike | null {
  return err !== null && typeof err === 'object' ? (err as ErrorLike) : null
}

/** Every error in a library error tree (MultipleErrors nest, causes chain). */
function flattenErrors(err: unknown, out: ErrorLike[] = [], depth = 0): ErrorLike[] {
  const e = asErrorLike(err)
  if (!e || depth > 8) return out
  out.push(e)
  if (Array.isArray(e.errors)) for (const inner of e.errors) flattenErrors(inner, out, depth + 1)
  if (e.cause !== undefined) flattenErrors(e.cause, out, depth + 1)
  return out
}

function hasApiId(err: unknown, apiId: string): boolean {
  return flattenErrors(err).some((e) => e.apiId === apiId)
}

/** Redacts secrets from free text. */
class Redactor {
  readonly #secrets: string[]
  constructor(secrets: Array<string | undefined>) {
    this.#secrets = secrets.filter((s): s is string => typeof s === 'string' && s.length > 0)
  }
  text(value: string): string {
    let out = value
    for (const secret of this.#secrets) out = out.split(secret).join('***')
    return out
  }
  /** A one-line description of a (possibly nested) library error, without secrets. */
  describe(err: unknown): string {
    const messages: string[] = []
    for (const e of flattenErrors(err)) {
      const m = typeof e.message === 'string' ? e.message.trim() : ''
      const apiId = typeof e.apiId === 'string' ? ` (${e.apiId})` : ''
      const line = `${m.length > 300 ? `${m.slice(0, 300)}…` : m}${apiId}`
      if (line && !messages.includes(line)) messages.push(line)
      if (messages.length >= 6) break
    }
    if (messages.length === 0) messages.push(String(err))
    return this.text(messages.join(' <- '))
  }
}

/**
 * Maps a library error to BUS_UNAVAILABLE (retryable: the cluster or the network is the problem)
 * or BUS_ERROR. The original error is not attached (it may carry connection details); a
 * sanitized copy of its message tree is.
 */
function toBusError(err: unknown, op: string, redactor: Redactor, closed: boolean): FlowkitError {
  if (err instanceof FlowkitError) return err
  const text = redactor.describe(err)
  const cause = new Error(text)
  const all = flattenErrors(err)
  if (closed || all.some((e) => (e as { closed?: unknown }).closed === true)) {
    return new FlowkitError(ErrorCode.Closed, `kafka bus: ${op} aborted: the bus is closed`, { cause })
  }
  const apiIds = all.map((e) => e.apiId).filter((id): id is string => typeof id === 'string')
  const codes = all.map((e) => e.code).filter((c): c is string => typeof c === 'string')
  const details = { op, apiIds: [...new Set(apiIds)], codes: [...new Set(codes)] }
  if (codes.includes('PLT_KFK_AUTHENTICATION') || apiIds.some((id) => /AUTHORIZATION|SASL|AUTHENTICATION/.test(id))) {
    return new FlowkitError(ErrorCode.BusError, `kafka bus: ${op} failed (authentication/authorization): ${text}`, { cause, details })
  }
  if (apiIds.includes('UNKNOWN_TOPIC_OR_PARTITION') || /Unknown topic/i.test(text)) {
    return new FlowkitError(ErrorCode.BusError, `kafka bus: ${op} failed: unknown topic (create it with ensureTopics): ${text}`, {
      cause,
      details,
    })
  }
  const network = codes.includes('PLT_KFK_NETWORK') || codes.includes('PLT_KFK_TIMEOUT')
  const nonRetryable = all.some((e) => e.canRetry === false && e.code !== 'PLT_KFK_NETWORK')
  const retryableProtocol = all.some((e) => e.canRetry === true)
  if (network || (retryableProtocol && !nonRetryable)) {
    return new FlowkitError(ErrorCode.BusUnavailable, `kafka bus: ${op} failed: ${text}`, { cause, details, retryable: true })
  }
  return new FlowkitError(ErrorCode.BusError, `kafka bus: ${op} failed: ${text}`, { cause, details })
}

// ---- Small helpers ------------------------------------------------------------------------------


function partitionKey(topic: string, partition: number): string {
  // Kafka topic names cannot contain ':'; the library uses the same key format.
  return `${topic}:${partition}`
}

/**
 * Group and fetch settings shared by a consumer and every stream it opens: the classic protocol
 * (KIP-848 would resume paused streams on revocation), commits only after handling, string-safe
 * deserializers.
 */
function groupSettings(s: Settings) {
  return {
    groupProtocol: 'classic' as const,
    autocommit: false,
    sessionTimeout: s.sessionTimeout,
    heartbeatInterval: s.heartbeatInterval,
    rebalanceTimeout: s.rebalanceTimeout,
    maxWaitTime: s.maxWaitTime,
    maxBytes: s.maxBytes,
    maxBytesPerPartition: s.maxBytesPerPartition,
    deserializers: safeDeserializers,
  }
}

function positiveInt(value: number | undefined, fallback: number, name: string, min = 1): number {
  if (value === undefined) return fallback
  if (!Number.isInteger(value) || value < min) throw new FlowkitError(ErrorCode.Config, `kafka bus: ${name} must be an integer >= ${min}`)
  return value
}

function sanitizeClientId(value: string): string {
  const cleaned = value.replace(/[^a-zA-Z0-9._-]/g, '_')
  return cleaned === '' ? 'flowkit' : cleaned
}

// ---- Settings ------------------------------------------------------------------------------------

interface Settings {
  brokers: string[]
  clientId: string
  defaultPartitions: number
  replicationFactor: number
  connection: { sasl?: SASLOptions; tls?: TlsConnectionOptions; connectTimeout: number; requestTimeout: number }
  produceRetries: number
  sessionTimeout: number
  heartbeatInterval: number
  rebalanceTimeout: number
  maxWaitTime: number
  maxBytes: number
  maxBytesPerPartition: number
  maxBufferedRecords: number
  subscribeTimeoutMs: number
  topicReadyTimeoutMs: number
}

function settingsFrom(options: KafkaBusOptions): Settings {
  if (options === null || typeof options !== 'object') throw new FlowkitError(ErrorCode.Config, 'kafka bus: options are required')
  const list = typeof options.brokers === 'string' ? options.brokers.split(',') : Array.isArray(options.brokers) ? options.brokers : []
  const brokers = list.map((b) => String(b).trim()).filter(Boolean)
  if (brokers.length === 0) throw new FlowkitError(ErrorCode.Config, 'kafka bus: brokers must list at least one host:port')
  const connection: Settings['connection'] = {
    connectTimeout: positiveInt(options.connectTimeoutMs, 5000, 'connectTimeoutMs'),
    requestTimeout: positiveInt(options.requestTimeoutMs, 30_000, 'requestTimeoutMs'),
  }
  if (options.sasl !== undefined) {
    const { mechanism, username, password } = options.sasl
    if (!['PLAIN', 'SCRAM-SHA-256', 'SCRAM-SHA-512'].includes(mechanism)) {
      throw new FlowkitError(ErrorCode.Config, `kafka bus: unsupported SASL mechanism ${JSON.stringify(mechanism)}`)
    }
    if (typeof username !== 'string' || typeof password !== 'string') {
      throw new FlowkitError(ErrorCode.Config, 'kafka bus: SASL username and password must be strings')
    }
    connection.sasl = { mechanism, username, password }
  }
  if (options.tls === true) connection.tls = {}
  else if (options.tls && typeof options.tls === 'object') connection.tls = { ...options.tls }
  const sessionTimeout = positiveInt(options.sessionTimeoutMs, 10_000, 'sessionTimeoutMs')
  const heartbeatInterval = positiveInt(options.heartbeatIntervalMs, 1000, 'heartbeatIntervalMs')
  const rebalanceTimeout = positiveInt(options.rebalanceTimeoutMs, Math.max(20_000, sessionTimeout), 'rebalanceTimeoutMs')
  if (heartbeatInterval > sessionTimeout) throw new FlowkitError(ErrorCode.Config, 'kafka bus: heartbeatIntervalMs must be <= sessionTimeoutMs')
  if (rebalanceTimeout < sessionTimeout) throw new FlowkitError(ErrorCode.Config, 'kafka bus: rebalanceTimeoutMs must be >= sessionTimeoutMs')
  return {
    brokers,
    clientId: sanitizeClientId(options.clientId ?? 'flowkit'),
    defaultPartitions: positiveInt(options.defaultPartitions, 3, 'defaultPartitions'),
    replicationFactor: positiveInt(options.replicationFactor, 1, 'replicationFactor'),
    connection,
    produceRetries: positiveInt(options.produceRetries, 5, 'produceRetries', 2),
    sessionTimeout,
    heartbeatInterval,
    rebalanceTimeout,
    maxWaitTime: positiveInt(options.maxWaitTime, 1000, 'maxWaitTime', 0),
    maxBytes: positiveInt(options.maxBytes, 8 * 1024 * 1024, 'maxBytes'),
    maxBytesPerPartition: positiveInt(options.maxBytesPerPartition, 1024 * 1024, 'maxBytesPerPartition'),
    maxBufferedRecords: positiveInt(options.maxBufferedRecords, 1000, 'maxBufferedRecords'),
    subscribeTimeoutMs: positiveInt(options.subscribeTimeoutMs, 60_000, 'subscribeTimeoutMs'),
    topicReadyTimeoutMs: positiveInt(options.topicReadyTimeoutMs, 30_000, 'topicReadyTimeoutMs'),
  }
}

// ---- Partition worker ----------------------------------------------------------------------------

interface Buffered {
  message: BusMessage
  leaderEpoch: number
}

/** Internal surface a partition worker needs from its subscription. */
interface WorkerHost {
  readonly handler: BusHandler
  readonly paused: boolean
  readonly log: Logger
  readonly groupId: string
  onDequeued(count: number): void
  onHandled(worker: PartitionWorker, entry: Buffered): void
}

class PartitionWorker {
  readonly topic: string
  readonly partition: number
  readonly key: string
  readonly buffer: Buffered[] = []
  /** Next offset expected from the stream; records below it are re-reads and are dropped. */
  nextOffset: number | null = null
  /** Set when the partition was taken away by a rebalance: nothing more is committed for it. */
  revoked = false
  readonly done: Promise<void>
  #stopped = false
  readonly #host: WorkerHost
  readonly #signal = new Signal()
  #backoff: { timer: ReturnType<typeof setTimeout>; resolve: () => void } | null = null

  constructor(host: WorkerHost, topic: string, partition: number, previous: Promise<void> | undefined) {
    this.#host = host
    this.topic = topic
    this.partition = partition
    this.key = partitionKey(topic, partition)
    this.done = this.#run(previous)
  }

  get stopped(): boolean {
    return this.#stopped
  }

  push(entry: Buffered): void {
    this.buffer.push(entry)
    this.#signal.notify()
  }

  wake(): void {
    this.#signal.notify()
  }

  /** Drops the buffered records (returns how many). */
  clear(): number {
    const n = this.buffer.length
    this.buffer.length = 0
    return n
  }

  /** Stops after the in-flight handler (if any); a backoff wait is cut short. */
  stop(): Promise<void> {
    this.#stopped = true
    this.#signal.notify()
    const backoff = this.#backoff
    if (backoff) {
      clearTimeout(backoff.timer)
      this.#backoff = null
      backoff.resolve()
    }
    return this.done
  }

  async #run(previous: Promise<void> | undefined): Promise<void> {
    // A partition that comes back waits for its previous worker: never two handlers at once.
    await previous
    await Promise.resolve()
    try {
      while (!this.#stopped) {
        if (this.#host.paused) {
          await this.#signal.wait()
          continue
        }
        const head = this.buffer[0]
        if (head === undefined) {
          await this.#signal.wait()
          continue
        }
        if (!(await this.#handle(head.message))) break
        if (this.buffer[0] === head) {
          this.buffer.shift()
          this.#host.onDequeued(1)
        }
        this.#host.onHandled(this, head)
      }
    } catch (err) {
      // Only a bug in this adapter lands here; handler errors are retried in #handle.
      this.#host.log.error('bus.kafka.worker_crashed', {
        groupId: this.#host.groupId,
        topic: this.topic,
        partition: this.partition,
        err: err instanceof Error ? err.message : String(err),
      })
    } finally {
      this.#stopped = true
      const dropped = this.clear()
      if (dropped > 0) this.#host.onDequeued(dropped)
    }
  }

  /** Calls the handler until it succeeds; false when stopped before it did. */
  async #handle(message: BusMessage): Promise<boolean> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.#host.handler({ ...message, headers: { ...message.headers } })
        return true
      } catch (err) {
        if (this.#stopped) return false
        const waitMs = backoffMs(attempt, HANDLER_BACKOFF_START_MS, HANDLER_BACKOFF_MAX_MS)
        this.#host.log.warn('bus.handler_failed', {
          groupId: this.#host.groupId,
          topic: this.topic,
          partition: this.partition,
          offset: message.offset,
          attempt,
          retryInMs: waitMs,
          err: err instanceof Error ? err.message : String(err),
        })
        await new Promise<void>((resolve) => {
          this.#backoff = { timer: setTimeout(resolve, waitMs), resolve }
        })
        this.#backoff = null
        while (this.#host.paused && !this.#stopped) await this.#signal.wait()
        if (this.#stopped) return false
      }
    }
  }
}

// ---- Subscription --------------------------------------------------------------------------------

interface BusInternals {
  readonly settings: Settings
  readonly log: Logger
  readonly redactor: Redactor
  forget(sub: KafkaSubscription): void
}

class KafkaSubscription implements Subscription, WorkerHost {
  readonly groupId: string
  readonly handler: BusHandler
  readonly log: Logger
  readonly #topics: string[]
  readonly #fromLatest: boolean
  readonly #name: string
  readonly #bus: BusInternals
  readonly #consumer: StringConsumer
  #stream: StringStream | null = null
  /** Owned partitions → worker. */
  readonly #workers = new Map<string, PartitionWorker>()
  /** Latest worker per partition (owned or not), so a returning partition waits for it. */
  readonly #lastWorker = new Map<string, PartitionWorker>()
  /** Every worker still running (revoked ones included): close waits for them. */
  readonly #running = new Set<PartitionWorker>()
  #paused = false
  #streamPaused = false
  #buffered = 0
  #closing: Promise<void> | null = null
  #stopping = false
  // Commits
  readonly #pendingCommits = new Map<string, CommitOptionsPartition>()
  readonly #committed = new Map<string, bigint>()
  #commitLoop: Promise<void> | null = null
  #commitRetryTimer: ReturnType<typeof setTimeout> | null = null
  #commitFailures = 0
  // Recovery
  #recoveryTimer: ReturnType<typeof setTimeout> | null = null
  #recoveryAttempts = 0
  #rejoinTimer: ReturnType<typeof setTimeout> | null = null
  #rejoinAttempts = 0

  constructor(bus: BusInternals, options: SubscribeOptions) {
    this.#bus = bus
    this.groupId = options.groupId
    this.handler = options.handler
    this.#topics = [...new Set(options.topics)]
    this.#fromLatest = options.fromLatest === true
    this.#name = options.name ?? 'sub'
    this.log = bus.log.child({ groupId: this.groupId, subscription: this.#name })
    const s = bus.settings
    this.#consumer = new Consumer({
      clientId: sanitizeClientId(`${s.clientId}-${this.#name}`),
      bootstrapBrokers: s.brokers,
      ...s.connection,
      // Kept low: group operations nest retries (joinGroup → findGroupCoordinator), and a stream
      // whose retries run out is consumed again by this adapter anyway.
      retries: 3,
      retryDelay,
      groupId: this.groupId,
      ...groupSettings(s),
    })
    this.#consumer.on('error', (err: unknown) => this.#onConsumerError(err))
    this.#consumer.on('consumer:group:join', (payload) => this.#onJoin(payload.assignments ?? this.#consumer.assignments ?? []))
    this.#consumer.on('consumer:heartbeat:error', (payload) => {
      this.log.debug('bus.kafka.heartbeat_failed', { err: this.#bus.redactor.describe(payload.error) })
    })
  }

  get paused(): boolean {
    return this.#paused
  }

  pause(): void {
    this.#paused = true
    this.#updateFlow()
  }

  resume(): void {
    if (!this.#paused) return
    this.#paused = false
    this.#updateFlow()
    for (const worker of this.#workers.values()) worker.wake()
  }

  close(): Promise<void> {
    this.#closing ??= this.#close()
    return this.#closing
  }

  /** Joins the group, then waits until the stream knows where each owned partition starts. */
  async start(): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new FlowkitError(ErrorCode.BusUnavailable, `kafka bus: subscribe ${this.groupId} not ready after ${this.#bus.settings.subscribeTimeoutMs}ms`, { retryable: true })),
        this.#bus.settings.subscribeTimeoutMs,
      )
    })
    try {
      await Promise.race([this.#startStream(), timeout])
    } finally {
      clearTimeout(timer)
    }
    if (this.#fromLatest) await this.#seedStartPositions()
  }

  // ---- WorkerHost ----

  onDequeued(count: number): void {
    this.#buffered -= count
    this.#updateFlow()
  }

  onHandled(worker: PartitionWorker, entry: Buffered): void {
    if (worker.revoked || this.#workers.get(worker.key) !== worker) return
    this.#markForCommit(worker.topic, worker.partition, BigInt(entry.message.offset) + 1n, entry.leaderEpoch)
  }

  // ---- Stream ----

  #consumeOptions(): ConsumeOptions<string | undefined, string, string, string | undefined> {
    const s = this.#bus.settings
    return {
      topics: [...this.#topics],
      mode: MessagesStreamModes.COMMITTED,
      fallbackMode: this.#fromLatest ? MessagesStreamFallbackModes.LATEST : MessagesStreamFallbackModes.EARLIEST,
      ...groupSettings(s),
    }
  }

  /** consume() joins the group; resolves once the new stream has its starting offsets. */
  async #startStream(): Promise<void> {
    const stream = await this.#consumer.consume(this.#consumeOptions())
    if (this.#stopping) {
      await stream.close().catch(() => {})
      return
    }
    // The stream computes its starting offsets asynchronously (network round trips), after this
    // continuation runs: the listeners below cannot miss the first 'offsets'.
    const ready = new Promise<void>((resolve, reject) => {
      const onOffsets = (): void => {
        cleanup()
        resolve()
      }
      const onError = (err: Error): void => {
        cleanup()
        reject(err)
      }
      const onClose = (): void => {
        cleanup()
        reject(new FlowkitError(ErrorCode.BusUnavailable, 'kafka bus: the stream closed before it was positioned', { retryable: true }))
      }
      const cleanup = (): void => {
        stream.removeListener('offsets', onOffsets)
        stream.removeListener('error', onError)
        stream.removeListener('close', onClose)
      }
      stream.once('offsets', onOffsets)
      stream.once('error', onError)
      stream.once('close', onClose)
    })
    this.#attach(stream)
    await ready
  }

  #attach(stream: StringStream): void {
    this.#stream = stream
    this.#streamPaused = false
    stream.on('error', (err) => {
      this.log.warn('bus.kafka.stream_error', { err: this.#bus.redactor.describe(err) })
    })
    stream.on('close', () => {
      if (this.#stream !== stream) return
      this.#stream = null
      if (!this.#stopping) this.#scheduleRecovery()
    })
    stream.on('data', (message: StringMessage) => this.#onMessage(message))
    this.#updateFlow()
  }

  #onMessage(message: StringMessage): void {
    const worker = this.#workers.get(partitionKey(message.topic, message.partition))
    // Not (or no longer) ours: a fetch that was under way when the assignment changed.
    if (worker === undefined || worker.stopped || this.#stopping) return
    const offset = Number(message.offset)
    // Read again after a rejoin reset the stream to the committed offset: already buffered/handled.
    if (worker.nextOffset !== null && offset < worker.nextOffset) return
    worker.nextOffset = offset + 1
    const headers: Record<string, string> = {}
    for (const [name, value] of message.headers) headers[name] = value ?? ''
    worker.push({
      message: {
        topic: message.topic,
        key: message.key ?? null,
        value: message.value ?? '',
        headers,
        partition: message.partition,
        offset,
        timestamp: Number(message.timestamp),
      },
      leaderEpoch: typeof message.leaderEpoch === 'number' ? message.leaderEpoch : -1,
    })
    this.#buffered++
    this.#updateFlow()
  }

  /** Pauses the fetch loop when the user paused, the buffers are full, or we are closing. */
  #updateFlow(): void {
    const stream = this.#stream
    if (!stream || stream.destroyed) return
    const max = this.#bus.settings.maxBufferedRecords
    const full = this.#buffered >= max
    const wantPaused = this.#paused || this.#stopping || full || (this.#streamPaused && this.#buffered > max / 2)
    if (wantPaused && !this.#streamPaused) {
      this.#streamPaused = true
      stream.pause()
    } else if (!wantPaused && this.#streamPaused) {
      this.#streamPaused = false
      stream.resume()
    }
  }

  // ---- Group membership ----

  #onJoin(assignments: GroupAssignment[]): void {
    if (this.#stopping) return
    const want = new Map<string, { topic: string; partition: number }>()
    for (const { topic, partitions } of assignments) {
      if (!this.#topics.includes(topic)) continue
      for (const partition of partitions) want.set(partitionKey(topic, partition), { topic, partition })
    }
    const revoked: string[] = []
    const gained: string[] = []
    for (const [key, worker] of this.#workers) {
      if (want.has(key)) continue
      this.#workers.delete(key)
      worker.revoked = true
      const dropped = worker.clear()
      if (dropped > 0) this.onDequeued(dropped)
      void worker.stop()
      this.#pendingCommits.delete(key)
      this.#committed.delete(key)
      revoked.push(key)
    }
    for (const [key, { topic, partition }] of want) {
      if (this.#workers.has(key)) continue
      const worker = new PartitionWorker(this, topic, partition, this.#lastWorker.get(key)?.done)
      this.#workers.set(key, worker)
      this.#lastWorker.set(key, worker)
      this.#running.add(worker)
      void worker.done.then(() => {
        this.#running.delete(worker)
        if (this.#lastWorker.get(key) === worker && !this.#workers.has(key)) this.#lastWorker.delete(key)
      })
      // Forget a position the stream kept from an earlier ownership: it restarts the partition
      // from the group's committed offset (or the fallback) instead.
      this.#stream?.offsetsToFetch.delete(key)
      gained.push(key)
    }
    this.#rejoinAttempts = 0
    this.log.debug('bus.kafka.assigned', {
      memberId: this.#consumer.memberId,
      generationId: this.#consumer.generationId,
      partitions: [...this.#workers.keys()],
      revoked,
      gained,
    })
  }

  #onConsumerError(err: unknown): void {
    if (this.#stopping) return
    this.log.warn('bus.kafka.consumer_error', { err: this.#bus.redactor.describe(err) })
    this.#scheduleRejoin()
  }

  /** After a failed rejoin the consumer sends no heartbeats: join again, with backoff. */
  #scheduleRejoin(): void {
    if (this.#stopping || this.#rejoinTimer) return
    const waitMs = backoffMs(++this.#rejoinAttempts, RECOVERY_START_MS, RECOVERY_MAX_MS)
    this.#rejoinTimer = setTimeout(() => {
      this.#rejoinTimer = null
      if (this.#stopping || this.#consumer.isActive()) return
      this.#consumer.joinGroup({}).then(
        () => {
          this.#rejoinAttempts = 0
          this.log.info('bus.kafka.rejoined', {})
        },
        (joinErr: unknown) => {
          this.log.warn('bus.kafka.rejoin_failed', { err: this.#bus.redactor.describe(joinErr), attempt: this.#rejoinAttempts })
          this.#scheduleRejoin()
        },
      )
    }, waitMs)
  }

  /** The stream died (its retries ran out): consume again, with backoff, while subscribed. */
  #scheduleRecovery(): void {
    if (this.#stopping || this.#recoveryTimer) return
    const waitMs = backoffMs(++this.#recoveryAttempts, RECOVERY_START_MS, RECOVERY_MAX_MS)
    this.log.warn('bus.kafka.stream_restart', { inMs: waitMs, attempt: this.#recoveryAttempts })
    this.#recoveryTimer = setTimeout(() => {
      this.#recoveryTimer = null
      if (this.#stopping) return
      this.#startStream().then(
        () => {
          this.#recoveryAttempts = 0
          this.log.info('bus.kafka.stream_restarted', {})
          if (this.#fromLatest) void this.#seedStartPositions()
        },
        (err: unknown) => {
          this.log.warn('bus.kafka.stream_restart_failed', { err: this.#bus.redactor.describe(err) })
          if (!this.#stream) this.#scheduleRecovery()
        },
      )
    }, waitMs)
  }

  /**
   * fromLatest: a partition without a committed offset starts at the end of the log. That start is
   * committed now, so a later owner (or this one after a restart) resumes there instead of at a
   * newer end, which would skip what was produced meanwhile.
   */
  async #seedStartPositions(): Promise<void> {
    const stream = this.#stream
    const owned = [...this.#workers.values()]
    if (!stream || owned.length === 0) return
    try {
      const byTopic = new Map<string, number[]>()
      for (const w of owned) byTopic.set(w.topic, [...(byTopic.get(w.topic) ?? []), w.partition])
      const committed = await this.#consumer.listCommittedOffsets({
        topics: [...byTopic].map(([topic, partitions]) => ({ topic, partitions })),
      })
      for (const w of owned) {
        const current = committed.get(w.topic)?.[w.partition]
        if (current !== undefined && current >= 0n) continue
        const start = stream.offsetsToFetch.get(w.key)
        if (typeof start === 'bigint' && start >= 0n) this.#markForCommit(w.topic, w.partition, start, -1)
      }
    } catch (err) {
      this.log.warn('bus.kafka.seed_positions_failed', { err: this.#bus.redactor.describe(err) })
    }
  }

  // ---- Commits ----

  #markForCommit(topic: string, partition: number, offset: bigint, leaderEpoch: number): void {
    const key = partitionKey(topic, partition)
    const pending = this.#pendingCommits.get(key)
    const committed = this.#committed.get(key)
    if ((pending && pending.offset >= offset) || (committed !== undefined && committed >= offset)) return
    this.#pendingCommits.set(key, { topic, partition, offset, leaderEpoch })
    this.#kickCommits()
  }

  #kickCommits(): void {
    if (this.#commitLoop || this.#commitRetryTimer || this.#pendingCommits.size === 0) return
    this.#commitLoop = this.#runCommits().then(
      () => {
        this.#commitLoop = null
      },
      () => {
        this.#commitLoop = null
      },
    )
  }

  /** Commits what is pending, one request at a time; false when a commit failed. */
  async #runCommits(): Promise<boolean> {
    while (this.#pendingCommits.size > 0) {
      const batch: CommitOptionsPartition[] = []
      for (const [key, entry] of this.#pendingCommits) {
        if (this.#workers.has(key)) batch.push(entry)
      }
      this.#pendingCommits.clear()
      if (batch.length === 0) return true
      try {
        await this.#consumer.commit({ offsets: batch })
        this.#commitFailures = 0
        for (const entry of batch) {
          const key = partitionKey(entry.topic, entry.partition)
          const previous = this.#committed.get(key)
          if (this.#workers.has(key) && (previous === undefined || previous < entry.offset)) this.#committed.set(key, entry.offset)
        }
      } catch (err) {
        // Keep what failed unless something newer is already pending; retry later.
        for (const entry of batch) {
          const key = partitionKey(entry.topic, entry.partition)
          const newer = this.#pendingCommits.get(key)
          if (this.#workers.has(key) && (!newer || newer.offset < entry.offset)) this.#pendingCommits.set(key, entry)
        }
        this.#commitFailures++
        this.log.warn('bus.kafka.commit_failed', { err: this.#bus.redactor.describe(err), attempt: this.#commitFailures })
        if (!this.#stopping) {
          const waitMs = backoffMs(this.#commitFailures, COMMIT_RETRY_START_MS, COMMIT_RETRY_MAX_MS)
          this.#commitRetryTimer = setTimeout(() => {
            this.#commitRetryTimer = null
            this.#kickCommits()
          }, waitMs)
        }
        return false
      }
    }
    return true
  }

  /** Close: commit everything handled, with a few attempts. */
  async #flushCommits(): Promise<void> {
    if (this.#commitRetryTimer) {
      clearTimeout(this.#commitRetryTimer)
      this.#commitRetryTimer = null
    }
    await this.#commitLoop
    for (let attempt = 1; this.#pendingCommits.size > 0 && attempt <= CLOSE_COMMIT_ATTEMPTS; attempt++) {
      if (await this.#runCommits()) return
      if (this.#commitRetryTimer) {
        clearTimeout(this.#commitRetryTimer)
        this.#commitRetryTimer = null
      }
      if (attempt < CLOSE_COMMIT_ATTEMPTS) await delay(backoffMs(attempt, COMMIT_RETRY_START_MS, 1000))
    }
    if (this.#pendingCommits.size > 0) {
      this.log.warn('bus.kafka.commit_lost_at_close', { partitions: [...this.#pendingCommits.keys()] })
    }
  }

  // ---- Close ----

  async #close(): Promise<void> {
    this.#stopping = true
    for (const timer of [this.#recoveryTimer, this.#rejoinTimer]) if (timer) clearTimeout(timer)
    this.#recoveryTimer = null
    this.#rejoinTimer = null
    // 1. Stop fetching; 2. let in-flight handlers finish; 3. commit them; 4. leave the group.
    this.#updateFlow()
    await Promise.all([...this.#running].map((w) => w.stop()))
    await this.#flushCommits()
    const stream = this.#stream
    this.#stream = null
    if (stream) {
      await stream.close().catch((err: unknown) => {
        this.log.debug('bus.kafka.stream_close_failed', { err: this.#bus.redactor.describe(err) })
      })
    }
    await this.#consumer.close(true).catch((err: unknown) => {
      this.log.warn('bus.kafka.consumer_close_failed', { err: this.#bus.redactor.describe(err) })
    })
    this.#workers.clear()
    this.#bus.forget(this)
  }
}

// ---- Bus -----------------------------------------------------------------------------------------

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
    if (typeof options.handler !== 'function') throw new FlowkitError(ErrorCode.Config, 'subscribe: handler must be a function')
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
