/**
 * Background snapshot writer. A task's document in the store is rewritten from a state that is
 * already durable in the journal (taken at flush time, at that entry's version), off the hot path:
 * terminal tasks first, then periodic ones, a few at a time, the newest state per task only. On a
 * server where an update costs far more than an insert this keeps updates out of the event path;
 * readers of the store still see the current state (snapshot + journal).
 */
import { errorMessage, isFlowkitError } from '../errors.ts'
import type { Logger } from '../log.ts'
import type { VersionedTask } from '../model/journal.ts'
import type { Clock } from '../ports/clock.ts'
import type { Store } from '../ports/store.ts'

const TERMINAL = new Set(['finished', 'failed', 'cancelled'])

export class SnapshotWriter {
  readonly #store: Store
  readonly #clock: Clock
  readonly #log: Logger
  readonly #written: (taskId: string, v: number) => void
  readonly #pending = new Map<string, VersionedTask>()
  readonly #busy = new Set<string>()
  readonly #concurrency: number
  #active = 0
  #idle: (() => void)[] = []
  writes = 0

  constructor(store: Store, clock: Clock, log: Logger, written: (taskId: string, v: number) => void, concurrency = 2) {
    this.#store = store
    this.#clock = clock
    this.#log = log
    this.#written = written
    this.#concurrency = concurrency
  }

  get backlog(): number {
    return this.#pending.size
  }

  offer(doc: VersionedTask): void {
    const cur = this.#pending.get(doc.id)
    if (cur !== undefined && cur.v >= doc.v) return
    this.#pending.set(doc.id, doc)
    this.#pump()
  }

  #pick(): VersionedTask | null {
    let fallback: VersionedTask | null = null
    for (const [id, doc] of this.#pending) {
      if (this.#busy.has(id)) continue
      if (TERMINAL.has(doc.status)) return doc
      fallback ??= doc
    }
    return fallback
  }

  #pump(): void {
    while (this.#active < this.#concurrency) {
      const doc = this.#pick()
      if (doc === null) break
      this.#pending.delete(doc.id)
      this.#busy.add(doc.id)
      this.#active++
      void this.#write(doc).finally(() => {
        this.#active--
        this.#busy.delete(doc.id)
        if (this.#pending.size > 0) this.#pump()
        else if (this.#active === 0) for (const f of this.#idle.splice(0)) f()
      })
    }
  }

  async #write(doc: VersionedTask): Promise<void> {
    for (let attempt = 1; attempt <= 8; attempt++) {
      try {
        await this.#store.writeSnapshot(doc, this.#clock.now())
        this.writes++
        this.#written(doc.id, doc.v)
        return
      } catch (err) {
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
    if (this.#pending.size === 0 && this.#active === 0) return Promise.resolve()
    return new Promise((r) => this.#idle.push(r))
  }
}
