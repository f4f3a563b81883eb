/**
 * One consumer session of a Kafka subscription: a Consumer in the group (classic protocol,
 * `autocommit: false`, static membership when an instance id is given) and the MessagesStream it
 * feeds the subscription from. A stream that dies is consumed again with backoff, by a new
 * consumer (see #renew); a consumer whose rejoin failed joins again with backoff. A subscription
 * normally keeps one session for its whole life; it starts a new one when its topics were
 * recreated (the old consumer's topic ids, fetch positions and group generation all belong to
 * topics that no longer exist).
 */
import { Consumer, MessagesStreamFallbackModes, MessagesStreamModes } from '@platformatic/kafka'
import type { ConsumeOptions, GroupAssignment } from '@platformatic/kafka'
import { ErrorCode, FlowkitError } from '../../errors.ts'
import type { Logger } from '../../log.ts'
import type { Redactor } from './bus-errors.ts'
import { joining, joinsSettled, trackJoins } from './bus-joins.ts'
import { isTopicId } from './bus-topics.ts'
import { RECOVERY_MAX_MS, RECOVERY_START_MS, backoffMs, capped, groupSettings, retryDelay } from './bus-settings.ts'
import type { Settings, StringConsumer, StringMessage, StringStream } from './bus-settings.ts'

/** What a session reports to its subscription (every call names the session: old ones are ignored). */
export interface SessionHost {
  readonly settings: Settings
  readonly log: Logger
  readonly redactor: Redactor
  onJoin(session: ConsumerSession, assignments: GroupAssignment[]): void
  /** A rebalance began: the member rejoins now (after a cooperative revoke, with fewer partitions). */
  onRebalance(session: ConsumerSession): void
  /** The group confirmed this member (a heartbeat was answered). */
  onConfirmed(session: ConsumerSession): void
  onMessage(session: ConsumerSession, message: StringMessage): void
  /** A stream was attached (flow control applies to it now). */
  onStream(session: ConsumerSession): void
  /** The stream was consumed again after it died. */
  onStreamRestarted(session: ConsumerSession): void
  /** A stream or group error: the bus may want to check its topics. */
  onTrouble(err: unknown): void
  /**
   * The consumer's metadata shows another topic id for one of the topics: the topic was
   * recreated. Called synchronously, before the consumer can fetch from the new topic.
   */
  onTopicsChanged(session: ConsumerSession): void
  /**
   * The session replaces its consumer, which leaves the group next: commit what was handled and
   * give up every partition now, before another member can get them (resolves when done).
   */
  onRenew(session: ConsumerSession): Promise<void>
}

export interface SessionOptions {
  groupId: string
  topics: string[]
  clientId: string
  instanceId: string | null
  /** Where a partition without a committed offset starts. */
  fromLatest: boolean
  /** Incremental rebalancing (cooperative-sticky). */
  cooperative?: boolean
}

/** Longest wait of close() for a start in flight (a join to a broker that answers takes well under a second). */
const CLOSE_START_WAIT_MS = 5_000

export class ConsumerSession {
  #consumer: StringConsumer
  /** consume() was called on the current consumer (never twice on one: see #renew). */
  #consumed = false
  stream: StringStream | null = null
  /** Topic → the topic id this session's consumer first saw (it fetches by id). */
  readonly topicIds = new Map<string, string>()
  /** The cluster id of this session's first metadata. */
  clusterId: string | null = null
  readonly createdAt = performance.now()
  readonly #host: SessionHost
  readonly #options: SessionOptions
  #closed = false
  #recoveryTimer: ReturnType<typeof setTimeout> | null = null
  #recoveryAttempts = 0
  #rejoinTimer: ReturnType<typeof setTimeout> | null = null
  #rejoinAttempts = 0
  /** The start (join and positioning) in flight, if any. */
  #starting: Promise<void> | null = null

  constructor(host: SessionHost, options: SessionOptions) {
    this.#host = host
    this.#options = options
    trackJoins()
    this.#consumer = this.#newConsumer()
  }

