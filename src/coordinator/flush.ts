/**
 * Group commit. Events change task runtimes in memory; the flusher writes what changed, for every
 * dirty task at once, and only then lets the effects out:
 *
 *   1. batch-metrics rows of every task: one insert of rows with idempotent keys;
 *   2. one journal entry per task (its new node states, task fields, commands, applied events):
 *      one insert for all tasks, each entry unique by (task, version) — a writer that lost its
 *      version (another coordinator wrote it) is fenced and drops the task;
 *   3. snapshots that must be current before commands go out (variables too large to inline;
 *      one the store refuses fails the attempts of the STARTs that needed it);
 *   4. then the commands (one produce per round), coordinator functions, waiters and the bus
 *      offsets of the events this flush covers.
 *
 * Events that arrive while a flush is in flight are applied in memory and written by the next
 * one. A crash anywhere leaves a state recovery completes: rows without an entry are ignored
 * (their events are replayed and write the same rows), an entry without its commands is repaired
 * from the state. Other snapshots are rewritten in the background (see snapshots.ts).
 */
import { ErrorCode, FlowkitError, errorMessage, isFlowkitError } from '../errors.ts'
import type { Logger } from '../log.ts'
import type { JournalEntry, VersionedTask } from '../model/journal.ts'
import type { Clock } from '../ports/clock.ts'
import type { BatchMetricsWrite, Store } from '../ports/store.ts'
import { type PendingCommand, type TaskRuntime, journalCommands } from './runtime.ts'
import { ledgerRows } from './runtime-doc.ts'
import { handOver } from '../ports/store-rules.ts'

export interface FlushHooks {
  /** The entry of `rt` is durable: send its commands, run its functions, wake its waiters. */
  durable(rt: TaskRuntime, commands: PendingCommand[], fnRuns: number[], snapshot: VersionedTask | null, urgent: boolean): void
  /**
   * A START of `rt` could not go out: the snapshot it needed (variables too large to inline) was
   * refused for good. Its attempt fails (its retry policy applies).
   */
  startRefused(rt: TaskRuntime, command: PendingCommand, error: string): void
  /** Batch-metrics rows of this flush (already in the entries): for the store's read model. */
  rows(rows: BatchMetricsWrite[]): void
  /** Another writer holds the version this coordinator wanted to write: it no longer owns `rt`. */
  fenced(rt: TaskRuntime): void
  /** Whether a snapshot of `rt` should be taken with this entry (besides forced ones). */
  wantsSnapshot(rt: TaskRuntime, now: number): boolean
  /**
   * The most batch ledger entries a background snapshot carries (past that it leaves the ledger to
   * the batch metrics rows: `batches_in_rows`); absent: no limit.
   */
  ledgerInlineMax?(): number
  /** A journal entry is durable (task events for watchers). */
  observed?(entry: JournalEntry): void
  /** Resolves when this coordinator may write (its ownership is confirmed). */
  mayWrite?(): Promise<void>
  /** Whether the task is still this coordinator's (its partition): if not, it is fenced unwritten. */
  owns?(rt: TaskRuntime): boolean
}

interface Built {
  rt: TaskRuntime
  entry: JournalEntry
  commands: PendingCommand[]
  fnRuns: number[]
  force: boolean
  urgent: boolean
  snapshot: VersionedTask | null
  /** Batch metrics rows to write once the entry is durable (the whole ledger when the snapshot first leaves it out). */
  rows: BatchMetricsWrite[]
  ledgerRows: boolean
}

const BACKOFF_MIN_MS = 20
const BACKOFF_MAX_MS = 2000

export class Flusher {
  readonly #store: Store
  readonly #clock: Clock
  readonly #log: Logger
  readonly #writer: string
  readonly #hooks: FlushHooks
  readonly #dirty = new Set<TaskRuntime>()
  #running: Promise<void> | null = null
  #scheduled = false
  /** Resolves when the flush that will cover the current dirty state is durable. */
  #next: { promise: Promise<void>; resolve: () => void; reject: (err: Error) => void } | null = null
  #currentWaiters: { reject: (err: Error) => void } | null = null
  #abandoned: Error | null = null
  #current: Promise<void> | null = null
  #stopped = false
  /** Store calls made by flushes, and flushes (for diagnostics and benchmarks). */
  flushes = 0
  entries = 0

  constructor(store: Store, clock: Clock, log: Logger, writer: string, hooks: FlushHooks) {
    this.#store = store
    this.#clock = clock
    this.#log = log
    this.#writer = writer
    this.#hooks = hooks
  }

  /** Since when the flush's store calls fail (null: the last one succeeded): its events wait meanwhile. */
  failingSince: number | null = null
  /** When the flush's store call in flight began (null: none): one that hangs holds the events too. */
  callSince: number | null = null

  /** A flush is being written, or something waits to be. */
  get working(): boolean {
    return this.#running !== null || this.#dirty.size > 0
  }

  get pending(): number {
    return this.#dirty.size
  }

  /** `force`: write an entry even when only the sent mark changed. */
  mark(rt: TaskRuntime, force = false): void {
    if (rt.dropped) return
    if (force) rt.events.push('sent')
    this.#dirty.add(rt)
    this.#schedule()
  }

