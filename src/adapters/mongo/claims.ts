/**
 * Attempt claims on MongoDB: one document per (task, node, epoch), keyed by `_id`, inserted by the
 * worker that is about to run the attempt. The insert is the claim (unique `_id`, atomic on
 * FerretDB too, where it costs constant time); only a lost race reads the holder back.
 */
import type { AttemptClaim } from '../../ports/store.ts'
import { canonicalJson } from '../../util/ids.ts'
import { type Collections, insertOnce, num } from './schema.ts'

export async function claimAttempt(c: Collections, claim: AttemptClaim, now: number): Promise<boolean> {
  const epoch = num(claim.attempt_epoch)
  const _id = canonicalJson(['c', claim.task_id, claim.node_id, epoch]) as never
  const doc = { _id, task_id: claim.task_id, node_id: claim.node_id, attempt_epoch: epoch, worker_id: claim.worker_id, claimed_at_ms: num(now) }
  if (await insertOnce(c.attemptClaims, doc)) return true
  const held = await c.attemptClaims.findOne({ _id })
  return held?.['worker_id'] === claim.worker_id
}
