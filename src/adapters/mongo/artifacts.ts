/**
 * Artifacts, batch metrics and stream claims on MongoDB. Each is written insert first: an insert
 * is what FerretDB serves in constant time (its lookups and updates by `_id` scan the collection).
 *
 * - `artifacts`: Python layout `{task_id, node_id, batch_uid, status, meta, attempt_epoch,
 *   worker_id, created_at, updated_at}` (timestamps in ms), unique (task_id, node_id, batch_uid);
 *   our complete artifact stores `batch_uid: null`, a Python one without the field reads as null.
 *   Ours have a string `_id` (artifactKey) and `ins`, an ObjectId giving the insertion order (the
 *   last tiebreak of the listing); a Python worker's have an ObjectId `_id`.
 * - `metrics_raw`: one insert-only row per (task, node, batch_uid, attempt_epoch), keyed by `_id`;
 *   the newest epoch per batch counts.
 * - `stream_progress`: one row per claim, unique (task, consumer, from, batch_uid, epoch).
 */
import { type Document, MongoServerError, ObjectId } from 'mongodb'
import type { ArtifactDoc, ArtifactQuery, ArtifactWrite, BatchMetricsRow, BatchMetricsWrite, StreamClaim } from '../../ports/store.ts'
import { assertNodeId, completeLast, newestPerBatch } from '../../ports/store-rules.ts'
import { canonicalJson } from '../../util/ids.ts'
import { JSON_SUFFIX, getField, putField, sanitize, setField, toMs } from './codec.ts'
import { isDuplicateKeyError, mapMongoError } from './errors.ts'
import { type Collections, insertOnce, num, updateOf, upsertRetry, writeErrorsOf } from './schema.ts'

/** `_id` of a batch's metrics row of one attempt. */
function metricsKey(taskId: string, nodeId: string, batchUid: string, epoch: number | null): string {
  return canonicalJson(['m', taskId, nodeId, batchUid, epoch])
}

/** `_id` of one of our artifacts (a Python worker's have an ObjectId). */
function artifactKey(taskId: string, nodeId: string, batchUid: string | null): string {
  return canonicalJson(['a', taskId, nodeId, batchUid])
}

function idOrder(id: unknown): string {
  return id instanceof ObjectId ? id.toHexString() : String(id)
}

function objectField(doc: Document, name: string): Record<string, unknown> {
  const v = getField(doc, name)
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {}
}

/**
 * A Python worker writes a node's complete artifact without `batch_uid`, its times as BSON dates,
 * with its finalize metrics as `meta` (the seed's `mark_complete(metrics)`): they are read as its
 * `final_metrics`, so a coordinator that finishes the node from it counts them as ours. flowkit
 * writes `updated_at` in epoch ms (also when it takes such a document over: its meta is not metrics).
 */
function finalMetricsOf(doc: Document): Record<string, unknown> | undefined {
  if (getField(doc, 'final_metrics') !== undefined) return objectField(doc, 'final_metrics')
  const seeds = doc['batch_uid'] === undefined && doc['status'] === 'complete' && doc['updated_at'] instanceof Date
  return seeds ? objectField(doc, 'meta') : undefined
}

function decodeArtifact(doc: Document): ArtifactDoc {
  const batchUid = doc['batch_uid']
  const epoch = doc['attempt_epoch']
  const finalMetrics = finalMetricsOf(doc)
  return {
    task_id: doc['task_id'],
    node_id: doc['node_id'],
    batch_uid: batchUid === undefined ? null : batchUid,
    status: doc['status'],
    meta: objectField(doc, 'meta'),
    attempt_epoch: typeof epoch === 'number' ? epoch : 0,
    worker_id: doc['worker_id'] ?? null,
    ...(finalMetrics === undefined ? {} : { final_metrics: finalMetrics }),
    created_at: toMs(doc['created_at']),
    updated_at: toMs(doc['updated_at']),
  }
}

// ---- batch metrics

/** The documents of metrics rows. Checks node ids first. */
export function encodeMetrics(rows: readonly BatchMetricsWrite[], now: number): Document[] {
  return rows.map((row) => {
    assertNodeId(row.node_id)
    const epoch = num(row.attempt_epoch)
    const doc: Document = {
      _id: metricsKey(row.task_id, row.node_id, row.batch_uid, epoch),
      task_id: row.task_id,
      node_id: row.node_id,
      batch_uid: row.batch_uid,
      attempt_epoch: epoch,
    }
    putField(doc, 'metrics', sanitize(row.metrics ?? {}))
    doc['inserted_at_ms'] = num(now)
    return doc
  })
}

