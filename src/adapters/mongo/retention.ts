/**
 * Retention on MongoDB, done by the application (not every server has TTL indexes): old journal
 * entries, attempt claims and sent outbox rows (purgeBefore), and whole ended tasks with everything
 * stored for them (purgeTasks). Every filter is on an indexed field or on `task_id`.
 */
import { TERMINAL_TASK_STATUSES } from '../../model/state.ts'
import * as outbox from './outbox.ts'
import { type Collections, num } from './schema.ts'

export async function purgeBefore(c: Collections, cutoff: number): Promise<{ journal: number; outbox: number }> {
  const at = num(cutoff)
  const journal = (await c.journal.deleteMany({ at_ms: { $lt: at } })).deletedCount
  await c.attemptClaims.deleteMany({ claimed_at_ms: { $lt: at } })
  return { journal, outbox: await outbox.purgeSent(c, at) }
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
  ])
  await c.tasks.deleteMany({ id: { $in: ids }, status: { $in: [...TERMINAL_TASK_STATUSES] } })
  return ids
}
