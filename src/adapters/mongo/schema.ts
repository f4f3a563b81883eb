/**
 * The MongoStore's collections and indexes, and the small write helpers every part of it shares
 * (limits, number sanitising, unique inserts). Collection names get the store's prefix.
 */
import { type Collection, type Db, type Document, MongoBulkWriteError, type ObjectId, type WriteError } from 'mongodb'
import type { Logger } from '../../log.ts'
import { sanitize } from './codec.ts'
import { isDuplicateKeyError } from './errors.ts'

/** Base collection names (before the prefix). */
export const MONGO_COLLECTIONS = {
  tasks: 'tasks',
  journal: 'journal',
  artifacts: 'artifacts',
  metrics: 'metrics_raw',
  streamProgress: 'stream_progress',
  attemptClaims: 'attempt_claims',
  checkpoints: 'checkpoints',
  outbox: 'outbox',
  outboxSent: 'outbox_sent',
  workers: 'workers',
  workerState: 'worker_state',
} as const
export type MongoCollectionKey = keyof typeof MONGO_COLLECTIONS

interface IndexSpec {
  name: string
  key: Record<string, 1 | -1>
  unique?: boolean
}

const INDEXES: Record<MongoCollectionKey, IndexSpec[]> = {
  tasks: [
    { name: 'flowkit_tasks_id', key: { id: 1 }, unique: true },
    { name: 'flowkit_tasks_created', key: { created_at_ms: 1, id: 1 } },
    { name: 'flowkit_tasks_status_created', key: { status: 1, created_at_ms: 1, id: 1 } },
  ],
  // `_id` (task id + padded seq) is the unique key; this one serves readJournal on MongoDB.
  journal: [
    { name: 'flowkit_journal_task_seq', key: { task_id: 1, seq: 1 } },
    { name: 'flowkit_journal_at', key: { at_ms: 1 } },
  ],
  artifacts: [
    { name: 'flowkit_artifacts_key', key: { task_id: 1, node_id: 1, batch_uid: 1 }, unique: true },
    { name: 'flowkit_artifacts_order', key: { task_id: 1, node_id: 1, created_at: 1 } },
  ],
  // `_id` (task, node, batch_uid, epoch) is the unique key: one row per attempt of a batch.
  metrics: [{ name: 'flowkit_metrics_task', key: { task_id: 1, node_id: 1 } }],
  streamProgress: [
    {
      name: 'flowkit_stream_claim',
      key: { task_id: 1, consumer_node: 1, from_node: 1, batch_uid: 1, consumer_epoch: 1 },
      unique: true,
    },
  ],
  // `_id` (task, node, epoch) is the unique key.
  attemptClaims: [{ name: 'flowkit_attempt_claims_at', key: { claimed_at_ms: 1 } }],
  // `_id` (task, node) is the key.
  checkpoints: [],
  outbox: [
    { name: 'flowkit_outbox_due', key: { status: 1, next_attempt_at_ms: 1, created_at_ms: 1 } },
    { name: 'flowkit_outbox_created', key: { created_at_ms: 1, _id: 1 } },
    { name: 'flowkit_outbox_sent', key: { status: 1, sent_at_ms: 1 } },
  ],
  outboxSent: [
    { name: 'flowkit_outbox_sent_at', key: { sent_at_ms: 1 } },
    { name: 'flowkit_outbox_sent_created', key: { created_at_ms: 1, _id: 1 } },
  ],
  workers: [],
  workerState: [],
}

/**
 * Indexes of earlier versions that would now refuse valid writes: the unique (task, node,
 * batch_uid) key of `metrics_raw` (one row per batch) would refuse a retried attempt's row.
 */
const OBSOLETE_INDEXES: Partial<Record<MongoCollectionKey, string[]>> = {
  metrics: ['flowkit_metrics_key'],
}

/** Codes of createIndex refusing an index that exists under another name / with other options. */
const INDEX_CONFLICT_CODES: ReadonlySet<number> = new Set([85, 86])
const NAMESPACE_EXISTS = 48
const INDEX_NOT_FOUND = 27
const NAMESPACE_NOT_FOUND = 26

/** Our documents: `_id` is an ObjectId, a string key, or whatever another writer chose. */
export type Row = Document & { _id?: string | ObjectId }
export type Collections = Record<MongoCollectionKey, Collection<Row>>

function sameKey(a: unknown, b: Record<string, number>): boolean {
  if (a === null || typeof a !== 'object') return false
  const ea = Object.entries(a as Record<string, unknown>)
  const eb = Object.entries(b)
  return ea.length === eb.length && ea.every(([k, v], i) => k === eb[i]?.[0] && Number(v) === eb[i]?.[1])
}

