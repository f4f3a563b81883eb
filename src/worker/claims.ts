/**
 * Group commit of the workers' attempt claims: the claims asked for while one batch is in flight
 * go to the store together (`claimAttempts`, one insert), so the starts a worker (or all workers
 * of a process) takes at once share a round trip. Each caller waits for its own answer.
 */
import type { AttemptClaim, Store } from '../ports/store.ts'

interface Pending {
  claim: AttemptClaim
  now: number
  resolve: (ok: boolean) => void
  reject: (err: unknown) => void
}

const MAX_BATCH = 200
const batchers = new WeakMap<Store, ClaimBatcher>()

export class ClaimBatcher {
  readonly #store: Store
  #queue: Pending[] = []
  #busy = false

  constructor(store: Store) {
    this.#store = store
  }

  /** One batcher per store (all workers of a process on one store share it). */
  static of(store: Store): ClaimBatcher {
    let b = batchers.get(store)
    if (b === undefined) {
      b = new ClaimBatcher(store)
      batchers.set(store, b)
    }
    return b
  }

  claim(claim: AttemptClaim, now: number): Promise<boolean> {
    return new Promise<boolean>((resolve, reject) => {
      this.#queue.push({ claim, now, resolve, reject })
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
        const res = batch.length === 1 ? [await this.#store.claimAttempt(batch[0]!.claim, now)] : await this.#store.claimAttempts(batch.map((p) => p.claim), now)
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
