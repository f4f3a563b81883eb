/**
 * One Kafka subscription: a consumer session (bus-session.ts: a consumer in the group and one
 * MessagesStream) that only feeds per-partition buffers; a PartitionWorker per owned partition
 * hands the records to the handler (bus-worker.ts), the owned partitions and what a rebalance
 * changes in them are kept by a PartitionOwnership (bus-partitions.ts), commits go through a
 * CommitQueue (bus-commits.ts) and `caughtUp` through a ReplayTracker (bus-replay.ts). This file
 * holds the lifecycle (start, reset, close), the flow control (pausing the fetch loop) and the
 * routing of records to the workers. See bus.ts for the delivery, rebalance, pause and failure
 * semantics. `reset()` replaces the session after the subscription's topics were recreated.
 */
import type { Admin, GroupAssignment } from '@platformatic/kafka'
import type { BusBatchHandler, BusHandler, SubscribeOptions, Subscription } from '../../ports/bus.ts'
import type { Logger } from '../../log.ts'
import { AssignmentReporter, MembershipWatch, seedStartPositions } from './bus-assignment.ts'
import { AssignmentAudit } from './bus-audit.ts'
import { CommitQueue } from './bus-commits.ts'
import type { Redactor } from './bus-errors.ts'
import { firstJoin } from './bus-first-join.ts'
import { PartitionOwnership } from './bus-partitions.ts'
import { ReplayTracker } from './bus-replay.ts'
import { capped, partitionKey, sanitizeClientId } from './bus-settings.ts'
import type { Settings, StringMessage } from './bus-settings.ts'
import { ConsumerSession } from './bus-session.ts'
import type { SessionHost } from './bus-session.ts'
import { toBuffered } from './bus-worker.ts'
import type { Buffered, PartitionWorker, WorkerHost } from './bus-worker.ts'

export const DEFAULT_MAX_BATCH = 500
const OLD_SESSION_CLOSE_MS = 5000

export interface BusInternals {
  readonly settings: Settings
  readonly log: Logger
  readonly redactor: Redactor
  forget(sub: KafkaSubscription): void
  /** A stream or group error: maybe the topics are gone (the bus checks them soon). */
  troubled(err: unknown): void
  /** The bus's admin client (for the assignment audit, bus-audit.ts). */
  admin(): Admin
}

export class KafkaSubscription implements Subscription, WorkerHost, SessionHost {
  readonly groupId: string
  readonly handler: BusHandler | null
  readonly batchHandler: BusBatchHandler | null
  readonly maxBatch: number
  readonly log: Logger
  readonly topics: readonly string[]
  readonly instanceId: string | null
  readonly #fromLatest: boolean
  readonly #name: string
  readonly #bus: BusInternals
  #session: ConsumerSession
  readonly #owned: PartitionOwnership
  #paused = false
  #streamPaused = false
  #buffered = 0
  #closing: Promise<void> | null = null
  #stopping = false
  #resetting: Promise<void> = Promise.resolve()
  readonly #cooperative: boolean
  readonly #membership: MembershipWatch | null
  #confirmedAt = 0
  readonly #commits: CommitQueue
  readonly #replay: ReplayTracker
  readonly #audit: AssignmentAudit

