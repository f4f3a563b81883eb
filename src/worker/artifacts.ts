/**
 * Group commit of the worker's artifact writes: writes asked for while one batch is in flight go
 * to the store together (`upsertArtifacts`, one insert for new keys), so concurrent runs share a
 * round trip. Each caller waits for the write that carries its artifact: a partial artifact is
 * still durable before its BATCH_OK is sent.
 */
import type { ArtifactWrite, Store } from '../ports/store.ts'
import { retryingStore } from './store-retry.ts'

interface Pending {
  artifact: ArtifactWrite
  now: number
  resolve: (ok: boolean) => void
  reject: (err: unknown) => void
}

const MAX_BATCH = 200
const batchers = new WeakMap<Store, ArtifactBatcher>()

export class ArtifactBatcher {
  readonly #store: Store
  #queue: Pending[] = []
  #busy = false

  constructor(store: Store) {
    this.#store = store
  }

  /** One batcher per store (all workers of a process on one store share it). */
  static of(store: Store): ArtifactBatcher {
    let b = batchers.get(store)
    if (b === undefined) {
      b = new ArtifactBatcher(store)
      batchers.set(store, b)
    }
    return b
  }

  write(artifact: ArtifactWrite, now: number): Promise<boolean> {
    return new Promise<boolean>((resolve, reject) => {
      this.#queue.push({ artifact, now, resolve, reject })
      if (!this.#busy) {
        this.#busy = true
        setImmediate(() => void this.#run())
      }
    })
  }

  async #run(): Promise<void> {
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0, MAX_BATCH)
      try {
        const now = Math.max(...batch.map((p) => p.now))
        // A store briefly unreachable does not fail the runs whose artifacts wait (store-retry.ts).
        const { value: res } = await retryingStore(() => this.#store.upsertArtifacts(batch.map((p) => p.artifact), now))
        batch.forEach((p, i) => {
          p.resolve(res[i] ?? false)
        })
      } catch (err) {
        for (const p of batch) p.reject(err)
      }
    }
    this.#busy = false
  }
}
