/**
 * Reads merged while one is in flight (FerretDB only). FerretDB 1.24 on SQLite evaluates a filter
 * on every stored document (about 48 µs per 2 KB document), so each pulling consumer's poll
 * (`listArtifacts` by task and node) cost a pass over the whole collection, and many streams at
 * once saturated the server; so did workers answering a restarted coordinator's TASK_DISCOVERs
 * (`getArtifact`, whose fallback for artifacts a Python worker wrote is such a filter). Here the
 * first request goes out at once; those asked for while it runs wait for it and then go out
 * together as one query (artifacts.ts: a superset filter, each request's own filter applied in
 * memory), one pass for all of them. On MongoDB (indexed) reads are not merged.
 */

/** Most requests merged into one query. */
const MERGE_MAX = 64

interface Waiting<Q, R> {
  request: Q
  resolve: (result: R) => void
  reject: (err: unknown) => void
}

export class Merger<Q, R> {
  readonly #send: (batch: Q[]) => Promise<R[]>
  #waiting: Waiting<Q, R>[] = []
  #busy = false

  /** `send`: answers a batch of requests, one result per request, in their order. */
  constructor(send: (batch: Q[]) => Promise<R[]>) {
    this.#send = send
  }

  ask(request: Q): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.#waiting.push({ request, resolve, reject })
      if (!this.#busy) void this.#drain()
    })
  }

  async #drain(): Promise<void> {
    this.#busy = true
    try {
      while (this.#waiting.length > 0) {
        const batch = this.#waiting.splice(0, MERGE_MAX)
        try {
          const results = await this.#send(batch.map((w) => w.request))
          for (let i = 0; i < batch.length; i++) batch[i]?.resolve(results[i] as R)
        } catch (err) {
          for (const w of batch) w.reject(err)
        }
      }
    } finally {
      this.#busy = false
    }
  }
}
