/**
 * Transactional outbox dispatcher: commands are first written to the store (unique by topic, key
 * and dedup_id), then sent. Failed sends are retried with capped exponential backoff and jitter;
 * after the maximum attempts a row is parked as `failed` (dead letter), visible through the store
 * and requeueable by an operator.
 */
import type { Logger } from '../log.ts'
import type { Bus } from '../ports/bus.ts'
import type { Clock } from '../ports/clock.ts'
import type { OutboxEnqueue, Store } from '../ports/store.ts'
import { errorMessage } from '../errors.ts'

export interface OutboxOptions {
  maxAttempts: number
  backoffMinMs: number
  backoffMaxMs: number
  tickMs: number
  /** A claimed row is invisible to other dispatchers this long. */
  claimMs?: number
  batchSize?: number
  /** Random source in [0, 1) for jitter (injectable for tests). */
  random?: () => number
}

/** Backoff before attempt `attempts + 1`: min * 2^(attempts-1), capped, with ±20% jitter under the cap. */
export function outboxBackoffMs(attempts: number, min: number, max: number, random: () => number): number {
  const base = Math.min(max, min * 2 ** Math.max(0, attempts - 1))
  const jittered = base * (0.8 + 0.4 * random())
  return Math.round(Math.min(max, jittered))
}

export class OutboxDispatcher {
  readonly #store: Store
  readonly #bus: Bus
  readonly #clock: Clock
  readonly #log: Logger
  readonly #opts: Required<OutboxOptions>
  #running = false
  #loop: Promise<void> | null = null
  #wake: (() => void) | null = null
  #dirty = false
  #stop = new AbortController()

  constructor(store: Store, bus: Bus, clock: Clock, log: Logger, options: OutboxOptions) {
    this.#store = store
    this.#bus = bus
    this.#clock = clock
    this.#log = log
    this.#opts = { claimMs: 30_000, batchSize: 100, random: Math.random, ...options }
  }

  /** Writes a row (idempotent by dedup) and wakes the dispatcher. Returns false for a duplicate. */
  async enqueue(row: OutboxEnqueue): Promise<boolean> {
    const inserted = await this.#store.outboxEnqueue(row, this.#clock.now())
    if (!inserted) this.#log.debug('outbox.duplicate', { topic: row.topic, key: row.key, dedup_id: row.dedup_id })
    this.kick()
    return inserted
  }

  kick(): void {
    this.#dirty = true
    this.#wake?.()
  }

  start(): void {
    if (this.#running) return
    this.#running = true
    this.#stop = new AbortController()
    this.#loop = this.#run()
  }

  async stop(): Promise<void> {
    this.#running = false
    this.#stop.abort()
    this.#wake?.()
    await this.#loop
    this.#loop = null
  }

  /** Sends every due row once; returns how many rows were handled. */
  async dispatchDue(): Promise<number> {
    const now = this.#clock.now()
    const rows = await this.#store.outboxClaimDue(now, this.#opts.batchSize, now + this.#opts.claimMs)
    for (const row of rows) {
      try {
        await this.#bus.produce([{ topic: row.topic, key: row.key, value: row.value }])
        await this.#store.outboxMarkSent(row.id, this.#clock.now())
        this.#log.debug('outbox.sent', { topic: row.topic, key: row.key, dedup_id: row.dedup_id, attempts: row.attempts + 1 })
      } catch (err) {
        const attempts = row.attempts + 1
        const error = errorMessage(err)
        if (attempts >= this.#opts.maxAttempts) {
          await this.#store.outboxMarkFailed(row.id, attempts, error, this.#clock.now())
          this.#log.error('outbox.failed', { topic: row.topic, key: row.key, dedup_id: row.dedup_id, attempts, error })
        } else {
          const delay = outboxBackoffMs(attempts, this.#opts.backoffMinMs, this.#opts.backoffMaxMs, this.#opts.random)
          await this.#store.outboxMarkRetry(row.id, attempts, this.#clock.now() + delay, error, this.#clock.now())
          this.#log.warn('outbox.retry', { topic: row.topic, key: row.key, dedup_id: row.dedup_id, attempts, delay_ms: delay, error })
        }
      }
    }
    return rows.length
  }

  async #run(): Promise<void> {
    while (this.#running) {
      this.#dirty = false
      try {
        const n = await this.dispatchDue()
        if (n >= this.#opts.batchSize) continue
      } catch (err) {
        this.#log.error('outbox.dispatch_error', { error: errorMessage(err) })
      }
      if (this.#dirty || !this.#running) continue
      const tick = new AbortController()
      const onStop = (): void => tick.abort()
      this.#stop.signal.addEventListener('abort', onStop, { once: true })
      await new Promise<void>((resolve) => {
        this.#wake = resolve
        this.#clock.sleep(this.#opts.tickMs, tick.signal).then(resolve, resolve)
      })
      tick.abort()
      this.#stop.signal.removeEventListener('abort', onStop)
      this.#wake = null
    }
  }
}
