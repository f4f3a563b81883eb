/**
 * Retention on MongoDB, done by the application (not every server has TTL indexes): old journal
 * entries, attempt claims and sent outbox rows (purgeBefore), and whole ended tasks with everything
 * stored for them (purgeTasks). Every filter is on an indexed field or on `task_id`.
 */
import { TERMINAL_TASK_STATUSES } from '../../model/state.ts'
import * as outbox from './outbox.ts'
import type { PurgeCounts } from '../../ports/store.ts'
import { type Collections, num } from './schema.ts'

export async function purgeBefore(c: Collections, cutoff: number): Promise<PurgeCounts> {
  const at = num(cutoff)
  const journal = (await c.journal.deleteMany({ at_ms: { $lt: at } })).deletedCount
  await c.attemptClaims.deleteMany({ claimed_at_ms: { $lt: at } })
  const sent = await outbox.purgeSent(c, at)
  return { journal, outbox: sent, workers: await purgeWorkers(c, at) }
}

/**
 * The registry rows of workers last heard before `at`, then the run state of those that are still
 * gone (one that announced itself in between keeps its row, which no longer matched, and its state).
 */
async function purgeWorkers(c: Collections, at: number | null): Promise<number> {
  const old = { last_seen_ms: { $lt: at } }
  const ids = (await c.workers.find(old, { projection: { _id: 1 } }).toArray()).map((d) => d['_id'] as string)
  if (ids.length === 0) return 0
  const deleted = (await c.workers.deleteMany({ _id: { $in: ids }, ...old })).deletedCount
  const back = new Set((await c.workers.find({ _id: { $in: ids } }, { projection: { _id: 1 } }).toArray()).map((d) => d['_id'] as string))
  const gone = ids.filter((id) => !back.has(id))
  if (gone.length > 0) await c.workerState.deleteMany({ _id: { $in: gone } })
  return deleted
}

/**
 * Ended tasks (terminal snapshot, `finished_at_ms` before `cutoff`), oldest first, at most `limit`:
 * their rows in every collection go first, the task document last, so that a purge cut short
 * leaves the task to be found and purged again.
 */
export async function purgeTasks(c: Collections, cutoff: number, limit: number): Promise<string[]> {
  if (limit <= 0) return []
  const rows = await c.tasks
    .find({ status: { $in: [...TERMINAL_TASK_STATUSES] }, finished_at_ms: { $lt: num(cutoff) } }, { projection: { _id: 0, id: 1 } })
    .sort({ finished_at_ms: 1, id: 1 })
    .limit(Math.floor(limit))
    .toArray()
  const ids = rows.map((r) => r['id']).filter((id): id is string => typeof id === 'string')
  if (ids.length === 0) return []
  const ofTasks = { task_id: { $in: ids } }
  await Promise.all([
    c.journal.deleteMany(ofTasks),
    c.artifacts.deleteMany(ofTasks),
    c.metrics.deleteMany(ofTasks),
    c.streamProgress.deleteMany(ofTasks),
    c.attemptClaims.deleteMany(ofTasks),
    c.checkpoints.deleteMany(ofTasks),
    c.outbox.deleteMany(ofTasks), // not sent (sent rows are in outbox_sent, purged by age)
  ])
  await c.tasks.deleteMany({ id: { $in: ids }, status: { $in: [...TERMINAL_TASK_STATUSES] } })
  return ids
}
