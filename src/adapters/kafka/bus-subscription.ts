/**
 * One Kafka subscription: a consumer in the group (classic protocol, `autocommit: false`) and one
 * MessagesStream that only feeds per-partition buffers; a PartitionWorker per owned partition
 * hands the records to the handler (bus-worker.ts), commits go through a CommitQueue
 * (bus-commits.ts) and `caughtUp` through a ReplayTracker (bus-replay.ts). See bus.ts for the
 * delivery, rebalance, pause and failure semantics.
 */
import { Consumer, MessagesStreamFallbackModes, MessagesStreamModes } from '@platformatic/kafka'
import type { ConsumeOptions, GroupAssignment } from '@platformatic/kafka'
import type { BusBatchHandler, BusHandler, SubscribeOptions, Subscription } from '../../ports/bus.ts'
import { ErrorCode, FlowkitError } from '../../errors.ts'
import type { Logger } from '../../log.ts'
import { CommitQueue } from './bus-commits.ts'
import type { Redactor } from './bus-errors.ts'
import { ReplayTracker } from './bus-replay.ts'
import { RECOVERY_MAX_MS, RECOVERY_START_MS, backoffMs, groupSettings, partitionKey, retryDelay, sanitizeClientId } from './bus-settings.ts'
import type { Settings, StringConsumer, StringMessage, StringStream } from './bus-settings.ts'
import { PartitionWorker } from './bus-worker.ts'
import type { Buffered, WorkerHost } from './bus-worker.ts'

export const DEFAULT_MAX_BATCH = 500

export interface BusInternals {
  readonly settings: Settings
  readonly log: Logger
  readonly redactor: Redactor
  forget(sub: KafkaSubscription): void
}

export class KafkaSubscription implements Subscription, WorkerHost {
  readonly groupId: string
  readonly handler: BusHandler | null
  readonly batchHandler: BusBatchHandler | null
  readonly maxBatch: number
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
  readonly #commits: CommitQueue
  readonly #replay: ReplayTracker
  // Recovery
  #recoveryTimer: ReturnType<typeof setTimeout> | null = null
  #recoveryAttempts = 0
  #rejoinTimer: ReturnType<typeof setTimeout> | null = null
  #rejoinAttempts = 0

  constructor(bus: BusInternals, options: SubscribeOptions) {
    this.#bus = bus
    this.groupId = options.groupId
    this.handler = options.handler ?? null
    this.batchHandler = options.batchHandler ?? null
    this.maxBatch = options.maxBatch ?? DEFAULT_MAX_BATCH
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
    const consumer = this.#consumer
    const owns = (key: string): boolean => this.#workers.has(key)
    const isStopping = (): boolean => this.#stopping
    this.#commits = new CommitQueue({
      log: this.log,
      redactor: bus.redactor,
      get stopping() {
        return isStopping()
      },
      commit: (offsets) => consumer.commit({ offsets }),
      owns,
      onCommitted: () => this.#replay.check(),
    })
    this.#replay = new ReplayTracker(
      {
        log: this.log,
        redactor: bus.redactor,
        consumer,
        committed: (key) => this.#commits.committed.get(key),
        known: (key, offset) => this.#commits.known(key, offset),
        owns,
      },
      this.#fromLatest,
    )
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

  caughtUp(): Promise<void> {
    return this.#replay.wait()
  }

  close(): Promise<void> {
    this.#closing ??= this.#close().finally(() => this.#replay.resolve())
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
    this.#commits.mark(worker.topic, worker.partition, BigInt(entry.message.offset) + 1n, entry.leaderEpoch)
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
      this.#commits.forget(key)
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
    this.#replay.onAssigned([...want.values()])
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
        if (typeof start === 'bigint' && start >= 0n) this.#commits.mark(w.topic, w.partition, start, -1)
      }
    } catch (err) {
      this.log.warn('bus.kafka.seed_positions_failed', { err: this.#bus.redactor.describe(err) })
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
    await this.#commits.flush()
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
