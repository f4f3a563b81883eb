/**
 * Attempt claims and checkpoints on MongoDB. Claims: one document per (task, node, epoch), keyed by `_id`, inserted by the
 * worker that is about to run the attempt. The insert is the claim (unique `_id`, atomic on
 * FerretDB too, where it costs constant time); only a lost race reads the holder back.
 */
import type { AttemptClaim, Checkpoint, CheckpointWrite } from '../../ports/store.ts'
import { canonicalJson } from '../../util/ids.ts'
import { isDuplicateKeyError } from './errors.ts'
import { type Collections, insertOnce, num, writeErrorsOf } from './schema.ts'

/** Conflicts read one by one (by exact `_id`) rather than with one `$in`. */
const FEW_CONFLICTS = 4

function claimDoc(claim: AttemptClaim, now: number) {
  const epoch = num(claim.attempt_epoch)
  return { _id: canonicalJson(['c', claim.task_id, claim.node_id, epoch]) as never, task_id: claim.task_id, node_id: claim.node_id, attempt_epoch: epoch, worker_id: claim.worker_id, claimed_at_ms: num(now) }
}

export async function claimAttempt(c: Collections, claim: AttemptClaim, now: number): Promise<boolean> {
  const doc = claimDoc(claim, now)
  if (await insertOnce(c.attemptClaims, doc)) return true
  const held = await c.attemptClaims.findOne({ _id: doc._id })
  return held?.['worker_id'] === claim.worker_id
}

/** Several claims in one unordered insert; the holders of the ones that collide are read back. */
export async function claimAttempts(c: Collections, claims: readonly AttemptClaim[], now: number): Promise<boolean[]> {
  const out = claims.map(() => true)
  if (claims.length === 0) return out
  const docs = claims.map((cl) => claimDoc(cl, now))
  try {
    await c.attemptClaims.insertMany(docs, { ordered: false })
  } catch (err) {
    const errors = writeErrorsOf(err)
    if (errors === null) throw err
    const lost: number[] = []
    for (const we of errors) {
      if (we.code !== 11000) throw err
      lost.push(we.index)
    }
    const ids = lost.map((i) => (docs[i] as { _id: never })._id)
    // FerretDB filters an exact _id about 8 times faster than an `$in` (both scan): a few
    // conflicts (a START delivered again) are read one by one.
    const held =
      ids.length <= FEW_CONFLICTS
        ? (await Promise.all(ids.map((id) => c.attemptClaims.findOne({ _id: id })))).filter((d) => d !== null)
        : await c.attemptClaims.find({ _id: { $in: ids } }).toArray()
    const holder = new Map(held.map((d) => [String(d['_id']), d['worker_id']]))
    for (const i of lost) out[i] = holder.get(String((docs[i] as { _id: string })._id)) === (claims[i] as AttemptClaim).worker_id
  }
  return out
}

/** The worker id holding an attempt's claim, null when unclaimed. */
export async function attemptHolder(c: Collections, taskId: string, nodeId: string, attemptEpoch: number): Promise<string | null> {
  const doc = await c.attemptClaims.findOne({ _id: canonicalJson(['c', taskId, nodeId, num(attemptEpoch)]) as never }, { projection: { worker_id: 1 } })
  return doc === null ? null : String(doc['worker_id'])
}

/**
 * Checkpoints: one document per (task, node), keyed by `_id`, its state as JSON text (any keys).
 * The update only matches when the stored attempt is not newer; an upsert that finds a newer
 * one collides on `_id`: refused (false).
 */
export async function saveCheckpoint(c: Collections, cp: CheckpointWrite, now: number): Promise<boolean> {
  const epoch = num(cp.attempt_epoch)
  const _id = canonicalJson(['cp', cp.task_id, cp.node_id]) as never
  try {
    await c.checkpoints.updateOne(
      { _id, attempt_epoch: { $lte: epoch } },
      { $set: { task_id: cp.task_id, node_id: cp.node_id, attempt_epoch: epoch, state_json: JSON.stringify(cp.state ?? null), saved_at_ms: num(now) } },
      { upsert: true },
    )
    return true
  } catch (err) {
    if (isDuplicateKeyError(err)) return false
    throw err
  }
}

export async function getCheckpoint(c: Collections, taskId: string, nodeId: string): Promise<Checkpoint | null> {
  const doc = await c.checkpoints.findOne({ _id: canonicalJson(['cp', taskId, nodeId]) as never })
  if (doc === null) return null
  return { attempt_epoch: Number(doc['attempt_epoch']), state: JSON.parse(String(doc['state_json'] ?? 'null')) as unknown, saved_at_ms: Number(doc['saved_at_ms']) }
}
