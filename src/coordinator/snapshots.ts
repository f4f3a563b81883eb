/**
 * Background snapshot writer (compaction). A task's document in the store is rewritten from a
 * state that is already durable in the journal (taken at flush time, at that entry's version), off
 * the event path: only while the coordinator is idle (no flush for `idleMs`) or when the backlog
 * passes `maxBacklog`, terminal tasks first, a few at a time, the newest state per task only. A
 * terminal snapshot waits for idleness `terminalWaitMs` at most (set from the task retention:
 * wiring.ts): past it, it is written while the coordinator works too, one at a time, each followed
 * by a rest of 3 times what it took (a coordinator that is never idle still ends its tasks in the
 * store, which retention goes by, with at most a quarter of one store lane: on the test server an
 * update under load took 0.8 s, and written back to back they cut the chain's throughput by 3.5).
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
/** A terminal snapshot written while the coordinator works is followed by a rest this many times as long. */
const AGED_REST_FACTOR = 3
/** How long a stop that gave up the pending snapshots still waits for the writes in flight. */
const IN_FLIGHT_GRACE_MS = 2000

export class SnapshotWriter {
  readonly #store: Store
  readonly #clock: Clock
  readonly #log: Logger
  readonly #written: (taskId: string, v: number) => void
  readonly #pending = new Map<string, VersionedTask>()
  /** Ids in `#pending` whose state is terminal (written first), with when each was first offered, oldest first. */
  readonly #terminal = new Map<string, number>()
  /** Ids in `#pending` to write without waiting for idleness (before the terminal ones). */
  readonly #urgent = new Set<string>()
  /** Urgent writes in flight while the coordinator works (at most one). */
  #urgentActive = 0
  /** Terminal snapshots past `terminalWaitMs` being written while the coordinator works (at most one). */
  #agedActive = 0
  /** No such write before this (performance.now()): the rest after the last one. */
  #agedRestUntil = 0
  /**
   * Batch-metrics rows: the store's read model, and the batch ledger of a snapshot that leaves it
   * out (`batches_in_rows`). Written in order, one store call at a time: `#rowsDone` of the
   * `#rowsOffered` rows are durable, and such a snapshot waits until the rows offered before it are.
   */
  #rows: BatchMetricsWrite[] = []
  #rowsOffered = 0
  #rowsDone = 0
  #rowsActive = false
  /** A rows write failed for good: snapshots without their ledger are no longer written (ledgerInRows). */
  #rowsBroken = false
  /** Per pending snapshot without its ledger, or terminal: the rows it waits for (#rowsOffered when offered). */
  readonly #marks = new Map<string, number>()
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
  readonly #terminalWaitMs: number
  readonly #maxBacklog: number
  readonly #working: () => boolean
  writes = 0

  constructor(store: Store, clock: Clock, log: Logger, written: (taskId: string, v: number) => void, options: { concurrency?: number; idleMs?: number; terminalWaitMs?: number; maxBacklog?: number; working?: () => boolean } = {}) {
    this.#store = store
    this.#clock = clock
    this.#log = log
    this.#written = written
    this.#concurrency = options.concurrency ?? 2
    this.#idleMs = options.idleMs ?? 100
    this.#terminalWaitMs = options.terminalWaitMs ?? Number.POSITIVE_INFINITY
    this.#maxBacklog = options.maxBacklog ?? 5000
    this.#working = options.working ?? (() => false)
  }

  /** The coordinator is working (a flush ran): snapshots wait until it has been idle a while. */
  busy(): void {
    this.#lastBusy = performance.now()
  }

