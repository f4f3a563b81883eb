/**
 * Assignment helpers of a Kafka subscription (bus-subscription.ts): the partitions a group
 * assignment gives it, reporting the assignment to `SubscribeOptions.onAssignment` once per
 * change, and the start positions a `fromLatest` subscription commits for partitions without a
 * committed offset.
 */
import type { GroupAssignment } from '@platformatic/kafka'
import type { SubscribeOptions, TopicPartition } from '../../ports/bus.ts'
import type { Logger } from '../../log.ts'
import type { Redactor } from './bus-errors.ts'
import { partitionKey } from './bus-settings.ts'
import type { StringConsumer, StringStream } from './bus-settings.ts'

/** Partition key → partition, for the assigned partitions of the subscribed topics. */
export function assignedPartitions(assignments: readonly GroupAssignment[], topics: readonly string[]): Map<string, TopicPartition> {
  const out = new Map<string, TopicPartition>()
  for (const { topic, partitions } of assignments) {
    if (!topics.includes(topic)) continue
    for (const partition of partitions) out.set(partitionKey(topic, partition), { topic, partition })
  }
  return out
}

/** Calls `onAssignment` with the whole assignment when it differs from the last one reported. */
export class AssignmentReporter {
  readonly #callback: NonNullable<SubscribeOptions['onAssignment']> | null
  readonly #log: Logger
  readonly #redactor: Redactor
  /** The assignment last reported (sorted partition keys). */
  #reported = ''
  /** The first assignment is reported even when empty (a member with nothing to own knows it). */
  #first = true

  constructor(callback: SubscribeOptions['onAssignment'], log: Logger, redactor: Redactor) {
    this.#callback = callback ?? null
    this.#log = log
    this.#redactor = redactor
  }

  report(owned: ReadonlyMap<string, TopicPartition>, generation: number): void {
    const keys = [...owned.keys()].sort().join('\u0001')
    if (this.#callback === null || (keys === this.#reported && !this.#first)) return
    this.#first = false
    this.#reported = keys
    try {
      this.#callback(
        [...owned.values()].map(({ topic, partition }) => ({ topic, partition })),
        generation,
      )
    } catch (err) {
      this.#log.error('bus.kafka.assignment_callback_failed', { err: this.#redactor.describe(err) })
    }
  }
}

export interface SeedHost {
  readonly log: Logger
  readonly redactor: Redactor
  readonly consumer: StringConsumer
  readonly stream: StringStream
  /** Still the subscription's current session (checked after the lookup). */
  current(): boolean
  /** Marks `offset` of a partition for commit. */
  mark(topic: string, partition: number, offset: bigint): void
}

/**
 * fromLatest: a partition without a committed offset starts at the end of the log. That start is
 * committed now, so a later owner (or this one after a restart) resumes there instead of at a
 * newer end, which would skip what was produced meanwhile.
 */
export async function seedStartPositions(host: SeedHost, owned: readonly TopicPartition[]): Promise<void> {
  if (owned.length === 0) return
  try {
    const byTopic = new Map<string, number[]>()
    for (const w of owned) byTopic.set(w.topic, [...(byTopic.get(w.topic) ?? []), w.partition])
    const committed = await host.consumer.listCommittedOffsets({
      topics: [...byTopic].map(([topic, partitions]) => ({ topic, partitions })),
    })
    if (!host.current()) return
    for (const w of owned) {
      const current = committed.get(w.topic)?.[w.partition]
      if (current !== undefined && current >= 0n) continue
      const start = host.stream.offsetsToFetch.get(partitionKey(w.topic, w.partition))
      if (typeof start === 'bigint' && start >= 0n) host.mark(w.topic, w.partition, start)
    }
  } catch (err) {
    host.log.warn('bus.kafka.seed_positions_failed', { err: host.redactor.describe(err) })
  }
}

/**
 * Watches a member whose assignment matters (it reports to `onAssignment`): when the group has not
 * confirmed it for `staleMs` (no heartbeat answered, no join), although it was a member before,
 * the subscription starts a new consumer session, which rejoins the group. Seen after a broker
 * restart: the consumer's stream restarts, but its membership is never confirmed again.
 */
export class MembershipWatch {
  readonly #o: { intervalMs: number; staleMs: number; confirmedAt: () => number; reset: () => void; log: Logger }
  #timer: ReturnType<typeof setInterval> | null = null
  #lastReset = 0

  constructor(o: { intervalMs: number; staleMs: number; confirmedAt: () => number; reset: () => void; log: Logger }) {
    this.#o = o
  }

  start(): void {
    this.#timer ??= setInterval(() => this.#check(), this.#o.intervalMs)
    this.#timer.unref?.()
  }

  stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer)
    this.#timer = null
  }

  #check(): void {
    const at = this.#o.confirmedAt()
    const now = Date.now()
    if (at === 0 || now - at <= this.#o.staleMs || now - this.#lastReset <= this.#o.staleMs) return
    this.#lastReset = now
    this.#o.log.warn('bus.kafka.membership_stale', { unconfirmed_ms: now - at })
    this.#o.reset()
  }
}
