/**
 * Status events (`status.{role}.v1`) leave the worker in batches: `StatusEmitter.send` queues a
 * record and resolves once the produce carrying it succeeded. One `bus.produce(records)` is in
 * flight at a time; every record queued meanwhile goes in the next call, in queue order, so the
 * events of one run keep their order.
 *
 * A record may be held back a moment (`hold`): it waits, at most `holdMs`, for the next record of
 * its key (its run's next event) and goes out with it, before it. A run that accepts a start and
 * ends its first batch within that time reports both in one produce, which its coordinator
 * applies and writes as one journal entry (a run's events otherwise arrive one by one, each in a
 * flush of its own). Nothing waits for a held record: it is released by the next record of its
 * key, by the time limit, or by `release`.
 *
 * A failed produce is retried with capped exponential backoff (100 ms doubling to 2 s by default)
 * for up to 30 s, so a short broker outage does not abandon running nodes; then its callers are
 * rejected with the last error. Errors that no retry can fix (a closed bus, a record the bus
 * refuses) are not retried, and a batch of several records failing that way is sent again record
 * by record, so one bad record fails only its own caller.
 */
import { ErrorCode, FlowkitError, errorMessage } from '../errors.ts'
import type { Logger } from '../log.ts'
import type { Bus, BusRecord } from '../ports/bus.ts'
import type { Clock } from '../ports/clock.ts'
import { WORKER_DEFAULTS } from '../config.ts'

export interface StatusEmitterOptions {
  bus: Pick<Bus, 'produce'>
  clock: Clock
  log: Logger
  /** First retry delay after a failed produce. Default 100 ms. */
  retryInitialMs?: number
  /** Longest retry delay. Default 2000 ms. */
  retryMaxMs?: number
  /** How long a batch is retried before its callers are failed. Default 30000 ms. */
  retryForMs?: number
  /** Longest time a held record waits for the next record of its key. Default: the worker's `statusHoldMs` default (5 ms); 0 holds nothing. */
  holdMs?: number
}

/** Default of StatusEmitterOptions.holdMs (WorkerConfig.statusHoldMs): about a Kafka producer's default linger. */
export const DEFAULT_HOLD_MS = WORKER_DEFAULTS.statusHoldMs

interface Pending {
  record: BusRecord
  resolve: () => void
  reject: (err: unknown) => void
}

/** Errors a retry cannot fix. */
const FINAL_CODES: ReadonlySet<string> = new Set([
  ErrorCode.Closed,
  ErrorCode.BadMessage,
  ErrorCode.InvalidKey,
  ErrorCode.Config,
  ErrorCode.SecretDetected,
])

function isFinal(err: unknown): boolean {
  return err instanceof FlowkitError && FINAL_CODES.has(err.code)
}

function isTransient(err: unknown): boolean {
  return err instanceof FlowkitError && err.retryable
}

export class StatusEmitter {
  readonly #bus: Pick<Bus, 'produce'>
  readonly #clock: Clock
  readonly #log: Logger
  readonly #retryInitialMs: number
  readonly #retryMaxMs: number
  readonly #retryForMs: number
  readonly #holdMs: number
  #queue: Pending[] = []
  /** The batch being produced (or retried). */
  #current: Pending[] = []
  /** Records held back (`hold`), by key: at most one per key (a second one releases the first). */
  readonly #held = new Map<string | null, Pending>()
  /** Releases every held record (armed by the first record held after the last release). */
  #holdTimer: ReturnType<typeof setTimeout> | null = null
  #flushing = false
  readonly #closed = new AbortController()
  /** No batch is retried past this time (set while the worker stops). */
  #finishBy = Number.POSITIVE_INFINITY

  constructor(options: StatusEmitterOptions) {
    this.#bus = options.bus
    this.#clock = options.clock
    this.#log = options.log
    this.#retryInitialMs = options.retryInitialMs ?? 100
    this.#retryMaxMs = options.retryMaxMs ?? 2000
    this.#retryForMs = options.retryForMs ?? 30_000
    this.#holdMs = options.holdMs ?? DEFAULT_HOLD_MS
  }

  /** How long one batch is retried before its callers are failed. */
  get retryForMs(): number {
    return this.#retryForMs
  }

  /**
   * No batch is retried past `at` (Infinity: no bound but each batch's own window). A stopping
   * worker sets it: its last reports share one retry window instead of one window each, one
   * batch after another (with the broker down, a stop took minutes: each batch waited its 30 s
   * in turn while heartbeats filled the next).
   */
  finishBy(at: number): void {
    this.#finishBy = at
  }

  /** As finishBy, unless an earlier bound is already set. */
  finishWithin(at: number): void {
    this.#finishBy = Math.min(this.#finishBy, at)
  }