/** One unordered insertMany; rows whose key exists are left as they are. */
export async function insertMetrics(c: Collections, docs: Document[]): Promise<void> {
  if (docs.length === 0) return
  try {
    await c.metrics.insertMany(docs, { ordered: false })
  } catch (err) {
    const errors = writeErrorsOf(err)
    if (errors === null) throw err
    for (const we of errors) {
      const single = new MongoServerError({ message: we.errmsg ?? 'write error', errmsg: we.errmsg, code: we.code })
      if (!isDuplicateKeyError(single)) throw mapMongoError(single, 'insertBatchMetrics')
    }
  }
}

export async function listMetrics(c: Collections, taskId: string, nodeId: string | undefined): Promise<BatchMetricsRow[]> {
  const query: Document = { task_id: taskId }
  if (nodeId !== undefined) query['node_id'] = nodeId
  const rows: BatchMetricsRow[] = []
  for (const doc of await c.metrics.find(query).toArray()) {
    const epoch = doc['attempt_epoch']
    rows.push({
      node_id: String(doc['node_id']),
      batch_uid: String(doc['batch_uid']),
      attempt_epoch: typeof epoch === 'number' ? epoch : 0,
      metrics: objectField(doc, 'metrics'),
    })
  }
  return newestPerBatch(rows)
}

// ---- artifacts

/**
 * Inserts the artifact; only when its key exists, updates it within the epoch fence (a higher
 * stored epoch refuses the write: false).
 */
export async function upsertArtifact(c: Collections, ferret: boolean, artifact: ArtifactWrite, now: number): Promise<boolean> {
  const epoch = num(artifact.attempt_epoch)
  const batchUid = artifact.batch_uid ?? null
  const key = artifactKey(artifact.task_id, artifact.node_id, batchUid) as never
  const at = num(now)
  const fields: Document = { status: artifact.status, attempt_epoch: epoch, worker_id: artifact.worker_id ?? null, updated_at: at }
  const doc: Document = { _id: key, task_id: artifact.task_id, node_id: artifact.node_id, batch_uid: batchUid, ...fields, created_at: at, ins: new ObjectId() }
  putField(doc, 'meta', sanitize(artifact.meta ?? {}))
  if (artifact.final_metrics !== undefined) putField(doc, 'final_metrics', sanitize(artifact.final_metrics))
  if (await insertOnce(c.artifacts, doc)) return true

  const set: Record<string, unknown> = { ...fields }
  const unset: Record<string, ''> = {}
  setField(set, unset, 'meta', sanitize(artifact.meta ?? {}))
  if (artifact.final_metrics !== undefined) setField(set, unset, 'final_metrics', sanitize(artifact.final_metrics))
  else {
    unset['final_metrics'] = ''
    unset[`final_metrics${JSON_SUFFIX}`] = ''
  }
  const update = updateOf(set, unset, {
    $setOnInsert: { created_at: at, task_id: artifact.task_id, node_id: artifact.node_id, batch_uid: batchUid, ins: new ObjectId() },
  })
  try {
    if (ferret) {
      // By _id only; the epoch fence is checked on the document read (FerretDB's updates are not
      // isolated anyway; one attempt writes a key at a time).
      const current = await c.artifacts.findOne({ _id: key })
      const held = current?.['attempt_epoch']
      if (typeof held === 'number' && held > (epoch ?? 0)) return false
      await upsertRetry(() => c.artifacts.updateOne({ _id: key }, update, { upsert: true }))
      return true
    }
    // When a higher epoch holds the key, the filter misses and the insert hits the unique _id.
    await upsertRetry(() => c.artifacts.updateOne({ _id: key, attempt_epoch: { $lte: epoch } }, update, { upsert: true }))
    return true
  } catch (err) {
    if (!isDuplicateKeyError(err)) throw err
    // Either our own document holds a higher epoch (fenced), or a Python worker's document (its
    // own _id) holds this (task, node, batch_uid): take that one over within the fence (its
    // batch_uid left as it is: the seed finds a complete artifact by the field's absence).
    const res = await c.artifacts.updateOne(
      { task_id: artifact.task_id, node_id: artifact.node_id, batch_uid: batchUid, attempt_epoch: { $lte: epoch } },
      update,
    )
    return res.matchedCount > 0
  }
}

