/**
 * Offset commits of one Kafka subscription: coalesced per partition, monotonic, one request in
 * flight, retried with backoff, and only for partitions the subscription still owns (a revoked
 * partition commits nothing more). `committed` holds the group's committed offset per owned
 * partition as far as this subscription knows it. While the member rejoins its group (from
 * `hold()` to `release()`) nothing is sent but the final flush at close.
 *
 * A commit goes COMMIT_LINGER_MS after the first offset marked since the last one: under load a
 * subscription handles hundreds of small batches per second, and one commit per batch was the
 * broker's largest request count (an OffsetCommit is a write to `__consumer_offsets`). The cost
 * is at most that much more replay after a crash or a revoke; close still commits everything.
 */
import type { CommitOptionsPartition } from '@platformatic/kafka'
import type { Logger } from '../../log.ts'
import type { Redactor } from './bus-errors.ts'
import { CLOSE_COMMIT_ATTEMPTS, COMMIT_LINGER_MS, COMMIT_RETRY_MAX_MS, COMMIT_RETRY_START_MS, backoffMs, delay, partitionKey } from './bus-settings.ts'

export interface CommitHost {
  readonly log: Logger
  readonly redactor: Redactor
  /** True once the subscription is closing: failed commits are not retried by timer then. */
  readonly stopping: boolean
  commit(offsets: CommitOptionsPartition[]): Promise<void>
  owns(key: string): boolean
  /** Some committed offsets moved forward. */
  onCommitted(): void
}

export class CommitQueue {
  /** Partition key → committed offset (next to read), for owned partitions. */
  readonly committed = new Map<string, bigint>()
  readonly #pending = new Map<string, CommitOptionsPartition>()
  readonly #host: CommitHost
  #loop: Promise<void> | null = null
  #retryTimer: ReturnType<typeof setTimeout> | null = null
  #lingerTimer: ReturnType<typeof setTimeout> | null = null
  #failures = 0
  #epoch = 0
  #held = false

  constructor(host: CommitHost) {
    this.#host = host
  }

  /** Marks `offset` (the next offset to read) of a partition for commit. */
  mark(topic: string, partition: number, offset: bigint, leaderEpoch: number): void {
    const key = partitionKey(topic, partition)
    const pending = this.#pending.get(key)
    const committed = this.committed.get(key)
    if ((pending && pending.offset >= offset) || (committed !== undefined && committed >= offset)) return
    this.#pending.set(key, { topic, partition, offset, leaderEpoch })
    this.#kick()
  }

  /** Records an offset known to be committed for the group (read from the broker). */
  known(key: string, offset: bigint): void {
    const previous = this.committed.get(key)
    if (this.#host.owns(key) && (previous === undefined || previous < offset)) this.committed.set(key, offset)
  }

  /** A rebalance began: commits wait until `release()` (the member joined again). */
  hold(): void {
    this.#held = true
  }

  release(): void {
    if (!this.#held) return
    this.#held = false
    this.#kick()
  }

  /** The partition was revoked: nothing more is committed or remembered for it. */
  forget(key: string): void {
    this.#pending.delete(key)
    this.committed.delete(key)
  }

  /**
   * The subscription starts over on new topics: everything pending or known is forgotten, and a
   * commit still in flight (for the old topics) no longer counts when it completes.
   */
  reset(): void {
    this.#epoch++
    this.#pending.clear()
    this.committed.clear()
    this.#clearRetry()
    this.#failures = 0
  }

  /** Close: commits everything pending, with a few attempts. */
  async flush(): Promise<void> {
    this.#clearRetry()
    this.#clearLinger()
    await this.#loop
    for (let attempt = 1; this.#pending.size > 0 && attempt <= CLOSE_COMMIT_ATTEMPTS; attempt++) {
      if (await this.#run(true)) return
      this.#clearRetry()
      if (attempt < CLOSE_COMMIT_ATTEMPTS) await delay(backoffMs(attempt, COMMIT_RETRY_START_MS, 1000))
    }
    if (this.#pending.size > 0) {
      this.#host.log.warn('bus.kafka.commit_lost_at_close', { partitions: [...this.#pending.keys()] })
    }
  }

  #clearRetry(): void {
    if (this.#retryTimer) {
      clearTimeout(this.#retryTimer)
      this.#retryTimer = null
    }
  }

  #clearLinger(): void {
    if (this.#lingerTimer) {
      clearTimeout(this.#lingerTimer)
      this.#lingerTimer = null
    }
  }

  #kick(): void {
    if (this.#loop || this.#retryTimer || this.#lingerTimer || this.#held || this.#pending.size === 0) return
    this.#lingerTimer = setTimeout(() => {
      this.#lingerTimer = null
      this.#start()
    }, COMMIT_LINGER_MS)
  }

  #start(): void {
    if (this.#loop || this.#retryTimer || this.#held || this.#pending.size === 0) return
    this.#loop = this.#run().then(
      () => {
        this.#loop = null
      },
      () => {
        this.#loop = null
      },
    )
  }

  /** Commits what is pending, one request at a time (held back unless `final`); false when a commit failed. */
  async #run(final = false): Promise<boolean> {
    const host = this.#host
    while (this.#pending.size > 0 && (final || !this.#held)) {
      const batch: CommitOptionsPartition[] = []
      for (const [key, entry] of this.#pending) {
        if (host.owns(key)) batch.push(entry)
      }
      this.#pending.clear()
      if (batch.length === 0) return true
      const epoch = this.#epoch
      try {
        await host.commit(batch)
        // Reset meanwhile: this commit was for the old topics; go on with what is pending now.
        if (epoch !== this.#epoch) continue
        this.#failures = 0
        for (const entry of batch) this.known(partitionKey(entry.topic, entry.partition), entry.offset)
        host.onCommitted()
      } catch (err) {
        if (epoch !== this.#epoch) continue
        // Keep what failed unless something newer is already pending; retry later.
        for (const entry of batch) {
          const key = partitionKey(entry.topic, entry.partition)
          const newer = this.#pending.get(key)
          if (host.owns(key) && (!newer || newer.offset < entry.offset)) this.#pending.set(key, entry)
        }
        this.#failures++
        host.log.warn('bus.kafka.commit_failed', { err: host.redactor.describe(err), attempt: this.#failures })
        if (!host.stopping) {
          const waitMs = backoffMs(this.#failures, COMMIT_RETRY_START_MS, COMMIT_RETRY_MAX_MS)
          this.#retryTimer = setTimeout(() => {
            this.#retryTimer = null
            this.#start()
          }, waitMs)
        }
        return false
      }
    }
    return true
  }
}
