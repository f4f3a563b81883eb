/**
 * Listings of artifacts merged while one is in flight (FerretDB only). FerretDB 1.24 on SQLite
 * evaluates a filter on every stored document (about 48 µs per 2 KB document), so each pulling
 * consumer's poll (`listArtifacts` by task and node) costs a pass over the whole collection, and
 * many streams at once saturated the server. Here the first listing goes out at once; those
 * asked for while it runs wait for it and then go out together as one query (the `$or` of their
 * filters), one pass for all of them. On MongoDB (indexed) listings are not merged.
 */
import type { ArtifactDoc, ArtifactQuery } from '../../ports/store.ts'
import { type ArtifactListing, listArtifactsMerged } from './artifacts.ts'
import type { Collections } from './schema.ts'

/** Most listings merged into one query. */
const MERGE_MAX = 64

interface Waiting extends ArtifactListing {
  resolve: (docs: ArtifactDoc[]) => void
  reject: (err: unknown) => void
}

export class ArtifactListings {
  readonly #run: (fn: (c: Collections) => Promise<ArtifactDoc[][]>) => Promise<ArtifactDoc[][]>
  #waiting: Waiting[] = []
  #busy = false

  /** `run`: runs a store operation (error mapping, the connection). */
  constructor(run: (fn: (c: Collections) => Promise<ArtifactDoc[][]>) => Promise<ArtifactDoc[][]>) {
    this.#run = run
  }

  list(taskId: string, query: ArtifactQuery): Promise<ArtifactDoc[]> {
    return new Promise<ArtifactDoc[]>((resolve, reject) => {
      this.#waiting.push({ taskId, query, resolve, reject })
      if (!this.#busy) void this.#drain()
    })
  }

  async #drain(): Promise<void> {
    this.#busy = true
    try {
      while (this.#waiting.length > 0) {
        const batch = this.#waiting.splice(0, MERGE_MAX)
        try {
          const lists = await this.#run((c) => listArtifactsMerged(c, batch))
          for (let i = 0; i < batch.length; i++) batch[i]?.resolve(lists[i] ?? [])
        } catch (err) {
          for (const w of batch) w.reject(err)
        }
      }
    } finally {
      this.#busy = false
    }
  }
}
