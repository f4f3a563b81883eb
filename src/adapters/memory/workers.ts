/**
 * The worker registry and worker run state of the MemoryStore (see the Store port): one document
 * per worker id each, the last write kept.
 */
import type { WorkerInfo, WorkerStateDoc } from '../../ports/store.ts'
import { compareCodePoints, supersededBy } from '../../ports/store-rules.ts'
import { clone, ingest } from './copy.ts'

export class MemoryWorkers {
  readonly #workers = new Map<string, WorkerInfo>()
  readonly #state = new Map<string, string>()
  /** The instance that wrote each worker's state, when it said. */
  readonly #instances = new Map<string, string>()

  upsert(info: WorkerInfo): void {
    this.#workers.set(info.worker_id, ingest(info))
  }

  /** Ordered by worker_id. */
  list(): WorkerInfo[] {
    return [...this.#workers.values()].sort((a, b) => compareCodePoints(a.worker_id, b.worker_id)).map(clone)
  }

  /** False, writing nothing, when the stored state is a newer instance's (Store.saveWorkerState). */
  saveState(state: WorkerStateDoc): boolean {
    if (supersededBy(this.#instances.get(state.worker_id), state.instance)) return false
    // Kept as JSON text: written on every change of a worker's runs, read only when it restarts.
    this.#state.set(state.worker_id, JSON.stringify(state))
    if (state.instance === undefined) this.#instances.delete(state.worker_id)
    else this.#instances.set(state.worker_id, state.instance)
    return true
  }

  getState(workerId: string): WorkerStateDoc | null {
    const s = this.#state.get(workerId)
    return s === undefined ? null : (JSON.parse(s) as WorkerStateDoc)
  }

  /** Deletes the workers last heard before `cutoff`, with their run state; returns how many. */
  purge(cutoff: number): number {
    let n = 0
    for (const [id, w] of this.#workers) {
      if (!(w.last_seen_ms < cutoff)) continue
      this.#workers.delete(id)
      this.#state.delete(id)
      this.#instances.delete(id)
      n++
    }
    return n
  }
}