  /**
   * Writes everything pending now, idle or not (stop), for at most `budgetMs`: past it, the
   * snapshots not yet written are given up (the writes in flight are waited for IN_FLIGHT_GRACE_MS
   * at most, and make no more attempts). Giving one
   * up loses nothing: the journal holds the state, and the next coordinator that finds such a task
   * (active by its snapshot, ended by its journal) rewrites it. Returns how many were given up.
   */
  async drain(budgetMs = Number.POSITIVE_INFINITY): Promise<number> {
    this.#draining = true
    this.#pump()
    let timer: ReturnType<typeof setTimeout> | undefined
    let gaveUp = false
    const out = await Promise.race([
      this.idle().then(() => 0),
      new Promise<number>((resolve) => {
        if (!Number.isFinite(budgetMs)) return
        timer = setTimeout(() => {
          gaveUp = true
          const left = this.#pending.size + this.#busy.size
          this.#round++ // writes in flight make no more attempts
          this.#pending.clear()
          this.#terminal.clear()
          this.#urgent.clear()
          this.#marks.clear()
          // The rows go too (settled unwritten: no snapshot waits for them any more). A runtime
          // rebuilt by the next start offers its whole ledger again before leaving it out.
          this.#rowsDone += this.#rows.length
          this.#rows.length = 0
          resolve(left)
        }, budgetMs)
      }),
    ])
    clearTimeout(timer)
    if (gaveUp) {
      // The writes in flight (at most `concurrency`, one store call each) are waited for a little:
      // a stop that returns with a write still running on the store races whatever the caller
      // does next (closing the client, dropping a test database: FerretDB 1.24 crashed on that).
      let grace: ReturnType<typeof setTimeout> | undefined
      await Promise.race([this.idle(), new Promise<void>((r) => (grace = setTimeout(r, IN_FLIGHT_GRACE_MS)))])
      clearTimeout(grace)
    }
    this.#draining = false
    return out
  }

  get backlog(): number {
    return this.#pending.size
  }

  offerRows(rows: readonly BatchMetricsWrite[]): void {
    for (const r of rows) this.#rows.push(r)
    this.#rowsOffered += rows.length
    this.#pump()
  }

  /** Whether snapshots may leave a large ledger to the rows (false once a rows write failed for good). */
  get ledgerInRows(): boolean {
    return !this.#rowsBroken
  }

  offer(doc: VersionedTask, urgent = false): void {
    const cur = this.#pending.get(doc.id)
    if (urgent) this.#urgent.add(doc.id) // a newer state pending instead carries the flag too
    if (cur !== undefined && cur.v >= doc.v) {
      if (urgent) this.#pump()
      return
    }
    if (doc.batches_in_rows === true) {
      if (this.#rowsBroken) {
        // Its ledger may be in rows that were never written: not written (the journal holds the
        // state; the next snapshot of the task carries its whole ledger).
        this.#log.warn('coordinator.snapshot_skipped', { task_id: doc.id, v: doc.v, why: 'its batch ledger rows could not be written' })
        return
      }
      this.#marks.set(doc.id, this.#rowsOffered)
    } else if (TERMINAL.has(doc.status)) {
      // A terminal snapshot waits for the rows offered before it (its own among them): once a task
      // is ended in the store no coordinator loads it, so rows lost to a crash before they were
      // written would never be offered again (the claimant of an active task offers them).
      this.#marks.set(doc.id, this.#rowsOffered)
    } else this.#marks.delete(doc.id)
    this.#pending.set(doc.id, doc)
    if (TERMINAL.has(doc.status) && !this.#terminal.has(doc.id)) this.#terminal.set(doc.id, performance.now())
    this.#pump()
  }

  /** Not being written, and the rows it waits for (a snapshot without its ledger) are durable. */
  #ready(id: string): boolean {
    return !this.#busy.has(id) && (this.#marks.get(id) ?? 0) <= this.#rowsDone
  }

  #pickUrgent(): VersionedTask | null {
    for (const id of this.#urgent) {
      if (!this.#ready(id)) continue
      const doc = this.#pending.get(id)
      if (doc !== undefined) return doc
      this.#urgent.delete(id)
    }
    return null
  }

  /** Whether the oldest terminal snapshot has waited `terminalWaitMs` (ready or not). */
  #agedDue(): boolean {
    for (const at of this.#terminal.values()) return performance.now() - at >= this.#terminalWaitMs
    return false
  }

