import type { Clock } from './ports/clock.ts'

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('aborted', 'AbortError')
}

/**
 * The longest delay `setTimeout` takes (2^31 - 1 ms, about 24.8 days): a longer one fires after
 * 1 ms (with a TimeoutOverflowWarning), so a longer sleep waits in steps of at most this.
 */
export const MAX_TIMEOUT_MS = 2_147_483_647

/** Real time. */
export class SystemClock implements Clock {
  now(): number {
    return Date.now()
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(abortReason(signal))
    return new Promise((resolve, reject) => {
      let left = Math.max(0, ms)
      let timer: ReturnType<typeof setTimeout>
      const onAbort = (): void => {
        clearTimeout(timer)
        reject(abortReason(signal as AbortSignal))
      }
      const step = (): void => {
        const d = Math.min(left, MAX_TIMEOUT_MS)
        left -= d
        timer = setTimeout(left > 0 ? step : done, d)
      }
      const done = (): void => {
        signal?.removeEventListener('abort', onAbort)
        resolve()
      }
      step()
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  }
}

interface PendingSleep {
  at: number
  seq: number
  resolve: () => void
}

/**
 * A clock that moves only when the test moves it. `advance(ms)` fires due sleepers in time order,
 * letting promise callbacks run between them, so engine timers behave as they would in real time.
 */
export class TestClock implements Clock {
  #now: number
  #seq = 0
  #sleepers: PendingSleep[] = []

  constructor(startMs = Date.UTC(2026, 0, 1)) {
    this.#now = startMs
  }

  now(): number {
    return this.#now
  }

  /** Number of sleepers waiting on this clock. */
  get pending(): number {
    return this.#sleepers.length
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(abortReason(signal))
    return new Promise((resolve, reject) => {
      const entry: PendingSleep = { at: this.#now + Math.max(0, ms), seq: this.#seq++, resolve: () => resolve() }
      this.#sleepers.push(entry)
      signal?.addEventListener(
        'abort',
        () => {
          this.#sleepers = this.#sleepers.filter((s) => s !== entry)
          reject(abortReason(signal))
        },
        { once: true },
      )
    })
  }

  /** Moves time forward by `ms`, waking every sleeper due on the way, in order. */
  async advance(ms: number): Promise<void> {
    const target = this.#now + ms
    for (;;) {
      this.#sleepers.sort((a, b) => a.at - b.at || a.seq - b.seq)
      const next = this.#sleepers[0]
      if (next === undefined || next.at > target) break
      this.#sleepers.shift()
      this.#now = Math.max(this.#now, next.at)
      next.resolve()
      await flushMicrotasks()
    }
    this.#now = target
    await flushMicrotasks()
  }

  /** Alias of advance(). */
  tick(ms: number): Promise<void> {
    return this.advance(ms)
  }

  /** Sets the wall clock (forward only). */
  async set(ms: number): Promise<void> {
    if (ms > this.#now) await this.advance(ms - this.#now)
  }
}

async function flushMicrotasks(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((r) => setImmediate(r))
}
