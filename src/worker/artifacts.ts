/**
 * Group commit of the worker's artifact writes: writes asked for while one batch is in flight go
 * to the store together (`upsertArtifacts`, one insert for new keys), so concurrent runs share a
 * round trip. Each caller waits for the write that carries its artifact: a partial artifact is
 * still durable before its BATCH_OK is sent.
 */
import { FlowkitError } from '../errors.ts'
import type { ArtifactWrite, Store } from '../ports/store.ts'

interface Pending {
  artifact: ArtifactWrite
  now: number
  resolve: (ok: boolean) => void
  reject: (err: unknown) => void
}

const MAX_BATCH = 200
/** How long artifact writes are retried through a store outage (real time). */
const RETRY_FOR_MS = 30_000
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

  /**
   * A store that is briefly unreachable (restarting, failing over) does not fail the runs whose
   * artifacts wait: retryable errors are retried with backoff for up to RETRY_FOR_MS.
   */
  async #withRetry<T>(fn: () => Promise<T>): Promise<T> {
    const until = performance.now() + RETRY_FOR_MS
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn()
      } catch (err) {
        if (!(err instanceof FlowkitError && err.retryable) || performance.now() >= until) throw err
        await new Promise((r) => setTimeout(r, Math.min(2000, 50 * 2 ** attempt)))
      }
    }
  }

  async #run(): Promise<void> {
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0, MAX_BATCH)
      try {
        const now = Math.max(...batch.map((p) => p.now))
        const res = await this.#withRetry(() => this.#store.upsertArtifacts(batch.map((p) => p.artifact), now))
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
