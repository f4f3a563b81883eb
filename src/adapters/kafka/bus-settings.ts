/**
 * KafkaBus options, their validation into Settings, and the small helpers and constants shared by
 * the bus's modules (client settings, deserializers, backoff).
 */
import type { ConnectionOptions as TlsConnectionOptions } from 'node:tls'
import type { Consumer, Deserializers, Message, MessagesStream, Producer, RetryDelayGetter, SASLOptions } from '@platformatic/kafka'
import { ErrorCode, FlowkitError } from '../../errors.ts'
import type { SubscribeOptions } from '../../ports/bus.ts'
import type { Logger } from '../../log.ts'

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
  /**
   * A stable identity of this process across restarts (Kafka static membership): every
   * subscription joins its group with the `group.instance.id` `<instanceId>.<subscription name>`
   * (a subscription's own `instanceId` wins), so a restarted process with the same id takes its
   * predecessor's place at once instead of waiting for the dead member's session to time out.
   * Only one live process may use an id: two live ones keep fencing each other and rejoining
   * (the client rejoins when fenced), and both consume. [a-zA-Z0-9._-], at most 200 characters.
   * A clean close still leaves the group. Default: none (dynamic membership).
   */
  instanceId?: string
  /**
   * How often the bus checks that the topics it created or consumes still exist (and are the
   * same topics on the same cluster); a missing topic is created again with its partition count,
   * and the producer and the affected subscriptions start over. Errors that hint at a missing
   * topic trigger a check at once. 0 disables the periodic check. Default 5000.
   */
  topicCheckIntervalMs?: number
  /**
   * Consumer group session timeout: how long a member that died without leaving keeps its
   * partitions (a static member restarted with the same `instanceId` takes them back at once).
   * Brokers reject values below their `group.min.session.timeout.ms` (6000 by default). Default 10000.
   */
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

/** The consumer groups' session timeout unless `sessionTimeoutMs` is given. */
export const DEFAULT_SESSION_TIMEOUT_MS = 10_000
export const HANDLER_BACKOFF_START_MS = 20
export const HANDLER_BACKOFF_MAX_MS = 1000
export const COMMIT_RETRY_START_MS = 200
/** Time a marked offset waits for others before its commit goes (bus-commits.ts). */
export const COMMIT_LINGER_MS = 20
export const COMMIT_RETRY_MAX_MS = 5000
export const RECOVERY_START_MS = 250
export const RECOVERY_MAX_MS = 10_000
export const CLOSE_COMMIT_ATTEMPTS = 3

export type StringMessage = Message<string | undefined, string, string, string | undefined>
export type StringStream = MessagesStream<string | undefined, string, string, string | undefined>
export type StringConsumer = Consumer<string | undefined, string, string, string | undefined>
export type StringProducer = Producer<string, string, string, string>

/** Deserializers that never throw: bytes become UTF-8 text (invalid sequences → U+FFFD). */
export const safeDeserializers: Deserializers<string | undefined, string, string, string | undefined> = {
  key: (data) => (data === undefined || data === null ? undefined : data.toString('utf8')),
  value: (data) => (data === undefined || data === null ? '' : data.toString('utf8')),
  headerKey: (data) => (data === undefined || data === null ? '' : data.toString('utf8')),
  headerValue: (data) => (data === undefined || data === null ? undefined : data.toString('utf8')),
}

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

export function backoffMs(attempt: number, start: number, max: number): number {
  return Math.min(start * 2 ** Math.max(0, attempt - 1), max)
}

/** Waits for `promise` (its outcome ignored), but not longer than `ms`. */
export function capped(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const cap = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms)
  })
  const done = promise.then(
    () => undefined,
    () => undefined,
  )
  return Promise.race([done, cap]).finally(() => clearTimeout(timer))
}

/** Exponential delay between the library's own retries: 100 ms doubling to 1 s. */
export const retryDelay: RetryDelayGetter = (_client, _operation, attempt) => backoffMs(attempt, 100, 1000)

// ---- Small helpers ------------------------------------------------------------------------------


export function partitionKey(topic: string, partition: number): string {
  // Kafka topic names cannot contain ':'; the library uses the same key format.
  return `${topic}:${partition}`
}

/**
 * Group and fetch settings shared by a consumer and every stream it opens: the classic protocol
 * (KIP-848 would resume paused streams on revocation), commits only after handling, string-safe
 * deserializers.
 */
export function groupSettings(s: Settings) {
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

export function positiveInt(value: number | undefined, fallback: number, name: string, min = 1): number {
  if (value === undefined) return fallback
  if (!Number.isInteger(value) || value < min) throw new FlowkitError(ErrorCode.Config, `kafka bus: ${name} must be an integer >= ${min}`)
  return value
}

const INSTANCE_ID = /^[a-zA-Z0-9._-]{1,200}$/

/** Checks a configured instance id (bus or subscription option). */
export function checkInstanceId(value: unknown, name: string): string {
  if (typeof value !== 'string' || !INSTANCE_ID.test(value)) {
    throw new FlowkitError(ErrorCode.Config, `kafka bus: ${name} must be 1-200 characters of [a-zA-Z0-9._-]`)
  }
  return value
}

export function sanitizeClientId(value: string): string {
  const cleaned = value.replace(/[^a-zA-Z0-9._-]/g, '_')
  return cleaned === '' ? 'flowkit' : cleaned
}

/** `group.instance.id` of a subscription: its own, else `<bus instance id>.<name>`, else none. */
export function instanceIdFor(settings: Settings, options: SubscribeOptions): string | null {
  if (options.instanceId !== undefined) return options.instanceId
  if (settings.instanceId === null) return null
  return `${settings.instanceId}.${sanitizeClientId(options.name ?? 'sub')}`.slice(0, 249)
}

// ---- Settings ------------------------------------------------------------------------------------

export interface Settings {
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
  instanceId: string | null
  topicCheckIntervalMs: number
}

export function settingsFrom(options: KafkaBusOptions): Settings {
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
  const sessionTimeout = positiveInt(options.sessionTimeoutMs, DEFAULT_SESSION_TIMEOUT_MS, 'sessionTimeoutMs')
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
    instanceId: options.instanceId === undefined ? null : checkInstanceId(options.instanceId, 'instanceId'),
    topicCheckIntervalMs: positiveInt(options.topicCheckIntervalMs, 5000, 'topicCheckIntervalMs', 0),
  }
}
