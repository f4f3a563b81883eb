/**
 * The worker's run state (`saveWorkerState`: the runs it holds, read back by the next process with
 * the same worker id). A run starting or ending never waits for this write: `request()` persists in
 * the background, at most one write in flight; changes made meanwhile are covered by the next write,
 * which always takes a fresh snapshot. A failed write is logged and retried on the next change.
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
}

export class WorkerStateSaver {
  readonly #options: WorkerStateSaverOptions
  /** A change not yet covered by a write that started after it. */
  #dirty = false
  #running = false
  #done: Promise<void> = Promise.resolve()

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
    while (this.#running) await this.#done
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
    while (this.#running) await this.#done
  }

  #after(): void {
    this.#running = false
    if (this.#dirty) this.request()
  }

  async #loop(): Promise<void> {
    try {
      while (this.#dirty && this.#options.enabled()) {
        this.#dirty = false
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