  /** The session's current consumer (a stream that died is consumed again by a new one). */
  get consumer(): StringConsumer {
    return this.#consumer
  }

  /** A consumer in the group with the listeners that report to the host (only while it is the current one). */
  #newConsumer(): StringConsumer {
    const host = this.#host
    const options = this.#options
    const s = host.settings
    const consumer: StringConsumer = new Consumer({
      clientId: options.clientId,
      bootstrapBrokers: s.brokers,
      ...s.connection,
      // Kept low: group operations nest retries (joinGroup → findGroupCoordinator), and a stream
      // whose retries run out is consumed again by this session anyway.
      retries: 3,
      retryDelay,
      groupId: options.groupId,
      ...(options.instanceId !== null ? { groupInstanceId: options.instanceId } : {}),
      ...groupSettings(s),
      ...(options.cooperative === true ? { protocols: [{ name: 'cooperative-sticky', version: 3 }] } : {}),
    })
    const current = (): boolean => consumer === this.#consumer && !this.#closed
    // Always listened to (an 'error' without a listener crashes the process), reported while current.
    consumer.on('error', (err: unknown) => {
      if (current()) this.#onConsumerError(err)
    })
    consumer.on('consumer:group:join', (payload) => {
      if (!current()) return
      this.#rejoinAttempts = 0
      host.onJoin(this, payload.assignments ?? consumer.assignments ?? [])
    })
    // Emitted before the consumer sends its JoinGroup (a heartbeat or a commit saw the group
    // rebalancing, or a cooperative round revoked partitions: `consumer.assignments` lost them).
    consumer.on('consumer:group:rebalance', () => {
      if (current()) host.onRebalance(this)
    })
    consumer.on('consumer:heartbeat:end', () => {
      if (current()) host.onConfirmed(this)
    })
    consumer.on('consumer:heartbeat:error', (payload) => {
      host.log.debug('bus.kafka.heartbeat_failed', { err: host.redactor.describe(payload.error) })
    })
    // Emitted before the fetched metadata is used: a recreated topic is noticed before a single
    // record of it is fetched (an offset of the new topic would be taken for one of the old).
    consumer.on('client:metadata', (metadata) => {
      if (consumer !== this.#consumer) return
      this.clusterId ??= metadata.id
      let changed = false
      for (const name of options.topics) {
        const id = metadata.topics.get(name)?.id
        if (!isTopicId(id)) continue
        const known = this.topicIds.get(name)
        if (known === undefined) this.topicIds.set(name, id)
        else if (known !== id) changed = true
      }
      if (changed && !this.#closed) host.onTopicsChanged(this)
    })
    return consumer
  }

  /** True when this session already consumes these topics (by id), so nothing needs restarting. */
  knows(ids: ReadonlyMap<string, string>): boolean {
    for (const [name, id] of ids) {
      if (this.#options.topics.includes(name) && this.topicIds.get(name) !== id) return false
    }
    return true
  }

  get closed(): boolean {
    return this.#closed
  }

  /** A restart is scheduled (recover()). */
  get recovering(): boolean {
    return this.#recoveryTimer !== null
  }

  /** consume() joins the group; resolves once the new stream has its starting offsets. */
  start(): Promise<void> {
    const started = this.#start()
    this.#starting = started
    const clear = (): void => {
      if (this.#starting === started) this.#starting = null
    }
    started.then(clear, clear)
    return started
  }

  async #start(): Promise<void> {
    if (this.#consumed) await this.#renew()
    if (this.#closed) return
    this.#consumed = true
    const stream = await this.#consume()
    if (this.#closed) {
      await stream.close().catch(() => {})
      return
    }
    if (stream.destroyed) {
      // Its positioning failed before this continuation ran (its 'error' and 'close' are gone).
      throw new FlowkitError(ErrorCode.BusUnavailable, 'kafka bus: the stream closed before it was positioned', { retryable: true })
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

  /** Consumes again with backoff until a stream runs (after a failed start or a dead stream). */
  recover(): void {
    if (this.#closed || this.#recoveryTimer) return
    const waitMs = backoffMs(++this.#recoveryAttempts, RECOVERY_START_MS, RECOVERY_MAX_MS)
    this.#host.log.warn('bus.kafka.stream_restart', { inMs: waitMs, attempt: this.#recoveryAttempts })
    this.#recoveryTimer = setTimeout(() => {
      this.#recoveryTimer = null
      if (this.#closed) return
      // Started again meanwhile (a subscription's first-join retry).
      if (this.stream !== null || this.#starting !== null) {
        this.#recoveryAttempts = 0
        return
      }
      this.start().then(
        () => {
          if (this.#closed) return
          this.#recoveryAttempts = 0
          this.#host.log.info('bus.kafka.stream_restarted', {})
          this.#host.onStreamRestarted(this)
        },
        (err: unknown) => {
          this.#host.log.warn('bus.kafka.stream_restart_failed', { err: this.#host.redactor.describe(err) })
          this.#host.onTrouble(err)
          if (!this.stream) this.recover()
        },
      )
    }, waitMs)
  }

  /**
   * Stops the timers, waits (briefly) for a start in flight, closes the stream, then the consumer
   * (which leaves the group). A consumer closed while its join is in flight is armed again by that
   * join when it completes: @platformatic/kafka 2.12 then heartbeats every second for ever on the
   * closed client (consumer.js, heartbeat error path), which also keeps the process alive.
   */
  async close(): Promise<void> {
    this.#closed = true
    for (const timer of [this.#recoveryTimer, this.#rejoinTimer]) if (timer) clearTimeout(timer)
    this.#recoveryTimer = null
    this.#rejoinTimer = null
    // Only while the join is in flight: once the stream is attached the join is done (and the
    // start may be waiting for the positioning that closing the stream ends).
    if (this.#starting !== null && this.stream === null) await capped(this.#starting, CLOSE_START_WAIT_MS)
    // A join the consumer started by itself (or a rejoin of ours) too.
    await joinsSettled(this.#consumer, CLOSE_START_WAIT_MS)
    const stream = this.stream
    this.stream = null
    if (stream) {
      await stream.close().catch((err: unknown) => {
        this.#host.log.debug('bus.kafka.stream_close_failed', { err: this.#host.redactor.describe(err) })
      })
    }
    await this.#consumer.close(true).catch((err: unknown) => {
      this.#host.log.warn('bus.kafka.consumer_close_failed', { err: this.#host.redactor.describe(err) })
    })
  }

  /**
   * Replaces the consumer before a start that is not its first: a consumer consumes once.
   * @platformatic/kafka 2.12 computes a group leader's assignments over the topics its consumer
   * tracks at that moment, with metadata for the topics it joined with. After a stream died (its
   * topics are untracked then) and a rejoin went out with none, a consume() on the same consumer
   * tracks them again before that join completes: the two differ, and its #createAssignments
   * throws a TypeError inside a socket callback, an uncaught exception that ends the process
   * (D10 end to end failed on it in CI after the broker lost its data). The old consumer leaves
   * the group first (bounded), so a static member's late LeaveGroup cannot remove its successor.
   */
  async #renew(): Promise<void> {
    const old = this.#consumer
    if (this.#rejoinTimer) clearTimeout(this.#rejoinTimer)
    this.#rejoinTimer = null
    this.#rejoinAttempts = 0
    await joinsSettled(old, CLOSE_START_WAIT_MS)
    this.stream = null
    if (!this.#closed) await this.#host.onRenew(this)
    await capped(
      old.close(true).catch((err: unknown) => {
        this.#host.log.debug('bus.kafka.consumer_close_failed', { err: this.#host.redactor.describe(err) })
      }),
      CLOSE_START_WAIT_MS,
    )
    if (this.#closed) return
    this.#consumer = this.#newConsumer()
    this.#consumed = false
    this.#host.log.debug('bus.kafka.consumer_renewed', {})
  }

  /** Stops the timers and the stream's delivery at once (a replaced session); close() follows. */
  abandon(): void {
    this.#closed = true
    for (const timer of [this.#recoveryTimer, this.#rejoinTimer]) if (timer) clearTimeout(timer)
    this.#recoveryTimer = null
    this.#rejoinTimer = null
    this.stream?.pause()
  }

  /**
   * The callback form of consume(): the callback runs synchronously when the stream is created,
   * before the stream's construction (positioning) runs on the next tick. A promise continuation
   * would run after it, and when the session was closed meanwhile that positioning fails at once
   * ("Client is closed") and emits an 'error' nobody listens to yet, which crashes the process.
   * The listener added here lives as long as the stream; the ones start() adds do the reporting.
   */
  #consume(): Promise<StringStream> {
    return new Promise((resolve, reject) => {
      this.#consumer.consume(this.#consumeOptions(), (err, stream) => {
        if (err || !stream) {
          reject(err ?? new FlowkitError(ErrorCode.BusUnavailable, 'kafka bus: consume gave no stream', { retryable: true }))
          return
        }
        stream.on('error', (streamErr: unknown) => {
          if (this.#closed || this.stream !== stream) this.#host.log.debug('bus.kafka.stream_close_failed', { err: this.#host.redactor.describe(streamErr) })
        })
        resolve(stream)
      })
    })
  }

  #consumeOptions(): ConsumeOptions<string | undefined, string, string, string | undefined> {
    return {
      topics: [...this.#options.topics],
      mode: MessagesStreamModes.COMMITTED,
      fallbackMode: this.#options.fromLatest ? MessagesStreamFallbackModes.LATEST : MessagesStreamFallbackModes.EARLIEST,
      ...groupSettings(this.#host.settings),
    }
  }

  #attach(stream: StringStream): void {
    this.stream = stream
    stream.on('error', (err) => {
      this.#host.log.warn('bus.kafka.stream_error', { err: this.#host.redactor.describe(err) })
      this.#host.onTrouble(err)
    })
    stream.on('close', () => {
      if (this.stream !== stream) return
      this.stream = null
      if (!this.#closed) this.recover()
    })
    stream.on('data', (message: StringMessage) => {
      if (!this.#closed) this.#host.onMessage(this, message)
    })
    this.#host.onStream(this)
  }

  #onConsumerError(err: unknown): void {
    if (this.#closed) return
    this.#host.log.warn('bus.kafka.consumer_error', { err: this.#host.redactor.describe(err) })
    this.#host.onTrouble(err)
    this.#scheduleRejoin()
  }

  /** After a failed rejoin the consumer sends no heartbeats: join again, with backoff. */
  #scheduleRejoin(): void {
    if (this.#closed || this.#rejoinTimer) return
    const waitMs = backoffMs(++this.#rejoinAttempts, RECOVERY_START_MS, RECOVERY_MAX_MS)
    this.#rejoinTimer = setTimeout(() => {
      this.#rejoinTimer = null
      // Without a stream its topics are untracked: the start (or recover) under way joins.
      const consumer = this.#consumer
      if (this.#closed || this.stream === null || consumer.isActive()) return
      if (joining(consumer)) {
        // A join is under way (the consumer's own, or a commit's): look again after it.
        this.#scheduleRejoin()
        return
      }
      consumer.joinGroup({}).then(
        () => {
          if (consumer !== this.#consumer) return
          this.#rejoinAttempts = 0
          this.#host.log.info('bus.kafka.rejoined', {})
        },
        (joinErr: unknown) => {
          if (consumer !== this.#consumer) return
          this.#host.log.warn('bus.kafka.rejoin_failed', { err: this.#host.redactor.describe(joinErr), attempt: this.#rejoinAttempts })
          this.#scheduleRejoin()
        },
      )
    }, waitMs)
  }
}
