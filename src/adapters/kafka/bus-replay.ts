/**
 * `Subscription.caughtUp()` of the Kafka bus. When a partition is first assigned to the
 * subscription, its end offset (high watermark) then is looked up with the group's committed
 * offset and the log start; the backlog is replayed once the committed offset of every such
 * partition reached its end. A partition that is revoked before that no longer counts (its new
 * owner replays it). A failed lookup is logged and counts as nothing to replay: caughtUp never
 * hangs on it. Close resolves it too.
 */
import type { Logger } from '../../log.ts'
import type { Redactor } from './bus-errors.ts'
import { partitionKey } from './bus-settings.ts'
import type { StringConsumer } from './bus-settings.ts'

export interface ReplayHost {
  readonly log: Logger
  readonly redactor: Redactor
  readonly consumer: StringConsumer
  /** The group's committed offset of an owned partition as this subscription knows it. */
  committed(key: string): bigint | undefined
  /** Records a committed offset read from the broker. */
  known(key: string, offset: bigint): void
  owns(key: string): boolean
}

const EARLIEST = -2n

export class ReplayTracker {
  readonly #host: ReplayHost
  /** Partition key → end offset at its first assignment. */
  readonly #targets = new Map<string, bigint>()
  readonly #seen = new Set<string>()
  readonly #waiters: Array<() => void> = []
  #drainWaiters: Array<{ done: () => boolean; resolve: () => void }> = []
  readonly #assignWaiters: Array<() => void> = []

  /** Resolves at the next group assignment (a member between a revoke and its new assignment). */
  nextAssignment(): Promise<void> {
    return new Promise<void>((resolve) => this.#assignWaiters.push(resolve))
  }
  #lookups = 0
  #joined = false
  #done: boolean

  constructor(host: ReplayHost, startAtEnd: boolean) {
    this.#host = host
    this.#done = startAtEnd
  }

  wait(): Promise<void> {
    if (this.#done) return Promise.resolve()
    return new Promise<void>((resolve) => this.#waiters.push(resolve))
  }

  /** A group join gave these partitions (owned now); the ones seen for the first time get a target. */
  onAssigned(partitions: Array<{ topic: string; partition: number }>): void {
    this.#joined = true
    for (const resolve of this.#assignWaiters.splice(0)) resolve()
    if (this.#done) return
    const fresh = partitions.filter(({ topic, partition }) => {
      const key = partitionKey(topic, partition)
      if (this.#seen.has(key)) return false
      this.#seen.add(key)
      return true
    })
    if (fresh.length > 0) {
      this.#lookups++
      void this.#lookup(fresh).finally(() => {
        this.#lookups--
        this.check()
      })
    }
    this.check()
  }

  /**
   * `Subscription.drained()`: resolves once the committed offset of each of `partitions` reached
   * its end offset now (or the partition is no longer owned). A failed lookup resolves at once
   * (logged): a caller must not hang on it.
   */
  async drained(partitions: Array<{ topic: string; partition: number }>): Promise<void> {
    if (partitions.length === 0) return
    const byTopic = new Map<string, number[]>()
    for (const { topic, partition } of partitions) byTopic.set(topic, [...(byTopic.get(topic) ?? []), partition])
    const targets = new Map<string, bigint>()
    try {
      const filter = Object.fromEntries(byTopic)
      const topics = [...byTopic.keys()]
      const consumer = this.#host.consumer
      const [latest, earliest] = await Promise.all([
        consumer.listOffsets({ topics, partitions: filter }),
        consumer.listOffsets({ topics, partitions: filter, timestamp: EARLIEST }),
      ])
      for (const { topic, partition } of partitions) {
        const end = latest.get(topic)?.[partition]
        const start = earliest.get(topic)?.[partition] ?? 0n
        // An empty log (or one emptied by retention) has nothing to drain.
        if (end !== undefined && end > start) targets.set(partitionKey(topic, partition), end)
      }
    } catch (err) {
      this.#host.log.warn('bus.kafka.drained_lookup_failed', { err: this.#host.redactor.describe(err) })
      return
    }
    const done = (): boolean => {
      for (const [key, end] of targets) if (this.#host.owns(key) && (this.#host.committed(key) ?? -1n) < end) return false
      return true
    }
    if (done()) return
    await new Promise<void>((resolve) => this.#drainWaiters.push({ done, resolve }))
  }

  /** Resolves the waiters when every target is reached (or no longer owned). */
  check(): void {
    if (this.#drainWaiters.length > 0) {
      this.#drainWaiters = this.#drainWaiters.filter((w) => {
        if (!w.done()) return true
        w.resolve()
        return false
      })
    }
    if (this.#done || !this.#joined || this.#lookups > 0) return
    for (const [key, end] of this.#targets) {
      if (!this.#host.owns(key)) continue
      if ((this.#host.committed(key) ?? -1n) < end) return
    }
    this.resolve()
  }

  /** The subscription closed or lost its topics: nothing is left to wait for. */
  release(): void {
    for (const w of this.#drainWaiters.splice(0)) w.resolve()
    for (const resolve of this.#assignWaiters.splice(0)) resolve()
    this.resolve()
  }

  resolve(): void {
    this.#done = true
    this.#targets.clear()
    for (const resolve of this.#waiters.splice(0)) resolve()
  }

  async #lookup(partitions: Array<{ topic: string; partition: number }>): Promise<void> {
    const byTopic = new Map<string, number[]>()
    for (const { topic, partition } of partitions) byTopic.set(topic, [...(byTopic.get(topic) ?? []), partition])
    const topics = [...byTopic.keys()]
    const filter = Object.fromEntries(byTopic)
    const consumer = this.#host.consumer
    try {
      const [latest, earliest, committed] = await Promise.all([
        consumer.listOffsets({ topics, partitions: filter }),
        consumer.listOffsets({ topics, partitions: filter, timestamp: EARLIEST }),
        consumer.listCommittedOffsets({ topics: [...byTopic].map(([topic, ps]) => ({ topic, partitions: ps })) }),
      ])
      // Resolved meanwhile (closed, or the topics were recreated): these offsets no longer matter.
      if (this.#done) return
      for (const { topic, partition } of partitions) {
        const key = partitionKey(topic, partition)
        const end = latest.get(topic)?.[partition]
        if (end === undefined) throw new Error(`no end offset for ${key}`)
        const start = earliest.get(topic)?.[partition] ?? 0n
        const position = committed.get(topic)?.[partition] ?? -1n
        if (position >= 0n) this.#host.known(key, position)
        // Nothing to replay: the log is empty (or emptied by retention) and nothing was committed.
        if (position < 0n && start >= end) continue
        this.#targets.set(key, end)
      }
    } catch (err) {
      this.#host.log.warn('bus.kafka.caught_up_lookup_failed', {
        partitions: partitions.map(({ topic, partition }) => partitionKey(topic, partition)),
        err: this.#host.redactor.describe(err),
      })
      for (const { topic, partition } of partitions) this.#targets.delete(partitionKey(topic, partition))
    }
  }
}
