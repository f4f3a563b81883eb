/**
 * One min-heap of deadlines across all tasks (leases, accept timeouts, retries, cancel grace,
 * heartbeat limits, recovery grace), served by a single sleep on the injected clock for the
 * earliest one. Entries are hints: when one fires, the owner re-reads the node's state and decides
 * (a deadline that moved is simply pushed again), so nothing is removed from the middle when a
 * deadline moves. Entries of tasks no longer held (ended and evicted, handed over) would
 * otherwise stay until their time, up to a task deadline's 30 days: once the heap has doubled
 * since it was last compacted, the entries of tasks `live` no longer holds are dropped (one O(n)
 * pass per doubling: amortised O(1) per push).
 */
import type { Clock } from '../ports/clock.ts'
import { QUIET_ABORT } from '../util/abort.ts'

export interface TimerEntry {
  at: number
  taskId: string
  /** Node ordinal, or -1 for a task-level timer. */
  ord: number
}

/** Below this size the heap is never compacted. */
const MIN_COMPACT_SIZE = 1024

/** Puts `e` at `i` or below, moving smaller children up (min-heap on `at`). */
function siftDown(h: TimerEntry[], i: number, e: TimerEntry): void {
  for (;;) {
    const l = 2 * i + 1
    if (l >= h.length) break
    const r = l + 1
    const c = r < h.length && (h[r] as TimerEntry).at < (h[l] as TimerEntry).at ? r : l
    if ((h[c] as TimerEntry).at >= e.at) break
    h[i] = h[c] as TimerEntry
    i = c
  }
  h[i] = e
}

export class TimerHeap {
  readonly #clock: Clock
  readonly #fire: (due: TimerEntry[]) => void
  readonly #live: (taskId: string) => boolean
  #heap: TimerEntry[] = []
  /** The size at which the heap is compacted next. */
  #compactAt = MIN_COMPACT_SIZE
  #armedAt = Number.POSITIVE_INFINITY
  #abort: AbortController | null = null
  #stopped = true

  /** `live`: whether a task's entries still matter (held in memory); default every task. */
  constructor(clock: Clock, fire: (due: TimerEntry[]) => void, live: (taskId: string) => boolean = () => true) {
    this.#clock = clock
    this.#fire = fire
    this.#live = live
  }

  /** Entries held, those of tasks no longer live included until the next compaction. */
  get size(): number {
    return this.#heap.length
  }

  /** Entries of tasks still live (one pass over the heap). */
  get liveSize(): number {
    let n = 0
    for (const e of this.#heap) if (this.#live(e.taskId)) n++
    return n
  }

  start(): void {
    this.#stopped = false
    this.#arm()
  }

  stop(): void {
    this.#stopped = true
    this.#abort?.abort(QUIET_ABORT)
    this.#abort = null
    this.#armedAt = Number.POSITIVE_INFINITY
    this.#heap.length = 0
    this.#compactAt = MIN_COMPACT_SIZE
  }

  push(e: TimerEntry): void {
    if (this.#heap.length >= this.#compactAt) this.#compact()
    const h = this.#heap
    h.push(e)
    let i = h.length - 1
    while (i > 0) {
      const p = (i - 1) >> 1
      if ((h[p] as TimerEntry).at <= e.at) break
      h[i] = h[p] as TimerEntry
      i = p
    }
    h[i] = e
    if (e.at < this.#armedAt) this.#arm()
  }

  /** Drops the entries of tasks no longer live and restores the heap order (bottom-up). */
  #compact(): void {
    const h = this.#heap.filter((e) => this.#live(e.taskId))
    for (let i = (h.length >> 1) - 1; i >= 0; i--) siftDown(h, i, h[i] as TimerEntry)
    this.#heap = h
    this.#compactAt = Math.max(MIN_COMPACT_SIZE, 2 * h.length)
    // The head may now be later than the sleep armed: that sleep drains nothing and re-arms.
  }

  #pop(): TimerEntry {
    const h = this.#heap
    const top = h[0] as TimerEntry
    const last = h.pop() as TimerEntry
    if (h.length > 0) siftDown(h, 0, last)
    return top
  }

  #arm(): void {
    if (this.#stopped) return
    this.#abort?.abort(QUIET_ABORT)
    this.#abort = null
    const head = this.#heap[0]
    if (head === undefined) {
      this.#armedAt = Number.POSITIVE_INFINITY
      return
    }
    this.#armedAt = head.at
    const abort = new AbortController()
    this.#abort = abort
    // Due already: fired on the next turn of the event loop, without waiting for the clock to move
    // (an injected test clock only moves when told to).
    const wait = head.at - this.#clock.now()
    const slept =
      wait <= 0
        ? new Promise<void>((resolve, reject) => {
            const t = setImmediate(resolve)
            abort.signal.addEventListener('abort', () => {
              clearImmediate(t)
              reject(QUIET_ABORT)
            }, { once: true })
          })
        : this.#clock.sleep(wait, abort.signal)
    slept.then(
      () => {
        if (this.#abort !== abort) return
        this.#abort = null
        this.#armedAt = Number.POSITIVE_INFINITY
        this.#drain()
      },
      () => undefined,
    )
  }

  #drain(): void {
    const now = this.#clock.now()
    const due: TimerEntry[] = []
    while (this.#heap.length > 0 && (this.#heap[0] as TimerEntry).at <= now) due.push(this.#pop())
    this.#arm()
    if (due.length > 0) this.#fire(due)
  }
}
