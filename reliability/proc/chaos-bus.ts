/**
 * A Bus wrapper that duplicates and reorders what this process produces, on a real bus:
 * - duplicate: the record is produced again, `delayMs` later, in the background (a lost duplicate
 *   is harmless: the original was acknowledged);
 * - delay: the record is held back `delayMs` while the other records of the same produce call go
 *   first, so records of one key can reach the topic out of order. The call still resolves only
 *   once every record of it is acknowledged (what the Bus port promises the caller).
 * Subscriptions pass through untouched.
 */
import type { Bus, BusRecord, SubscribeOptions, Subscription, TopicSpec } from 'flowkit'
import { type ChaosSpec, prng } from '../lib/spec.ts'

export class ChaosBus implements Bus {
  readonly #inner: Bus
  readonly #spec: ChaosSpec
  readonly #prefix: string
  readonly #random: () => number
  readonly #background = new Set<Promise<void>>()
  duplicated = 0
  delayed = 0

  constructor(inner: Bus, spec: ChaosSpec, prefix: string) {
    this.#inner = inner
    this.#spec = spec
    this.#prefix = prefix
    this.#random = prng(spec.seed)
  }

  ensureTopics(topics: TopicSpec[]): Promise<void> {
    return this.#inner.ensureTopics(topics)
  }

  get sessionTimeoutMs(): number | undefined {
    return this.#inner.sessionTimeoutMs
  }
  partitionCount(topic: string): Promise<number> {
    return this.#inner.partitionCount(topic)
  }

  subscribe(options: SubscribeOptions): Promise<Subscription> {
    return this.#inner.subscribe(options)
  }

  #applies(topic: string): boolean {
    const name = topic.startsWith(this.#prefix) ? topic.slice(this.#prefix.length) : topic
    return this.#spec.topics.some((t) => name.startsWith(t))
  }

  #delay(): number {
    const [min, max] = this.#spec.delayMs
    return min + Math.floor(this.#random() * (max - min + 1))
  }

  async produce(records: BusRecord[]): Promise<void> {
    const now: BusRecord[] = []
    const later: { record: BusRecord; ms: number }[] = []
    for (const record of records) {
      if (!this.#applies(record.topic)) {
        now.push(record)
        continue
      }
      const dup = this.#random() < this.#spec.duplicate
      const hold = this.#random() < this.#spec.delay
      if (hold) {
        this.delayed++
        later.push({ record, ms: this.#delay() })
      } else now.push(record)
      if (dup) {
        this.duplicated++
        const ms = this.#delay()
        const p = sleep(ms)
          .then(() => this.#inner.produce([record]))
          .catch(() => undefined)
          .finally(() => this.#background.delete(p))
        this.#background.add(p)
      }
    }
    if (now.length > 0) await this.#inner.produce(now)
    await Promise.all(later.map(({ record, ms }) => sleep(ms).then(() => this.#inner.produce([record]))))
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.#background])
    await this.#inner.close()
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
