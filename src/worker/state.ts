/**
 * The worker's run state (`saveWorkerState`: the runs it holds, read back by the next process with
 * the same worker id). A run starting or ending never waits for this write: `request()` persists in
 * the background, at most one write in flight; changes made meanwhile are covered by the next write,
 * which always takes a fresh snapshot. A change after a quiet time is written at once; during a
 * burst, a background write starts at least `minIntervalMs` after the previous one (a busy worker
 * changes its runs hundreds of times a second; on a store where an update costs milliseconds, one
 * write per change would take its whole write capacity). A state up to that interval old only
 * delays the recovery of a run started just before a crash: its lease expires instead of the next
 * process reporting it at once. A failed write is logged and retried on the next change.
 */
import { errorMessage } from '../errors.ts'
import type { Logger } from '../log.ts'
import type { Store, WorkerRun, WorkerStateDoc } from '../ports/store.ts'
import type { WorkerCore } from './core.ts'

export interface WorkerStateSaverOptions {
  store: Pick<Store, 'saveWorkerState'>
  log: Logger
  /** The state to write, taken when a write starts. */
  snapshot: () => WorkerStateDoc
  /** False once the worker is killed: a crashed process persists nothing more. */
  enabled: () => boolean
  /** Least time between the starts of two background writes (default 0). */
  minIntervalMs?: number
}

export class WorkerStateSaver {
  readonly #options: WorkerStateSaverOptions
  /** A change not yet covered by a write that started after it. */
  #dirty = false
  #running = false
  #done: Promise<void> = Promise.resolve()
  /** performance.now() when the last write started. */
  #lastStart = Number.NEGATIVE_INFINITY
  /** Ends the wait before the next background write (saveNow, flush). */
  #hurry: (() => void) | null = null

  constructor(options: WorkerStateSaverOptions) {
    this.#options = options
  }

  /** Persists the current state in the background (coalesced). Never throws. */
  request(): void {
    if (!this.#options.enabled()) return
    this.#dirty = true
    if (this.#running) return
    this.#running = true
    this.#done = this.#loop()
  }

  /** Writes the current state now, after any write in flight, and throws if the write fails. */
  async saveNow(): Promise<void> {
    while (this.#running) {
      this.#hurry?.()
      await this.#done
    }
    this.#running = true
    this.#dirty = false
    const write = this.#options.store.saveWorkerState(this.#options.snapshot())
    this.#done = write.then(
      () => this.#after(),
      () => this.#after(),
    )
    await write
  }

  /** Resolves once no write is in flight and no change is left unwritten (failed writes included). */
  async flush(): Promise<void> {
    while (this.#running) {
      this.#hurry?.()
      await this.#done
    }
  }

  #after(): void {
    this.#running = false
    if (this.#dirty) this.request()
  }

  async #loop(): Promise<void> {
    try {
      while (this.#dirty && this.#options.enabled()) {
        const wait = this.#lastStart + (this.#options.minIntervalMs ?? 0) - performance.now()
        if (wait > 0) await this.#pause(wait)
        if (!this.#options.enabled()) break
        this.#dirty = false
        this.#lastStart = performance.now()
        try {
          await this.#options.store.saveWorkerState(this.#options.snapshot())
        } catch (err) {
          this.#options.log.warn('worker.state_save_failed', { error: errorMessage(err) })
        }
      }
    } finally {
      this.#running = false
    }
  }

  /** Waits `ms`, or less when hurried. */
  #pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer)
        this.#hurry = null
        resolve()
      }
      const timer = setTimeout(done, ms)
      this.#hurry = done
    })
  }
}

/** The persisted form of the runs a worker holds now. */
export function workerStateOf(core: Pick<WorkerCore, 'workerId' | 'runs' | 'clock'>): WorkerStateDoc {
  const active_runs: WorkerRun[] = [...core.runs.values()].map((r) => ({
    task_id: r.info.taskId,
    node_id: r.info.nodeId,
    step_type: r.info.stepType,
    attempt_epoch: r.info.attemptEpoch,
    lease_id: r.info.leaseId,
    started_at_ms: r.started,
  }))
  return { worker_id: core.workerId, active_runs, updated_at_ms: core.clock.now() }
}
