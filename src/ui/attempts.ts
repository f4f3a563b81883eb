/** A node's attempts as the dashboard's node panel shows them (GET /api/tasks/:id/nodes/:node). */
import type { TaskView } from '../coordinator/view.ts'
import type { ArtifactDoc, BatchMetricsRow } from '../ports/store.ts'
import { FINAL_UID } from '../protocol/messages.ts'
import { parseClaimHolder } from '../ports/store-rules.ts'

export interface AttemptRow {
  attempt_epoch: number
  /** Why it failed, when it is the node's last failure (`last_error`). */
  error: { reason_code: string; error: string | null } | null
  workers: string[]
  partial: number
  complete: number
  failed: number
  batches: number
  first_ms: number | null
  last_ms: number | null
}

/**
 * Every attempt of the node (those that wrote nothing too), newest first, with what they wrote and
 * the workers that ran them (from their artifacts; the current attempt's lease holder too, when
 * it wrote nothing).
 */
export function attemptsOf(node: TaskView['nodes'][number], artifacts: readonly ArtifactDoc[], batches: readonly BatchMetricsRow[]): AttemptRow[] {
  const by = new Map<number, AttemptRow>()
  const row = (epoch: number): AttemptRow => {
    let r = by.get(epoch)
    if (r === undefined) {
      r = { attempt_epoch: epoch, error: null, workers: [], partial: 0, complete: 0, failed: 0, batches: 0, first_ms: null, last_ms: null }
      by.set(epoch, r)
    }
    return r
  }
  for (let epoch = 1; epoch <= node.attempt_epoch; epoch++) row(epoch)
  const last = node.last_error
  if (last !== null && last.attempt_epoch >= 1) row(last.attempt_epoch).error = { reason_code: last.reason_code, error: last.error }
  for (const a of artifacts) {
    const r = row(a.attempt_epoch)
    r[a.status]++
    if (a.worker_id !== null && !r.workers.includes(a.worker_id)) r.workers.push(a.worker_id)
    r.first_ms = r.first_ms === null ? a.created_at : Math.min(r.first_ms, a.created_at)
    r.last_ms = r.last_ms === null ? a.updated_at : Math.max(r.last_ms, a.updated_at)
  }
  for (const b of batches) if (b.batch_uid !== FINAL_UID) row(b.attempt_epoch).batches++
  const holder = node.lease.worker_id
  if (typeof holder === 'string' && holder !== '' && node.attempt_epoch >= 1) {
    const current = row(node.attempt_epoch)
    if (!current.workers.includes(holder)) current.workers.push(holder)
  }
  return [...by.values()].sort((a, b) => b.attempt_epoch - a.attempt_epoch)
}

/** Most attempts whose claim holder is read for one node panel (the newest ones). */
const HOLDERS_READ = 20

/**
 * Names the worker of attempts that wrote nothing and are no longer the current one (a retried
 * attempt that failed before its first artifact): the worker that claimed the attempt (a TS
 * worker claims each attempt before it runs it; a Python worker claims none), its id without the
 * process instance. `holder` is Store.attemptHolder for the node.
 */
export async function withClaimHolders(rows: AttemptRow[], holder: (epoch: number) => Promise<string | null>): Promise<AttemptRow[]> {
  const unnamed = rows.filter((r) => r.workers.length === 0 && r.attempt_epoch >= 1).slice(0, HOLDERS_READ)
  await Promise.all(
    unnamed.map(async (r) => {
      const h = await holder(r.attempt_epoch).catch(() => null)
      const parsed = h === null ? null : parseClaimHolder(h)
      if (parsed !== null && parsed.workerId !== '') r.workers.push(parsed.workerId)
    }),
  )
  return rows
}
