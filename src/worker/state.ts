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
import { supersededBy } from '../ports/store-rules.ts'
import { messageKey } from '../protocol/messages.ts'

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
  /** A newer process with this worker id owns the document: this one writes no more. */
  #stale = false

  constructor(options: WorkerStateSaverOptions) {
    this.#options = options
  }

  /** Persists the current state in the background (coalesced). Never throws. */
  request(): void {
    if (!this.#options.enabled() || this.#stale) return
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
    const write = this.#stale ? Promise.resolve(false) : this.#options.store.saveWorkerState(this.#options.snapshot())
    this.#done = write.then(
      (ok) => {
        this.#written(ok)
        this.#after()
      },
      () => this.#after(),
    )
    await write
  }

  /** Whether a newer process with this worker id wrote its state since (this one writes no more). */
  get superseded(): boolean {
    return this.#stale
  }

  /** A write the store refused (a newer process with this worker id wrote its state, Store.saveWorkerState): said once, and nothing more is written. */
  #written(ok: boolean): void {
    if (ok || this.#stale) return
    this.#stale = true
    this.#dirty = false
    this.#options.log.error('worker.superseded', {
      instance: this.#options.snapshot().instance,
      hint: 'a process started later with this worker id saved its run state: this one is stale (paused, then resumed after its successor started) or another live worker has the same id (give each worker its own workerId); it no longer saves its run state',
    })
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
      while (this.#dirty && this.#options.enabled() && !this.#stale) {
        const wait = this.#lastStart + (this.#options.minIntervalMs ?? 0) - performance.now()
        if (wait > 0) await this.#pause(wait)
        if (!this.#options.enabled()) break
        this.#dirty = false
        this.#lastStart = performance.now()
        try {
          this.#written(await this.#options.store.saveWorkerState(this.#options.snapshot()))
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
export function workerStateOf(core: Pick<WorkerCore, 'workerId' | 'instanceId' | 'runs' | 'clock'>): WorkerStateDoc {
  const active_runs: WorkerRun[] = [...core.runs.values()].map((r) => ({
    task_id: r.info.taskId,
    node_id: r.info.nodeId,
    step_type: r.info.stepType,
    attempt_epoch: r.info.attemptEpoch,
    lease_id: r.info.leaseId,
    started_at_ms: r.started,
  }))
  return { worker_id: core.workerId, active_runs, updated_at_ms: core.clock.now(), instance: core.instanceId }
}

/**
 * The runs the previous process with this worker id held when it stopped (its saved state). The
 * process that held them is gone; the coordinator re-dispatches them at a new epoch when their
 * leases expire, and nothing is restarted here at the old epoch. A state written by a process that
 * started after this one (another live worker with this id) is not a dead predecessor's: none.
 */
export async function predecessorRuns(core: Pick<WorkerCore, 'workerId' | 'instanceId' | 'store' | 'log'>): Promise<WorkerRun[]> {
  const stored = await core.store.getWorkerState(core.workerId)
  if (stored === null || supersededBy(stored.instance, core.instanceId)) return []
  if (stored.active_runs.length > 0) core.log.warn('worker.state_restored', { runs: stored.active_runs.map((r) => messageKey(r.task_id, r.node_id)) })
  return stored.active_runs
}
