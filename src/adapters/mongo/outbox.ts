/**
 * The transactional outbox on MongoDB: pending and dead-lettered rows in `outbox` (keyed by the
 * outbox id), sent rows moved to `outbox_sent`, so claiming due rows stays cheap however many were
 * sent (FerretDB scans on such queries). The dedup on (topic, key, dedup_id) covers both.
 */
import type { Collection, Document } from 'mongodb'
import type { OutboxEnqueue, OutboxFilter, OutboxRow, OutboxStatus } from '../../ports/store.ts'
import { outboxId } from '../../util/ids.ts'
import { decodeFields, putField, sanitize, setField } from './codec.ts'
import { type Collections, type Row, insertOnce, limitOf, num, updateOf } from './schema.ts'

export async function enqueue(c: Collections, row: OutboxEnqueue, now: number, parked?: { attempts: number; error: string }): Promise<boolean> {
  const key = row.key ?? null
  const id = outboxId(row.topic, key, row.dedup_id)
  const at = num(now)
  const doc: Document = {
    _id: id,
    id,
    topic: row.topic,
    key,
    dedup_id: row.dedup_id,
    status: parked ? 'failed' : 'pending',
    attempts: parked ? num(parked.attempts) : 0,
  }
  if (row.task_id != null) doc['task_id'] = row.task_id
  putField(doc, 'value', sanitize(row.value))
  doc['next_attempt_at_ms'] = at
  putField(doc, 'last_error', parked ? sanitize(parked.error) : null)
  Object.assign(doc, { created_at_ms: at, updated_at_ms: at, sent_at_ms: null })
  // Sent rows live in their own collection (see markSent): the dedup covers both.
  if (await c.outboxSent.findOne({ _id: id as never }, { projection: { _id: 1 } })) return false
  return insertOnce(c.outbox, doc)
}

export async function claimDue(c: Collections, now: number, limit: number, claimUntil: number): Promise<OutboxRow[]> {
  const n = limitOf(limit)
  if (n === 0 || !Number.isFinite(now)) return []
  const until = num(claimUntil)
  const at = num(now)
  const claimed: OutboxRow[] = []
  const claimedIds: string[] = []
  // Each row is claimed by a compare-and-set on its due time; a row another dispatcher took in
  // between is skipped, and a few more rounds fill the batch up.
  for (let round = 0; round < 4 && (n === null || claimed.length < n); round++) {
    const query: Document = { status: 'pending', next_attempt_at_ms: { $lte: at } }
    if (claimedIds.length > 0) query['_id'] = { $nin: claimedIds }
    let cursor = c.outbox.find(query).sort({ next_attempt_at_ms: 1, created_at_ms: 1, _id: 1 })
    if (n !== null) cursor = cursor.limit(n - claimed.length)
    const candidates = await cursor.toArray()
    if (candidates.length === 0) break
    const won = await Promise.all(
      candidates.map((cand) =>
        c.outbox.findOneAndUpdate(
          { _id: cand['_id'], status: 'pending', next_attempt_at_ms: cand['next_attempt_at_ms'] },
          { $set: { next_attempt_at_ms: until, updated_at_ms: at } },
          { returnDocument: 'after' },
        ),
      ),
    )
    let lost = 0
    for (const doc of won) {
      if (doc) {
        claimed.push(decodeFields(doc) as unknown as OutboxRow)
        claimedIds.push(String(doc['_id']))
      } else {
        lost++
      }
    }
    if (lost === 0) break
  }
  return claimed
}

/**
 * Pending → sent: the row is written to `outbox_sent` before it leaves `outbox`, so at any moment
 * it is in one of the two.
 */
export async function markSent(c: Collections, id: string, now: number): Promise<void> {
  const at = num(now)
  const doc = await c.outbox.findOne({ _id: id as never })
  if (doc?.['status'] !== 'pending') return
  // What is kept of a sent message is what an audit needs, never its payload (a START's params).
  await insertOnce(c.outboxSent, { ...doc, value: '', status: 'sent', sent_at_ms: at, updated_at_ms: at })
  await c.outbox.deleteOne({ _id: id as never, status: 'pending' })
}

export async function markRetry(c: Collections, id: string, attempts: number, nextAttemptAt: number, error: string, now: number): Promise<void> {
  const set: Record<string, unknown> = { attempts: num(attempts), next_attempt_at_ms: num(nextAttemptAt), updated_at_ms: num(now) }
  const unset: Record<string, ''> = {}
  setField(set, unset, 'last_error', sanitize(error))
  await c.outbox.updateOne({ _id: id, status: 'pending' }, updateOf(set, unset))
}

export async function markFailed(c: Collections, id: string, attempts: number, error: string, now: number): Promise<void> {
  const set: Record<string, unknown> = { status: 'failed', attempts: num(attempts), updated_at_ms: num(now) }
  const unset: Record<string, ''> = {}
  setField(set, unset, 'last_error', sanitize(error))
  await c.outbox.updateOne({ _id: id, status: 'pending' }, updateOf(set, unset))
}

/** Sent rows live in their own collection; the others are counted by status (indexed). */
export function count(c: Collections, status: OutboxStatus): Promise<number> {
  return status === 'sent' ? c.outboxSent.countDocuments({}) : c.outbox.countDocuments({ status: String(status) })
}

export async function list(c: Collections, filter: OutboxFilter): Promise<OutboxRow[]> {
  const limit = limitOf(filter.limit)
  if (limit === 0) return []
  // An id is the row's `_id`, compared as a string (never an operator object).
  const byId: Document = filter.id === undefined ? {} : { _id: String(filter.id) }
  const read = async (col: Collection<Row>, query: Document): Promise<Document[]> => {
    let cursor = col.find({ ...query, ...byId }).sort({ created_at_ms: 1, _id: 1 })
    if (limit !== null) cursor = cursor.limit(limit)
    return cursor.toArray()
  }
  const status = filter.status
  const docs =
    status === 'sent'
      ? await read(c.outboxSent, {})
      : status !== undefined
        ? await read(c.outbox, { status })
        : [...(await read(c.outbox, {})), ...(await read(c.outboxSent, {}))]
  const id = (d: Document) => String(d['_id'])
  docs.sort((a, b) => Number(a['created_at_ms']) - Number(b['created_at_ms']) || (id(a) < id(b) ? -1 : id(a) > id(b) ? 1 : 0))
  const rows = docs.map((doc) => decodeFields(doc) as unknown as OutboxRow)
  return limit === null ? rows : rows.slice(0, limit)
}

export async function requeue(c: Collections, id: string, now: number): Promise<boolean> {
  const at = num(now)
  const res = await c.outbox.updateOne({ _id: id, status: 'failed' }, { $set: { status: 'pending', attempts: 0, next_attempt_at_ms: at, updated_at_ms: at } })
  return res.matchedCount === 1
}

/** Deletes rows sent before `cutoff` (pending and dead-lettered rows stay). */
export async function purgeSent(c: Collections, cutoff: number | null): Promise<number> {
  return (await c.outboxSent.deleteMany({ sent_at_ms: { $lt: cutoff } })).deletedCount
}
