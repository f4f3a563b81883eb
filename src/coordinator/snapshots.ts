/**
 * Background snapshot writer (compaction). A task's document in the store is rewritten from a
 * state that is already durable in the journal (taken at flush time, at that entry's version), off
 * the event path: only while the coordinator is idle (no flush for `idleMs`) or when the backlog
 * passes `maxBacklog`, terminal tasks first, a few at a time, the newest state per task only.
 * Snapshots are not needed for correctness (readers and recovery apply the journal after the
 * snapshot); on a server where an update costs far more than an insert — and, on the test
 * server, grows with the collection — this keeps updates away from the work in progress.
 * An urgent snapshot (a cancel flag, a node pulled from that ended without output: what other
 * processes read from the task document) does not wait for idleness: urgent ones are written
 * first, one at a time while the coordinator works, so a burst of cancels does not flood the store.
 */
import { errorMessage, isFlowkitError } from '../errors.ts'
import type { Logger } from '../log.ts'
import type { VersionedTask } from '../model/journal.ts'
import type { Clock } from '../ports/clock.ts'
import type { BatchMetricsWrite, Store } from '../ports/store.ts'

const TERMINAL = new Set(['finished', 'failed', 'cancelled'])

export class SnapshotWriter {
  readonly #store: Store
  readonly #clock: Clock
  readonly #log: Logger
  readonly #written: (taskId: string, v: number) => void
  readonly #pending = new Map<string, VersionedTask>()
  /** Ids in `#pending` whose state is terminal (written first). */
  readonly #terminal = new Set<string>()
  /** Ids in `#pending` to write without waiting for idleness (before the terminal ones). */
  readonly #urgent = new Set<string>()
  /** Urgent writes in flight while the coordinator works (at most one). */
  #urgentActive = 0
  /** Batch-metrics rows for the store's read model (the journal holds what counts). */
  #rows: BatchMetricsWrite[] = []
  readonly #busy = new Set<string>()
  readonly #concurrency: number
  #active = 0
  #idle: (() => void)[] = []
  #lastBusy = 0
  #timer: ReturnType<typeof setTimeout> | null = null
  #draining = false
  /** Bumped when a stop gives up: a write of an earlier round retries no more. */
  #round = 0
  readonly #idleMs: number
  readonly #maxBacklog: number
  readonly #working: () => boolean
  writes = 0

  constructor(store: Store, clock: Clock, log: Logger, written: (taskId: string, v: number) => void, options: { concurrency?: number; idleMs?: number; maxBacklog?: number; working?: () => boolean } = {}) {
    this.#store = store
    this.#clock = clock
    this.#log = log
    this.#written = written
    this.#concurrency = options.concurrency ?? 2
    this.#idleMs = options.idleMs ?? 100
    this.#maxBacklog = options.maxBacklog ?? 5000
    this.#working = options.working ?? (() => false)
  }

  /** The coordinator is working (a flush ran): snapshots wait until it has been idle a while. */
  busy(): void {
    this.#lastBusy = performance.now()
  }

  /**
   * Writes everything pending now, idle or not (stop), for at most `budgetMs`: past it, the
   * snapshots not yet written are given up (writes in flight are no longer waited for). Giving one
   * up loses nothing: the journal holds the state, and the next coordinator that finds such a task
   * (active by its snapshot, ended by its journal) rewrites it. Returns how many were given up.
   */
  async drain(budgetMs = Number.POSITIVE_INFINITY): Promise<number> {
    this.#draining = true
    this.#pump()
    let timer: ReturnType<typeof setTimeout> | undefined
    const out = await Promise.race([
      this.idle().then(() => 0),
      new Promise<number>((resolve) => {
        if (!Number.isFinite(budgetMs)) return
        timer = setTimeout(() => {
          const left = this.#pending.size + this.#busy.size
          this.#round++ // writes in flight make no more attempts
          this.#pending.clear()
          this.#terminal.clear()
          this.#urgent.clear()
          resolve(left)
        }, budgetMs)
      }),
    ])
    clearTimeout(timer)
    this.#draining = false
    return out
  }

  get backlog(): number {
    return this.#pending.size
  }

  offerRows(rows: readonly BatchMetricsWrite[]): void {
    for (const r of rows) this.#rows.push(r)
    this.#pump()
  }

  offer(doc: VersionedTask, urgent = false): void {
    const cur = this.#pending.get(doc.id)
    if (urgent) this.#urgent.add(doc.id) // a newer state pending instead carries the flag too
    if (cur !== undefined && cur.v >= doc.v) {
      if (urgent) this.#pump()
      return
    }
    this.#pending.set(doc.id, doc)
    if (TERMINAL.has(doc.status)) this.#terminal.add(doc.id)
    this.#pump()
  }