  /** Records held, waiting for a produce or in one. */
  get pending(): number {
    return this.#held.size + this.#queue.length + this.#current.length
  }

  /**
   * Queues one record; resolves when a produce carrying it succeeded, rejects when it failed for
   * good. A held record of the same key goes first. `hold`: this record waits (at most `holdMs`)
   * for the next record of its key, to go out with it.
   */
  send(record: BusRecord, hold = false): Promise<void> {
    if (this.#closed.signal.aborted) return Promise.reject(this.#closed.signal.reason)
    const before = this.#held.size === 0 ? undefined : this.#held.get(record.key)
    if (before !== undefined) {
      this.#held.delete(record.key)
      this.#queue.push(before)
    }
    let pending: Pending | undefined
    const sent = new Promise<void>((resolve, reject) => {
      pending = { record, resolve, reject }
    })
    if (hold && this.#holdMs > 0) {
      this.#held.set(record.key, pending as Pending)
      this.#holdTimer ??= setTimeout(() => {
        this.#holdTimer = null
        this.release()
      }, this.#holdMs)
      if (before === undefined) return sent
    } else {
      this.#queue.push(pending as Pending)
    }
    this.#kick()
    return sent
  }

  /** Sends the held record of `key` now, or (no key) every held record, in the order they were held. */
  release(key?: string | null): void {
    if (this.#held.size === 0) return
    if (key !== undefined) {
      const p = this.#held.get(key)
      if (p === undefined) return
      this.#held.delete(key)
      this.#queue.push(p)
    } else {
      for (const p of this.#held.values()) this.#queue.push(p)
      this.#held.clear()
    }
    this.#kick()
  }

  #kick(): void {
    if (!this.#flushing) {
      this.#flushing = true
      void this.#flush()
    }
  }

  /**
   * Sends nothing more: every queued or in-flight record's caller is rejected with `reason` and
   * retries stop (the worker was killed: a crashed process reports nothing).
   */
  close(reason: unknown): void {
    if (this.#closed.signal.aborted) return
    this.#closed.abort(reason)
    if (this.#holdTimer !== null) clearTimeout(this.#holdTimer)
    this.#holdTimer = null
    const held = [...this.#held.values()]
    this.#held.clear()
    for (const p of [...this.#current.splice(0), ...this.#queue.splice(0), ...held]) p.reject(reason)
  }

  async #flush(): Promise<void> {
    try {
      await Promise.resolve() // records sent in the same tick share the first produce
      while (this.#queue.length > 0 && !this.#closed.signal.aborted) {
        const batch = this.#queue.splice(0)
        this.#current = batch
        try {
          await this.#deliver(batch, this.#clock.now() + this.#retryForMs)
        } catch (err) {
          for (const p of batch) p.reject(err) // not expected: #deliver settles every record itself
        }
        this.#current = []
      }
    } finally {
      this.#flushing = false
    }
  }

  /** Produces `batch` (retrying until `deadline`) and settles each of its records. */
  async #deliver(batch: Pending[], deadline: number): Promise<void> {
    let delay = this.#retryInitialMs
    for (let attempt = 1; ; attempt++) {
      const closed = this.#closed.signal
      if (closed.aborted) return settle(batch, closed.reason)
      try {
        await this.#bus.produce(batch.map((p) => p.record))
        if (attempt > 1) this.#log.info('worker.status_produce_recovered', { records: batch.length, attempts: attempt })
        return settle(batch)
      } catch (err) {
        if (closed.aborted) return settle(batch, closed.reason)
        if (batch.length > 1 && !isTransient(err)) {
          // Maybe one record the bus refuses: send each on its own, in order, within the same time.
          for (const p of batch) await this.#deliver([p], deadline)
          return
        }
        if (isFinal(err) || this.#clock.now() + delay > Math.min(deadline, this.#finishBy)) {
          this.#log.error('worker.status_produce_failed', {
            records: batch.length,
            attempts: attempt,
            keys: [...new Set(batch.map((p) => p.record.key))].slice(0, 10),
            error: errorMessage(err),
          })
          return settle(batch, err)
        }
        this.#log.warn('worker.status_produce_retry', { records: batch.length, attempt, retry_in_ms: delay, error: errorMessage(err) })
        try {
          await this.#clock.sleep(delay, closed)
        } catch {
          return settle(batch, closed.reason)
        }
        delay = Math.min(delay * 2, this.#retryMaxMs)
      }
    }
  }
}

function settle(batch: Pending[], err?: unknown): void {
  for (const p of batch) {
    if (err === undefined) p.resolve()
    else p.reject(err)
  }
}