/** New keys in one unordered insertMany; a key that exists goes through upsertArtifact (fence kept). */
export async function upsertArtifacts(c: Collections, ferret: boolean, list: readonly ArtifactWrite[], now: number): Promise<boolean[]> {
  const at = num(now)
  const docs = list.map((artifact) => {
    const batchUid = artifact.batch_uid ?? null
    const doc: Document = {
      _id: artifactKey(artifact.task_id, artifact.node_id, batchUid),
      task_id: artifact.task_id,
      node_id: artifact.node_id,
      batch_uid: batchUid,
      status: artifact.status,
      attempt_epoch: num(artifact.attempt_epoch),
      worker_id: artifact.worker_id ?? null,
      updated_at: at,
      created_at: at,
      ins: new ObjectId(),
    }
    putField(doc, 'meta', sanitize(artifact.meta ?? {}))
    if (artifact.final_metrics !== undefined) putField(doc, 'final_metrics', sanitize(artifact.final_metrics))
    return doc
  })
  const out = list.map(() => true)
  const again: number[] = []
  // Two writes of one key in the same call: the later one goes through the update path.
  const seen = new Set<string>()
  const first: Document[] = []
  /** `firstAt[j]`: the position in `list` of `first[j]` (a write error names its insert's index). */
  const firstAt: number[] = []
  docs.forEach((d, i) => {
    const k = String(d['_id'])
    if (seen.has(k)) again.push(i)
    else {
      seen.add(k)
      first.push(d)
      firstAt.push(i)
    }
  })
  try {
    if (first.length > 0) await c.artifacts.insertMany(first, { ordered: false })
  } catch (err) {
    const errors = writeErrorsOf(err)
    if (errors === null) throw err
    for (const we of errors) {
      if (we.code !== 11000) throw mapMongoError(new MongoServerError({ message: we.errmsg ?? 'write error', errmsg: we.errmsg, code: we.code }), 'upsertArtifacts')
      again.push(firstAt[we.index] as number)
    }
  }
  for (const i of again.sort((a, b) => a - b)) out[i] = await upsertArtifact(c, ferret, list[i] as ArtifactWrite, now)
  return out
}

function artifactFilter(taskId: string, query: ArtifactQuery): Document {
  const filter: Document = { task_id: taskId }
  if (query.nodeId !== undefined) filter['node_id'] = query.nodeId
  if (query.status !== undefined) filter['status'] = query.status
  if (query.createdAfter !== undefined) {
    // Ours store epoch ms, a Python worker's a BSON date: range queries do not cross types.
    filter['$or'] = [{ created_at: { $gte: query.createdAfter } }, { created_at: { $gte: new Date(query.createdAfter) } }]
  }
  return filter
}

type Row = { doc: ArtifactDoc; id: string; rawCreated: unknown }

/**
 * The listing's order (the Store port's): creation time, the complete artifact after the partials
 * of the same time, then insertion (`ins`: an ObjectId made by the writer at the write, so a
 * writer's partials come in the order it wrote them, also those of one round trip, which share a
 * time). Applied here: MongoDB would sort a null batch uid first.
 */
