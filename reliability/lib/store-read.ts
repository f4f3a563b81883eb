/**
 * Bulk reads of the scenario's database for the checks. `Store.listArtifacts` reads one task at a
 * time, and FerretDB 1.x (SQLite) scans the whole collection for each such query: for hundreds of
 * tasks the checks would take minutes. The artifacts are read here in one pass with the plain
 * `mongodb` driver (an independent reader, as the observer is for the bus), from the collection
 * MongoStore names `artifacts` (MONGO_COLLECTIONS), and decoded to `ArtifactDoc` as
 * `Store.listArtifacts` returns them (ordered by created_at, then batch uid).
 */
import type { ArtifactDoc } from 'flowkit'
import { MONGO_COLLECTIONS } from 'flowkit/mongo'
import { type Document, MongoClient } from 'mongodb'

function ms(v: unknown): number {
  if (typeof v === 'number') return v
  if (v instanceof Date) return v.getTime()
  return 0
}

function decode(doc: Document): ArtifactDoc {
  const meta = doc['meta']
  const epoch = doc['attempt_epoch']
  const uid = doc['batch_uid']
  return {
    task_id: String(doc['task_id']),
    node_id: String(doc['node_id']),
    batch_uid: uid === undefined || uid === null ? null : String(uid),
    status: doc['status'] as ArtifactDoc['status'],
    meta: meta !== null && typeof meta === 'object' && !Array.isArray(meta) ? (meta as Record<string, unknown>) : {},
    attempt_epoch: typeof epoch === 'number' ? epoch : 0,
    worker_id: typeof doc['worker_id'] === 'string' ? doc['worker_id'] : null,
    created_at: ms(doc['created_at']),
    updated_at: ms(doc['updated_at']),
  }
}

/** Every artifact of `taskIds` (all attempts), by task; one read of the collection. */
export async function readArtifacts(url: string, dbName: string, taskIds: readonly string[]): Promise<Map<string, ArtifactDoc[]>> {
  const wanted = new Set(taskIds)
  const out = new Map<string, ArtifactDoc[]>(taskIds.map((id) => [id, []]))
  const client = new MongoClient(url, { serverSelectionTimeoutMS: 5000, socketTimeoutMS: 120_000 })
  try {
    await client.connect()
    const docs = await client.db(dbName).collection(MONGO_COLLECTIONS.artifacts).find({}).toArray()
    for (const doc of docs) {
      const a = decode(doc)
      if (wanted.has(a.task_id)) out.get(a.task_id)?.push(a)
    }
  } finally {
    await client.close()
  }
  for (const list of out.values()) list.sort((a, b) => a.created_at - b.created_at || String(a.batch_uid ?? '\uffff').localeCompare(String(b.batch_uid ?? '\uffff')))
  return out
}
