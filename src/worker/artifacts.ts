/**
 * Group commit of the worker's artifact writes: writes asked for while one batch is in flight go
 * to the store together (`upsertArtifacts`, one insert for new keys), so concurrent runs share a
 * round trip. Each caller waits for the write that carries its artifact: a partial artifact is
 * still durable before its BATCH_OK is sent.
 *
 * The writes of one run (`RunWrites`) become durable in the order they were asked for: the queue is
 * FIFO, one store call is in flight at a time, the store applies a call's list in order, and once
 * a call carrying a write of the run has failed, the run's later writes are refused rather than
 * sent. So a run may ask for its complete artifact without waiting for its last partial ones: the
 * complete artifact is never durable without them.
 */
import { FlowkitError } from '../errors.ts'
import type { ArtifactWrite, Store } from '../ports/store.ts'

/** The writes of one run (see above): `failed` is why one of them failed, once one has. */
export interface RunWrites {
  failed: { err: unknown } | null
}

interface Pending {
  artifact: ArtifactWrite
  now: number
  run: RunWrites | undefined
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

  /** Writes `artifact` (in order with the earlier writes of `run`, if given). */
  write(artifact: ArtifactWrite, now: number, run?: RunWrites): Promise<boolean> {
    return new Promise<boolean>((resolve, reject) => {
      this.#queue.push({ artifact, now, run, resolve, reject })
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
      const batch: Pending[] = []
      for (const p of this.#queue.splice(0, MAX_BATCH)) {
        // A run whose earlier write failed: its later ones are not made (they would be durable
        // without it).
        if (p.run?.failed != null) p.reject(p.run.failed.err)
        else batch.push(p)
      }
      if (batch.length === 0) continue
      try {
        let now = 0
        for (const p of batch) if (p.now > now) now = p.now
        const res = await this.#withRetry(() => this.#store.upsertArtifacts(batch.map((p) => p.artifact), now))
        batch.forEach((p, i) => {
          p.resolve(res[i] ?? false)
        })
      } catch (err) {
        for (const p of batch) {
          if (p.run !== undefined) p.run.failed ??= { err }
          p.reject(err)
        }
      }
    }
    this.#busy = false
  }
}