  forget(rt: TaskRuntime): void {
    this.#dirty.delete(rt)
  }

  /** Resolves once everything applied so far is durable. */
  barrier(): Promise<void> {
    if (this.#abandoned !== null) return Promise.reject(this.#abandoned)
    // Stopped (the coordinator's last flush is done): what was applied since is not written.
    if (this.#stopped && this.#dirty.size > 0) return Promise.reject(new FlowkitError(ErrorCode.Closed, 'the coordinator stopped: changes applied after its last flush are not written'))
    if (this.#dirty.size > 0) {
      this.#schedule()
      return this.#nextPromise()
    }
    return this.#current ?? Promise.resolve()
  }

  #nextPromise(): Promise<void> {
    if (this.#next === null) {
      let resolve!: () => void
      let reject!: (err: Error) => void
      const promise = new Promise<void>((res, rej) => {
        resolve = res
        reject = rej
      })
      // A waiter may be gone when the flush is abandoned: never an unhandled rejection.
      promise.catch(() => undefined)
      this.#next = { promise, resolve, reject }
    }
    return this.#next.promise
  }

  #schedule(): void {
    if (this.#scheduled || this.#running !== null || this.#stopped) return
    this.#scheduled = true
    setImmediate(() => {
      this.#scheduled = false
      this.#kick()
    })
  }

  #kick(): void {
    if (this.#running !== null || this.#dirty.size === 0) {
      if (this.#dirty.size === 0 && this.#next !== null && this.#running === null) {
        const n = this.#next
        this.#next = null
        n.resolve()
      }
      return
    }
    const done = this.#nextPromise()
    const waiters = this.#next
    this.#next = null
    this.#currentWaiters = waiters
    this.#current = done
    this.#running = this.#flush()
      .catch((err: unknown) => this.#log.error('coordinator.flush_failed', { error: errorMessage(err) }))
      .finally(() => {
        if (this.#abandoned !== null) return
        this.#running = null
        this.#currentWaiters = null
        waiters?.resolve()
        if (this.#current === done) this.#current = null
        if (this.#dirty.size > 0) this.#schedule()
        else if (this.#next !== null) {
          const n = this.#next
          this.#next = null
          n.resolve()
        }
      })
  }

  /** Writes what is dirty now, then waits for every flush in flight (used on stop). */
  async drain(): Promise<void> {
    for (let i = 0; i < 100 && (this.#running !== null || this.#dirty.size > 0); i++) {
      if (this.#running === null) this.#kick()
      await this.#running
    }
  }

  stop(): void {
    this.#stopped = true
  }

  /**
   * Gives up everything in flight (a simulated crash): waiters are rejected with `reason`, dirty
   * tasks are forgotten, nothing more is written or let out.
   */
  abandon(reason: Error): void {
    this.#stopped = true
    this.#abandoned = reason
    this.#dirty.clear()
    const n = this.#next
    this.#next = null
    n?.reject(reason)
    this.#currentWaiters?.reject(reason)
  }

  /** Ready for another start (after stop). */
  restart(): void {
    this.#stopped = false
    this.#abandoned = null
    this.#dirty.clear()
  }

  async #flush(): Promise<void> {
    if (this.#abandoned !== null) return
    const now = this.#clock.now()
    const built: Built[] = []
    const rows: BatchMetricsWrite[] = []
    if (this.#hooks.mayWrite !== undefined) await this.#hooks.mayWrite().catch(() => undefined)
    for (const rt of this.#dirty) {
      if (!rt.dirty || rt.dropped) continue
      if (this.#hooks.owns !== undefined && !this.#hooks.owns(rt)) {
        this.#log.info('coordinator.not_owner', { task_id: rt.id })
        this.#hooks.fenced(rt)
        continue
      }
      const ch = rt.takeChanges()
      const seq = rt.v + 1
      if (ch.varsChanged) rt.varsV = seq
      // Commands go out after their entry is durable: an entry without commands, written while
      // nothing is waiting to be sent, says that everything up to it was sent.
      const sentThrough = rt.unsent === 0 && ch.commands.length === 0 ? seq : rt.sentThrough > rt.sentRecorded ? rt.sentThrough : undefined
      // Every field present (undefined when it has nothing: stores leave those out), in one order:
      // entries of one shape keep the code that reads them monomorphic (optional fields added one
      // by one made a shape per combination, and the store's and observers' readers deoptimized).
      const entry: JournalEntry = {
        task_id: rt.id,
        seq,
        at_ms: now,
        writer: this.#writer,
        events: ch.events,
        nodes: ch.nodes,
        task: ch.task,
        commands: ch.commands.length > 0 ? journalCommands(ch.commands) : undefined,
        sent_through: sentThrough,
        batches: ch.metrics.length > 0 ? ch.metrics.map((r) => [r.node_id, r.batch_uid, r.attempt_epoch, r.metrics]) : undefined,
      }
      // A snapshot that commands wait for (force, urgent) stands alone: it carries the whole ledger.
      const snapshot = ch.force || ch.urgent || this.#hooks.wantsSnapshot(rt, now) ? handOver({ ...rt.toDoc(ch.force || ch.urgent ? 'all' : { inlineMax: this.#hooks.ledgerInlineMax?.() ?? Number.POSITIVE_INFINITY }), v: seq }) : null
      // The first snapshot that leaves the ledger out since this runtime was made: every entry goes
      // to the rows (those loaded, or counted before, may not be there), before the snapshot.
      const ledger = snapshot?.batches_in_rows === true && !rt.ledgerRowsOffered
      // Node states are never changed in place (transitions make new ones): the entry is handed
      // over, so a store in the same process may keep it (node states included) without a copy.
      handOver(entry)
      built.push({ rt, entry, commands: ch.commands, fnRuns: ch.fnRuns, force: ch.force, urgent: ch.urgent, snapshot, rows: ledger ? ledgerRows(rt) : ch.metrics, ledgerRows: ledger })
    }
    this.#dirty.clear()
    if (built.length === 0) return
    this.flushes++
    this.entries += built.length
    const ok = await this.#append(built.map((b) => b.entry))
    if (this.#abandoned !== null) return
    const durable: Built[] = []
    built.forEach((b, i) => {
      if (ok[i]) {
        b.rt.v = b.entry.seq
        if (b.entry.sent_through !== undefined) b.rt.sentRecorded = Math.max(b.rt.sentRecorded, b.entry.sent_through)
        durable.push(b)
        // Rows of durable entries only: a row is never ahead of the journal (recovery reads a
        // ledger left out of the snapshot from the rows, docs/write-path.md).
        for (const r of b.rows) rows.push(r)
        if (b.ledgerRows) b.rt.ledgerRowsOffered = true
      } else {
        this.#log.warn('coordinator.fenced', { task_id: b.rt.id, seq: b.entry.seq })
        this.#hooks.fenced(b.rt)
      }
    })
    const forced = durable.filter((b) => b.force && b.snapshot !== null)
    const refused = forced.length > 0 ? await this.#forcedSnapshots(forced, now) : null
    if (this.#abandoned !== null) return
    if (rows.length > 0) this.#hooks.rows(rows)
    for (const b of durable) {
      this.#hooks.observed?.(b.entry)
      const error = refused?.get(b)
      if (error === undefined) {
        this.#hooks.durable(b.rt, b.commands, b.fnRuns, b.force ? null : b.snapshot, b.urgent)
        continue
      }
      // Its other commands go out; its STARTs (which need the refused snapshot) fail their attempts.
      this.#hooks.durable(b.rt, b.commands.filter((c) => c.kind !== 'TASK_START'), b.fnRuns, null, b.urgent)
      for (const c of b.commands) if (c.kind === 'TASK_START') this.#hooks.startRefused(b.rt, c, error)
    }
  }

  /**
   * Writes the snapshots that commands wait for; retryable errors are retried (the flush waits), a
   * refusal (a document over the server's limit) is returned by entry, so that one task cannot
   * hold every flush for good.
   */
  async #forcedSnapshots(forced: Built[], now: number): Promise<Map<Built, string>> {
    const refused = new Map<Built, string>()
    await Promise.all(
      forced.map(async (b) => {
        try {
          await this.#retry('writeSnapshot', () => this.#store.writeSnapshot(b.snapshot as VersionedTask, now), false)
          b.rt.snapshotStored(b.entry.seq)
        } catch (err) {
          if (isFlowkitError(err) && err.retryable) throw err
          const error = `the task document could not be written with its variables (a START without them needs it): ${errorMessage(err)}`
          this.#log.error('coordinator.snapshot_refused', { task_id: b.rt.id, v: b.entry.seq, error: errorMessage(err) })
          refused.set(b, error)
        }
      }),
    )
    return refused
  }

  /** Appends the entries; a non-retryable failure is isolated to the entries that cause it. */
  async #append(entries: JournalEntry[]): Promise<boolean[]> {
    try {
      return await this.#retry('appendJournal', () => this.#store.appendJournal(entries), false)
    } catch (err) {
      if (entries.length === 1) {
        this.#log.error('coordinator.write_refused', { task_id: entries[0]?.task_id, error: errorMessage(err) })
        return [false]
      }
      const out: boolean[] = []
      for (const e of entries) out.push(...(await this.#append([e])))
      return out
    }
  }

  /** Runs a store call until it succeeds; retryable errors wait with backoff, others throw (or retry when `always`). */
  async #retry<T>(op: string, fn: () => Promise<T>, always = true): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      this.callSince = this.#clock.now()
      try {
        const out = await fn()
        this.failingSince = null
        return out
      } catch (err) {
        this.failingSince ??= this.#clock.now()
        const retryable = isFlowkitError(err) && err.retryable
        if (!retryable && !always) throw err
        if (this.#stopped && attempt > 3) throw err
        const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** (attempt - 1))
        this.#log.warn('coordinator.store_retry', { op, attempt, delay_ms: delay, error: errorMessage(err) })
        await new Promise((r) => setTimeout(r, delay))
      } finally {
        this.callSince = null
      }
    }
  }
}