  #pickUrgent(): VersionedTask | null {
    for (const id of this.#urgent) {
      if (this.#busy.has(id)) continue
      const doc = this.#pending.get(id)
      if (doc !== undefined) return doc
      this.#urgent.delete(id)
    }
    return null
  }

  /** The next snapshot to write: an urgent one, then a terminal one (only ids being written are skipped). */
  #pick(): VersionedTask | null {
    const urgent = this.#pickUrgent()
    if (urgent !== null) return urgent
    for (const id of this.#terminal) if (!this.#busy.has(id)) return this.#pending.get(id) as VersionedTask
    for (const [id, doc] of this.#pending) if (!this.#busy.has(id)) return doc
    return null
  }

  #pump(): void {
    if (this.#working()) this.#lastBusy = performance.now()
    const quietFor = performance.now() - this.#lastBusy
    if (!this.#draining && this.#pending.size < this.#maxBacklog && quietFor < this.#idleMs) {
      if (this.#urgentActive === 0) {
        const doc = this.#pickUrgent()
        if (doc !== null) {
          this.#urgentActive++
          this.#start(doc, () => this.#urgentActive--)
        }
      }
      if (this.#timer === null) {
        this.#timer = setTimeout(() => {
          this.#timer = null
          this.#pump()
        }, this.#idleMs - quietFor + 1)
        this.#timer.unref?.()
      }
      return
    }
    if (this.#rows.length > 0 && this.#active < this.#concurrency) {
      const rows = this.#rows.splice(0, 1000)
      this.#active++
      void this.#writeRows(rows).finally(() => {
        this.#active--
        this.#pump()
        if (this.#pending.size === 0 && this.#rows.length === 0 && this.#active === 0) for (const f of this.#idle.splice(0)) f()
      })
    }
    while (this.#active < this.#concurrency) {
      const doc = this.#pick()
      if (doc === null) break
      this.#start(doc)
    }
  }

  /** Writes `doc` (taken out of the pending set); `done` runs when the write ended. */
  #start(doc: VersionedTask, done?: () => void): void {
    this.#pending.delete(doc.id)
    this.#terminal.delete(doc.id)
    this.#urgent.delete(doc.id)
    this.#busy.add(doc.id)
    this.#active++
    void this.#write(doc).finally(() => {
      done?.()
      this.#active--
      this.#busy.delete(doc.id)
      if (this.#pending.size > 0 || this.#rows.length > 0) this.#pump()
      else if (this.#active === 0) for (const f of this.#idle.splice(0)) f()
    })
  }

  async #writeRows(rows: BatchMetricsWrite[]): Promise<void> {
    const round = this.#round
    for (let attempt = 1; attempt <= 8 && round === this.#round; attempt++) {
      try {
        await this.#store.insertBatchMetrics(rows, this.#clock.now())
        return
      } catch (err) {
        if (!(isFlowkitError(err) && err.retryable) || attempt === 8) {
          this.#log.warn('coordinator.metrics_rows_failed', { rows: rows.length, error: errorMessage(err) })
          return
        }
        await new Promise((r) => setTimeout(r, Math.min(2000, 50 * 2 ** attempt)))
      }
    }
  }

  async #write(doc: VersionedTask): Promise<void> {
    const round = this.#round
    for (let attempt = 1; attempt <= 8 && round === this.#round; attempt++) {
      try {
        await this.#store.writeSnapshot(doc, this.#clock.now())
        this.writes++
        this.#written(doc.id, doc.v)
        return
      } catch (err) {
        if (round !== this.#round) {
          // Abandoned by a stop whose snapshot budget ran out (counted in coordinator.snapshots_left):
          // the journal has this state, the store may already be closing.
          this.#log.debug('coordinator.snapshot_abandoned', { task_id: doc.id, v: doc.v, error: errorMessage(err) })
          return
        }
        if (!(isFlowkitError(err) && err.retryable) || attempt === 8) {
          this.#log.warn('coordinator.snapshot_failed', { task_id: doc.id, v: doc.v, error: errorMessage(err) })
          return
        }
        await new Promise((r) => setTimeout(r, Math.min(2000, 50 * 2 ** attempt)))
      }
    }
  }

  /** Resolves when nothing is pending or being written. */
  idle(): Promise<void> {
    if (this.#pending.size === 0 && this.#rows.length === 0 && this.#active === 0) return Promise.resolve()
    return new Promise((r) => this.#idle.push(r))
  }
}