  /** The oldest terminal snapshot ready to write that has waited `terminalWaitMs`, if any. */
  #pickAged(now: number): VersionedTask | null {
    for (const [id, at] of this.#terminal) {
      if (now - at < this.#terminalWaitMs) return null
      if (this.#ready(id)) return this.#pending.get(id) as VersionedTask
    }
    return null
  }

  /** The next snapshot to write: an urgent one, then a terminal one (only ids not ready are skipped). */
  #pick(): VersionedTask | null {
    const urgent = this.#pickUrgent()
    if (urgent !== null) return urgent
    for (const id of this.#terminal.keys()) if (this.#ready(id)) return this.#pending.get(id) as VersionedTask
    for (const [id, doc] of this.#pending) if (this.#ready(id)) return doc
    return null
  }

  #pump(): void {
    if (this.#working()) this.#lastBusy = performance.now()
    const quietFor = performance.now() - this.#lastBusy
    if (!this.#draining && this.#pending.size < this.#maxBacklog && quietFor < this.#idleMs) {
      // An urgent snapshot, or a terminal one that has waited long enough, may wait for rows:
      // they go out while the coordinator works too.
      if (this.#urgent.size > 0 || this.#agedDue()) this.#kickRows()
      if (this.#urgentActive === 0) {
        const doc = this.#pickUrgent()
        if (doc !== null) {
          this.#urgentActive++
          this.#start(doc, () => this.#urgentActive--)
        }
      }
      // A terminal snapshot that has waited long enough goes now (the timer below looks again
      // every `idleMs` while the coordinator works).
      const now = performance.now()
      if (this.#agedActive === 0 && this.#terminal.size > 0 && now >= this.#agedRestUntil) {
        const doc = this.#pickAged(now)
        if (doc !== null) {
          this.#agedActive++
          this.#start(doc, () => {
            this.#agedActive--
            const end = performance.now()
            this.#agedRestUntil = end + AGED_REST_FACTOR * (end - now)
          })
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
    this.#kickRows()
    while (this.#active < this.#concurrency) {
      const doc = this.#pick()
      if (doc === null) break
      this.#start(doc)
    }
  }

  /** Writes the next rows (a thousand at most), unless rows are being written. */
  #kickRows(): void {
    if (this.#rowsActive || this.#rows.length === 0) return
    this.#rowsActive = true
    const rows = this.#rows.splice(0, 1000)
    void this.#writeRows(rows).then((outcome) => {
      this.#rowsActive = false
      // Written, or given up by a stop (settled unwritten, as the rows still queued then).
      if (outcome !== 'failed') this.#rowsDone += rows.length
      else this.#breakRows()
      this.#pump()
      this.#settleIdle()
    })
  }

  /** Rows were lost: the snapshots waiting for them are dropped, and no more leave their ledger out. */
  #breakRows(): void {
    this.#rowsBroken = true
    for (const [id, mark] of this.#marks) {
      if (mark <= this.#rowsDone) continue
      this.#marks.delete(id)
      // A snapshot with its ledger (a terminal one waiting for the rows) is still written.
      if (this.#pending.get(id)?.batches_in_rows !== true) continue
      this.#pending.delete(id)
      this.#terminal.delete(id)
      this.#urgent.delete(id)
    }
  }

  #settleIdle(): void {
    if (this.#pending.size === 0 && this.#rows.length === 0 && this.#active === 0 && !this.#rowsActive) for (const f of this.#idle.splice(0)) f()
  }

  /** Writes `doc` (taken out of the pending set); `done` runs when the write ended. */
  #start(doc: VersionedTask, done?: () => void): void {
    this.#marks.delete(doc.id)
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
      else this.#settleIdle()
    })
  }

  /**
   * Writes rows; a retryable error is retried for as long as it lasts (snapshots may rely on these
   * rows), until a stop gives up (`abandoned`); any other error loses them.
   */
  async #writeRows(rows: BatchMetricsWrite[]): Promise<'written' | 'abandoned' | 'failed'> {
    const round = this.#round
    for (let attempt = 1; ; attempt++) {
      if (round !== this.#round) return 'abandoned'
      try {
        await this.#store.insertBatchMetrics(rows, this.#clock.now())
        return 'written'
      } catch (err) {
        if (round !== this.#round) return 'abandoned'
        if (!(isFlowkitError(err) && err.retryable)) {
          this.#log.error('coordinator.metrics_rows_failed', { rows: rows.length, error: errorMessage(err) })
          return 'failed'
        }
        if (attempt === 8) this.#log.warn('coordinator.metrics_rows_retrying', { rows: rows.length, error: errorMessage(err) })
        await new Promise((r) => setTimeout(r, Math.min(5000, 50 * 2 ** Math.min(attempt, 10))))
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
    if (this.#pending.size === 0 && this.#rows.length === 0 && this.#active === 0 && !this.#rowsActive) return Promise.resolve()
    return new Promise((r) => this.#idle.push(r))
  }
}