  constructor(bus: BusInternals, options: SubscribeOptions, instanceId: string | null) {
    this.#bus = bus
    this.groupId = options.groupId
    this.handler = options.handler ?? null
    this.batchHandler = options.batchHandler ?? null
    this.maxBatch = options.maxBatch ?? DEFAULT_MAX_BATCH
    this.topics = [...new Set(options.topics)]
    this.instanceId = instanceId
    this.#fromLatest = options.fromLatest === true
    this.#name = options.name ?? 'sub'
    this.#cooperative = options.assignor === 'cooperative'
    this.log = bus.log.child({ groupId: this.groupId, subscription: this.#name })
    this.#membership =
      options.onAssignment === undefined
        ? null
        : new MembershipWatch({ intervalMs: Math.max(500, bus.settings.heartbeatInterval), staleMs: 2 * bus.settings.sessionTimeout, confirmedAt: () => this.#confirmedAt, reset: () => void this.reset(), log: this.log })
    this.#membership?.start()
    this.#audit = new AssignmentAudit({
      groupId: this.groupId,
      topics: this.topics,
      log: this.log,
      redactor: bus.redactor,
      admin: () => bus.admin(),
      reset: () => void this.reset(),
      stopping: () => this.#stopping,
    })
    this.#session = this.#newSession(this.#fromLatest)
    const owns = (key: string): boolean => this.#owned.has(key)
    const isStopping = (): boolean => this.#stopping
    const session = (): ConsumerSession => this.#session
    this.#commits = new CommitQueue({
      log: this.log,
      redactor: bus.redactor,
      get stopping() {
        return isStopping()
      },
      commit: (offsets) => session().consumer.commit({ offsets }),
      owns,
      onCommitted: () => this.#replay.check(),
    })
    this.#replay = new ReplayTracker(
      {
        log: this.log,
        redactor: bus.redactor,
        get consumer() {
          return session().consumer
        },
        committed: (key) => this.#commits.committed.get(key),
        known: (key, offset) => this.#commits.known(key, offset),
        owns,
      },
      this.#fromLatest,
    )
    this.#owned = new PartitionOwnership(this, {
      topics: this.topics,
      log: this.log,
      commits: this.#commits,
      replay: this.#replay,
      reporter: new AssignmentReporter(options.onAssignment, this.log, bus.redactor),
      confirmed: () => {
        this.#confirmedAt = Date.now()
      },
    })
  }

  get settings(): Settings {
    return this.#bus.settings
  }

  get redactor(): Redactor {
    return this.#bus.redactor
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
    for (const worker of this.#owned.workers()) worker.wake()
  }

  caughtUp(): Promise<void> {
    return this.#replay.wait()
  }

  async drained(): Promise<void> {
    if (this.#closing !== null) return
    // Between a revoke and the next assignment (a rejoin after a pause) nothing is owned: the
    // backlog is still there, so wait for the assignment instead of reporting it drained.
    if (this.#owned.size === 0) await this.#replay.nextAssignment()
    if (this.#closing !== null) return
    await this.#replay.drained(this.#owned.positions())
  }

  close(): Promise<void> {
    this.#closing ??= this.#close().finally(() => this.#replay.release())
    return this.#closing
  }

  /** Joins the group (bus-first-join.ts), then waits until the stream knows where each owned partition starts. */
  async start(): Promise<void> {
    await firstJoin({
      groupId: this.groupId,
      log: this.log,
      redactor: this.#bus.redactor,
      subscribeTimeoutMs: this.#bus.settings.subscribeTimeoutMs,
      session: () => this.#session,
      stopping: () => this.#stopping,
    })
    if (this.#fromLatest) await this.#seedStartPositions()
  }

  /**
   * The subscription's topics were recreated (or the cluster replaced): the consumer's group,
   * topic ids and positions are gone with them. Starts over with a new consumer session: owned
   * partitions are given up (in-flight handlers finish; buffered records are dropped), the new
   * session starts each partition from the group's committed offset or the beginning of the new
   * topic (also for `fromLatest`: everything in it was produced after the loss). Resolves once
   * the new session runs or retries in the background.
   */
  reset(replaced?: { ids: ReadonlyMap<string, string>; since: number }): Promise<void> {
    const session = this.#session
    if (this.#stopping) return this.#resetting
    // Already on the new topics: a session started after the check began, or one that saw their ids.
    if (replaced && (session.createdAt >= replaced.since || session.knows(replaced.ids))) return this.#resetting
    if (!session.closed) {
      // At once: nothing more of the old session reaches a handler.
      session.abandon()
      this.#owned.revokeAll()
      this.#commits.reset()
      // The backlog counted for caughtUp() and drained() was lost with the old topics.
      this.#replay.release()
    }
    this.#resetting = this.#resetting.then(() => this.#replace(session))
    return this.#resetting
  }

  /** The topic ids and the cluster id this subscription consumes now (as far as known). */
  get identity(): { ids: ReadonlyMap<string, string>; clusterId: string | null } {
    return { ids: this.#session.topicIds, clusterId: this.#session.clusterId }
  }

  // ---- WorkerHost ----

  onDequeued(count: number): void {
    this.#buffered -= count
    this.#updateFlow()
  }

  onHandled(worker: PartitionWorker, entry: Buffered): void {
    if (worker.revoked || this.#owned.get(worker.key) !== worker) return
    this.#commits.mark(worker.topic, worker.partition, BigInt(entry.message.offset) + 1n, entry.leaderEpoch)
  }

  confirmedAt(): number {
    return this.#confirmedAt
  }

  // ---- SessionHost ----

  onConfirmed(session: ConsumerSession): void {
    if (session === this.#session) this.#confirmedAt = Date.now()
  }

  onStream(session: ConsumerSession): void {
    if (session !== this.#session) return
    this.#streamPaused = false
    this.#updateFlow()
  }

  onStreamRestarted(session: ConsumerSession): void {
    if (session === this.#session && this.#fromLatest) void this.#seedStartPositions()
  }

  onTrouble(err: unknown): void {
    if (!this.#stopping) this.#bus.troubled(err)
  }

  onTopicsChanged(session: ConsumerSession): void {
    if (this.#stopping || session !== this.#session) return
    this.log.warn('bus.kafka.topics_changed', { topics: this.topics })
    void this.reset()
    // The bus checks its topics: its producer and other subscriptions need the same.
    this.#bus.troubled(null)
  }

  /**
   * The session's consumer is replaced (its stream died) and leaves the group: as before any
   * leave, what was handled is committed and every partition given up first, the handlers in
   * flight finished (bounded), so another member that gets a partition meanwhile never handles it
   * next to this one. The new consumer's join assigns them again.
   */
  async onRenew(session: ConsumerSession): Promise<void> {
    if (this.#stopping || session !== this.#session) return
    await capped(this.#commits.flush(), OLD_SESSION_CLOSE_MS)
    if (this.#stopping || session !== this.#session) return
    this.#commits.hold()
    this.#owned.revokeAll()
    await capped(this.#owned.stopAll(), OLD_SESSION_CLOSE_MS)
  }

  onMessage(session: ConsumerSession, message: StringMessage): void {
    if (session !== this.#session) return
    const worker = this.#owned.get(partitionKey(message.topic, message.partition))
    // Not (or no longer) ours: a fetch that was under way when the assignment changed.
    if (worker === undefined || worker.stopped || this.#stopping) return
    const offset = Number(message.offset)
    // Read again after a rejoin reset the stream to the committed offset: already buffered/handled.
    if (worker.nextOffset !== null && offset < worker.nextOffset) return
    worker.nextOffset = offset + 1
    worker.push(toBuffered(message))
    this.#buffered++
    this.#updateFlow()
  }

  /** A rebalance began: see PartitionOwnership.rebalancing (bus-partitions.ts). */
  onRebalance(session: ConsumerSession): void {
    if (this.#stopping || session !== this.#session) return
    this.#owned.rebalancing(session)
  }

  onJoin(session: ConsumerSession, assignments: GroupAssignment[]): void {
    if (this.#stopping || session !== this.#session) return
    this.#owned.join(session, assignments)
    this.#audit.joined()
  }

  // ---- Internals ----

  #newSession(fromLatest: boolean): ConsumerSession {
    return new ConsumerSession(this, {
      groupId: this.groupId,
      topics: [...this.topics],
      clientId: sanitizeClientId(`${this.#bus.settings.clientId}-${this.#name}`),
      instanceId: this.instanceId,
      fromLatest,
      cooperative: this.#cooperative,
    })
  }

  async #replace(old: ConsumerSession): Promise<void> {
    if (this.#stopping || old !== this.#session) return
    // The old member leaves first (bounded: the old cluster may be gone), so a static member's
    // late LeaveGroup cannot remove its successor.
    await capped(old.close(), OLD_SESSION_CLOSE_MS)
    if (this.#stopping) return
    const session = this.#newSession(false)
    this.#session = session
    this.log.info('bus.kafka.subscription_reset', { topics: this.topics })
    session.start().then(
      () => {
        if (session === this.#session && this.#fromLatest) void this.#seedStartPositions()
      },
      (err: unknown) => {
        this.log.warn('bus.kafka.stream_restart_failed', { err: this.#bus.redactor.describe(err) })
        if (!session.stream) session.recover()
      },
    )
  }

  /** Pauses the fetch loop when the user paused, the buffers are full, or we are closing. */
  #updateFlow(): void {
    const stream = this.#session.stream
    // An abandoned session's stream stays paused (closing, or replaced by a reset).
    if (!stream || stream.destroyed || this.#session.closed) return
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

  /** fromLatest: commits where the owned partitions without a committed offset start (bus-assignment.ts). */
  #seedStartPositions(): Promise<void> {
    const session = this.#session
    const stream = session.stream
    if (!stream) return Promise.resolve()
    const host = {
      log: this.log,
      redactor: this.redactor,
      consumer: session.consumer,
      stream,
      current: () => session === this.#session,
      mark: (topic: string, partition: number, offset: bigint) => this.#commits.mark(topic, partition, offset, -1),
    }
    return seedStartPositions(host, this.#owned.positions())
  }

  // ---- Close ----

  async #close(): Promise<void> {
    this.#stopping = true
    this.#membership?.stop()
    this.#audit.stop()
    this.#session.abandon()
    await this.#resetting
    // 1. Stop fetching; 2. let in-flight handlers finish; 3. commit them; 4. leave the group.
    this.#updateFlow()
    await this.#owned.stopAll()
    await this.#commits.flush()
    await this.#session.close()
    this.#owned.clear()
    this.#bus.forget(this)
  }
}
