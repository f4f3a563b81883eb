/**
 * Artifacts and stream claims of the MemoryStore (see the Store port): one artifact per (task,
 * node, batch_uid), fenced by attempt epoch, listed in MongoDB's order; one stream claim per
 * (task, consumer, upstream, batch, consumer epoch).
 */
import type { ArtifactDoc, ArtifactQuery, ArtifactWrite, StreamClaim } from '../../ports/store.ts'
import { compareBatchUid } from '../../ports/store-rules.ts'
import { canonicalJson } from '../../util/ids.ts'

interface ArtifactEntry {
  doc: ArtifactDoc
  /** Insertion sequence: the tiebreak a MongoDB adapter gets from `_id`. Kept on update. */
  seq: number
}

/** A JSON round trip: what a document store does with JSON data (and a deep copy). */
export const jsonCopy = <T>(v: T): T => (v === undefined ? v : (JSON.parse(JSON.stringify(v)) as T))

export class MemoryArtifacts {
  readonly #artifacts = new Map<string, ArtifactEntry>()
  /** Task id → keys of its artifacts (listing without a scan of every task's). */
  readonly #byTask = new Map<string, Set<string>>()
  readonly #streamClaims = new Map<string, StreamClaim & { claimed_at_ms: number }>()
  #seq = 0

  upsert(artifact: ArtifactWrite, now: number): boolean {
    const batchUid = artifact.batch_uid ?? null
    const key = canonicalJson([artifact.task_id, artifact.node_id, batchUid])
    const existing = this.#artifacts.get(key)
    if (existing && existing.doc.attempt_epoch > artifact.attempt_epoch) return false
    const doc: ArtifactDoc = {
      task_id: artifact.task_id,
      node_id: artifact.node_id,
      batch_uid: batchUid,
      status: artifact.status,
      meta: jsonCopy(artifact.meta),
      attempt_epoch: artifact.attempt_epoch,
      worker_id: artifact.worker_id ?? null,
      created_at: existing ? existing.doc.created_at : now,
      updated_at: now,
    }
    this.#artifacts.set(key, { doc, seq: existing ? existing.seq : ++this.#seq })
    let keys = this.#byTask.get(artifact.task_id)
    if (keys === undefined) {
      keys = new Set()
      this.#byTask.set(artifact.task_id, keys)
    }
    keys.add(key)
    return true
  }

  list(taskId: string, query: ArtifactQuery): ArtifactDoc[] {
    const keys = this.#byTask.get(taskId) ?? new Set<string>()
    const rows = [...keys]
      .map((k) => this.#artifacts.get(k) as ArtifactEntry)
      .filter(
        (e) =>
          (query.nodeId === undefined || e.doc.node_id === query.nodeId) &&
          (query.status === undefined || e.doc.status === query.status) &&
          (query.createdAfter === undefined || e.doc.created_at >= query.createdAfter),
      )
    rows.sort((a, b) => a.doc.created_at - b.doc.created_at || compareBatchUid(a.doc.batch_uid, b.doc.batch_uid) || a.seq - b.seq)
    return rows.map((e) => jsonCopy(e.doc))
  }

  get(taskId: string, nodeId: string, batchUid: string | null): ArtifactDoc | null {
    const e = this.#artifacts.get(canonicalJson([taskId, nodeId, batchUid ?? null]))
    return e ? jsonCopy(e.doc) : null
  }

  claimStream(claim: StreamClaim, now: number): boolean {
    const key = canonicalJson([claim.task_id, claim.consumer_node, claim.from_node, claim.batch_uid, claim.consumer_epoch])
    if (this.#streamClaims.has(key)) return false
    this.#streamClaims.set(key, {
      task_id: claim.task_id,
      consumer_node: claim.consumer_node,
      from_node: claim.from_node,
      batch_uid: claim.batch_uid,
      consumer_epoch: claim.consumer_epoch,
      claimed_at_ms: now,
    })
    return true
  }
}