function ordered(rows: Row[]): ArtifactDoc[] {
  rows.sort((a, b) => a.doc.created_at - b.doc.created_at || completeLast(a.doc.batch_uid, b.doc.batch_uid) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
  return rows.map((r) => r.doc)
}

const rowOf = (doc: Document): Row => ({ doc: decodeArtifact(doc), id: idOrder(doc['ins'] ?? doc['_id']), rawCreated: doc['created_at'] })

export async function listArtifacts(c: Collections, taskId: string, query: ArtifactQuery): Promise<ArtifactDoc[]> {
  return ordered((await c.artifacts.find(artifactFilter(taskId, query)).toArray()).map(rowOf))
}

/** One listing of `listArtifactsMerged`. */
export interface ArtifactListing {
  taskId: string
  query: ArtifactQuery
}

/** Whether a stored artifact matches a listing (what its filter selects on the server). */
function matches(r: Row, l: ArtifactListing): boolean {
  const d = r.doc
  if (d.task_id !== l.taskId) return false
  if (l.query.nodeId !== undefined && d.node_id !== l.query.nodeId) return false
  if (l.query.status !== undefined && d.status !== l.query.status) return false
  const after = l.query.createdAfter
  if (after !== undefined && !((typeof r.rawCreated === 'number' || r.rawCreated instanceof Date) && d.created_at >= after)) return false
  return true
}

/** A filter value matching any of `values`. */
const oneOf = (values: readonly (string | null)[]): unknown => (values.length === 1 ? values[0] : { $in: values })

/**
 * Several listings answered by one query, each in its own order. On FerretDB every filter is
 * evaluated on every stored artifact, so N listings at once cost about what one does — if the
 * filter stays simple: the `$or` of the listings' own filters took about 1 s a query with 32 of
 * them, so the query selects a superset (their tasks, their nodes when each names one, from the
 * earliest time when each has one) and each listing's own filter is applied here.
 */
export async function listArtifactsMerged(c: Collections, listings: readonly ArtifactListing[]): Promise<ArtifactDoc[][]> {
  if (listings.length === 1) {
    const l = listings[0] as ArtifactListing
    return [await listArtifacts(c, l.taskId, l.query)]
  }
  const filter: Document = { task_id: oneOf([...new Set(listings.map((l) => l.taskId))]) }
  const nodes = listings.map((l) => l.query.nodeId)
  if (nodes.every((n) => n !== undefined)) filter['node_id'] = oneOf([...new Set(nodes as string[])])
  const afters = listings.map((l) => l.query.createdAfter)
  if (afters.every((a) => a !== undefined)) {
    const from = Math.min(...(afters as number[]))
    filter['$or'] = [{ created_at: { $gte: from } }, { created_at: { $gte: new Date(from) } }]
  }
  const rows = (await c.artifacts.find(filter).toArray()).map(rowOf)
  return listings.map((l) => ordered(rows.filter((r) => matches(r, l))))
}

export async function getArtifact(c: Collections, taskId: string, nodeId: string, batchUid: string | null): Promise<ArtifactDoc | null> {
  return (await getOwnArtifact(c, taskId, nodeId, batchUid)) ?? (await findArtifactsByFields(c, [{ taskId, nodeId, batchUid }]))[0] ?? null
}

/** One of ours, by its `_id`. */
export async function getOwnArtifact(c: Collections, taskId: string, nodeId: string, batchUid: string | null): Promise<ArtifactDoc | null> {
  const own = await c.artifacts.findOne({ _id: artifactKey(taskId, nodeId, batchUid ?? null) as never })
  return own ? decodeArtifact(own) : null
}

/** Which artifact `findArtifactsByFields` looks for. */
export interface ArtifactRef {
  taskId: string
  nodeId: string
  batchUid: string | null
}

/**
 * Artifacts a Python worker wrote (its own `_id`), found by their fields: the highest attempt per
 * reference (the key is unique, so there is at most one). Several references: one query.
 */
export async function findArtifactsByFields(c: Collections, refs: readonly ArtifactRef[]): Promise<(ArtifactDoc | null)[]> {
  if (refs.length === 1) {
    const r = refs[0] as ArtifactRef
    const doc = await c.artifacts.findOne({ task_id: r.taskId, node_id: r.nodeId, batch_uid: r.batchUid ?? null }, { sort: { attempt_epoch: -1, _id: 1 } })
    return [doc ? decodeArtifact(doc) : null]
  }
  const uniq = <T>(xs: T[]): T[] => [...new Set(xs)]
  const docs = (
    await c.artifacts
      .find({ task_id: oneOf(uniq(refs.map((r) => r.taskId))), node_id: oneOf(uniq(refs.map((r) => r.nodeId))), batch_uid: { $in: uniq(refs.map((r) => r.batchUid ?? null)) } })
      .toArray()
  ).map(decodeArtifact)
  return refs.map((r) => {
    let best: ArtifactDoc | null = null
    for (const d of docs) {
      if (d.task_id !== r.taskId || d.node_id !== r.nodeId || d.batch_uid !== (r.batchUid ?? null)) continue
      if (best === null || d.attempt_epoch > best.attempt_epoch) best = d
    }
    return best
  })
}

// ---- stream progress

function claimDoc(claim: StreamClaim, now: number): Document {
  // The epoch is part of the stored batch_uid too: a Python worker sharing this database creates
  // a unique index on (task_id, consumer_node, from_node, batch_uid) without the epoch, and a
  // retried consumer's claims must not collide with its earlier attempt's.
  return {
    task_id: claim.task_id,
    consumer_node: claim.consumer_node,
    from_node: claim.from_node,
    batch_uid: `${claim.batch_uid}#e${claim.consumer_epoch}`,
    source_batch_uid: claim.batch_uid,
    consumer_epoch: num(claim.consumer_epoch),
    claimed_at_ms: num(now),
  }
}

export function claimStreamBatch(c: Collections, claim: StreamClaim, now: number): Promise<boolean> {
  return insertOnce(c.streamProgress, claimDoc(claim, now))
}

/** Several claims in one unordered insertMany: per claim, true when it is new. */
export async function claimStreamBatches(c: Collections, claims: readonly StreamClaim[], now: number): Promise<boolean[]> {
  const out = claims.map(() => true)
  if (claims.length === 0) return out
  try {
    await c.streamProgress.insertMany(
      claims.map((cl) => claimDoc(cl, now)),
      { ordered: false },
    )
  } catch (err) {
    const errors = writeErrorsOf(err)
    if (errors === null) throw err
    for (const we of errors) {
      if (we.code !== 11000) throw mapMongoError(new MongoServerError({ message: we.errmsg ?? 'write error', errmsg: we.errmsg, code: we.code }), 'claimStreamBatches')
      out[we.index] = false
    }
  }
  return out
}