/** The collections as they are (nothing created): for a read-only store. */
export function openSchema(db: Db, prefix: string): Collections {
  const keys = Object.keys(MONGO_COLLECTIONS) as MongoCollectionKey[]
  return Object.fromEntries(keys.map((key) => [key, db.collection<Row>(prefix + MONGO_COLLECTIONS[key])])) as Collections
}

/** Creates the collections (named `prefix + base name`) and their indexes; returns them. */
export async function ensureSchema(db: Db, prefix: string, logger: Logger | undefined): Promise<Collections> {
  const existing = new Set((await db.listCollections({}, { nameOnly: true }).toArray()).map((c) => (c as { name: string }).name))
  const keys = Object.keys(MONGO_COLLECTIONS) as MongoCollectionKey[]
  const entries = await Promise.all(
    keys.map(async (key): Promise<[MongoCollectionKey, Collection<Row>]> => {
      const name = prefix + MONGO_COLLECTIONS[key]
      if (!existing.has(name)) {
        try {
          await db.createCollection(name)
        } catch (err) {
          if ((err as { code?: unknown }).code !== NAMESPACE_EXISTS) throw err
        }
      }
      const col = db.collection<Row>(name)
      for (const obsolete of OBSOLETE_INDEXES[key] ?? []) await dropIndexIfPresent(col, obsolete)
      for (const spec of INDEXES[key]) await ensureIndex(col, spec, logger)
      return [key, col]
    }),
  )
  return Object.fromEntries(entries) as Collections
}

async function dropIndexIfPresent(col: Collection<Row>, name: string): Promise<void> {
  try {
    await col.dropIndex(name)
  } catch (err) {
    const code = (err as { code?: unknown }).code
    if (code === INDEX_NOT_FOUND || code === NAMESPACE_NOT_FOUND) return
    // Some servers answer without a code: check whether it is still there.
    const indexes = await col.listIndexes().toArray()
    if (indexes.some((ix) => ix['name'] === name)) throw err
  }
}

/** Creates an index; an equivalent one under another name (e.g. made by a Python worker) is accepted. */
async function ensureIndex(col: Collection<Row>, spec: IndexSpec, logger: Logger | undefined): Promise<void> {
  try {
    await col.createIndex(spec.key, { name: spec.name, ...(spec.unique ? { unique: true } : {}) })
  } catch (err) {
    const code = (err as { code?: unknown }).code
    if (typeof code !== 'number' || !INDEX_CONFLICT_CODES.has(code)) throw err
    const indexes = await col.listIndexes().toArray()
    const same = indexes.find((ix) => sameKey(ix['key'], spec.key) && Boolean(ix['unique']) === Boolean(spec.unique))
    if (!same) throw err
    logger?.debug('store.mongo.index_exists', { collection: col.collectionName, index: spec.name, existing: same['name'] })
  }
}

// ---- helpers shared by the store's parts

/** null = no limit, 0 = nothing (MongoDB's limit(0) would mean "no limit"). */
export function limitOf(limit: number | undefined): number | null {
  if (limit === undefined) return null
  if (!(limit > 0)) return 0
  const n = Math.floor(limit)
  return n > 2_147_483_647 ? null : n
}

/** A number as the store writes it: finite, -0 as 0, anything else null (see codec.ts). */
export function num(v: number): number | null {
  return sanitize(v) as number | null
}

export function updateOf(set: Record<string, unknown>, unset: Record<string, ''>, extra: Document = {}): Document {
  const update: Document = { $set: set, ...extra }
  if (Object.keys(unset).length > 0) update['$unset'] = unset
  return update
}

/** Unique insert: true when inserted, false when the key exists. */
export async function insertOnce(col: Collection<Row>, doc: Document): Promise<boolean> {
  try {
    await col.insertOne(doc)
    return true
  } catch (err) {
    if (isDuplicateKeyError(err)) return false
    throw err
  }
}

/** Runs an upsert; a duplicate key (two first upserts raced) retries it once. */
export async function upsertRetry<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn()
  } catch (err) {
    if (!isDuplicateKeyError(err)) throw err
    return fn()
  }
}

/** The per-document errors of an unordered insertMany that failed in part; null for any other error. */
export function writeErrorsOf(err: unknown): WriteError[] | null {
  if (!(err instanceof MongoBulkWriteError)) return null
  const list = Array.isArray(err.writeErrors) ? err.writeErrors : [err.writeErrors]
  // A write concern error (or none listed) is not a per-document failure.
  if (list.length === 0 || err.result?.getWriteConcernError() !== undefined) return null
  return list as WriteError[]
}
