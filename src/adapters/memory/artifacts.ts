/**
 * Artifacts and stream claims of the MemoryStore (see the Store port): one artifact per (task,
 * node, batch_uid), fenced by attempt epoch, listed in the MongoDB store's order; one stream claim per
 * (task, consumer, upstream, batch, consumer epoch).
 */
import type { ArtifactDoc, ArtifactQuery, ArtifactWrite, StreamClaim } from '../../ports/store.ts'
import { completeLast, isHandedOver } from '../../ports/store-rules.ts'
import { canonicalJson } from '../../util/ids.ts'

interface ArtifactEntry {
  doc: ArtifactDoc
  /** Insertion sequence: the tiebreak a MongoDB adapter gets from `_id`. Kept on update. */
  seq: number
}

/** A JSON round trip: what a document store does with JSON data (and a deep copy). */
export const jsonCopy = <T>(v: T): T => (v === undefined ? v : (JSON.parse(JSON.stringify(v)) as T))

/**
 * An artifact's key within its task: the node id after its length, then a NUL and the batch uid
 * for a partial (nothing for the complete artifact): no two (node, batch) pairs share a key.
 */
const artifactKey = (nodeId: string, batchUid: string | null): string => (batchUid === null ? `${nodeId.length}:${nodeId}` : `${nodeId.length}:${nodeId}\u0000${batchUid}`)

export class MemoryArtifacts {
  /** Task id → its artifacts by artifactKey. */
  readonly #byTask = new Map<string, Map<string, ArtifactEntry>>()
  readonly #streamClaims = new Map<string, StreamClaim & { claimed_at_ms: number }>()
  #seq = 0

  upsert(artifact: ArtifactWrite, now: number): boolean {
    const batchUid = artifact.batch_uid ?? null
    let arts = this.#byTask.get(artifact.task_id)
    const key = artifactKey(artifact.node_id, batchUid)
    const existing = arts?.get(key)
    if (existing && existing.doc.attempt_epoch > artifact.attempt_epoch) return false
    const doc: ArtifactDoc = {
      task_id: artifact.task_id,
      node_id: artifact.node_id,
      batch_uid: batchUid,
      status: artifact.status,
      // A meta its writer handed over (a worker's own) is kept as is; any other is copied in.
      meta: typeof artifact.meta === 'object' && artifact.meta !== null && isHandedOver(artifact.meta) ? artifact.meta : jsonCopy(artifact.meta),
      attempt_epoch: artifact.attempt_epoch,
      worker_id: artifact.worker_id ?? null,
      ...(artifact.final_metrics === undefined ? {} : { final_metrics: jsonCopy(artifact.final_metrics) }),
      created_at: existing ? existing.doc.created_at : now,
      updated_at: now,
    }
    if (arts === undefined) {
      arts = new Map()
      this.#byTask.set(artifact.task_id, arts)
    }
    arts.set(key, { doc, seq: existing ? existing.seq : ++this.#seq })
    return true
  }

  list(taskId: string, query: ArtifactQuery): ArtifactDoc[] {
    const rows = [...(this.#byTask.get(taskId)?.values() ?? [])].filter(
      (e) =>
        (query.nodeId === undefined || e.doc.node_id === query.nodeId) &&
        (query.status === undefined || e.doc.status === query.status) &&
        (query.createdAfter === undefined || e.doc.created_at >= query.createdAfter),
    )
    rows.sort((a, b) => a.doc.created_at - b.doc.created_at || completeLast(a.doc.batch_uid, b.doc.batch_uid) || a.seq - b.seq)
    return rows.map((e) => jsonCopy(e.doc))
  }

  get(taskId: string, nodeId: string, batchUid: string | null): ArtifactDoc | null {
    const e = this.#byTask.get(taskId)?.get(artifactKey(nodeId, batchUid ?? null))
    return e ? jsonCopy(e.doc) : null
  }

  /** Deletes the artifacts and stream claims of these tasks. */
  drop(taskIds: ReadonlySet<string>): void {
    for (const id of taskIds) this.#byTask.delete(id)
    for (const [k, c] of this.#streamClaims) if (taskIds.has(c.task_id)) this.#streamClaims.delete(k)
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
