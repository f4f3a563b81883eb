/**
 * Claiming a stored task (handover.ts): loading it into memory, its claim entry written with the
 * next flush. One claim per task at a time.
 */
import type { Logger } from '../log.ts'
import type { VersionedTask } from '../model/journal.ts'
import type { Clock } from '../ports/clock.ts'
import type { Store } from '../ports/store.ts'
import type { HandoverDeps } from './handover.ts'
import { loadRuntime } from './recovery.ts'
import { TERMINAL_TASK, type TaskRuntime } from './runtime.ts'
import { countsRows } from './runtime-doc.ts'

/** Claims under way per engine: a load that reads the batch rows awaits, and must not run twice. */
const CLAIMING = new WeakMap<object, Map<string, Promise<unknown>>>()

/**
 * Loads a stored task into memory and writes the claim with its next flush. Null when not active
 * or already held — also (once it is) when another claim of the task is under way: two loads (a
 * hand-over and an adopt request, for a task whose batch ledger is in rows) would take its running
 * nodes' slots twice, and the second runtime would replace the first.
 */
export function claim(d: HandoverDeps, doc: Parameters<typeof loadRuntime>[3], generation: number, recovering?: Promise<void>): Promise<TaskRuntime | null> | null {
  if (d.engine.tasks.has(doc.id) || doc.nodes === undefined) return null
  let claiming = CLAIMING.get(d.engine)
  if (claiming === undefined) {
    claiming = new Map()
    CLAIMING.set(d.engine, claiming)
  }
  const prior = claiming.get(doc.id)
  // Held once it succeeds; when it failed (a store error), this claim loads the task itself.
  if (prior !== undefined) return prior.then(() => null, () => claim(d, doc, generation, recovering))
  if (TERMINAL_TASK.has(doc.status)) {
    // Listed as active (by its snapshot), ended by its journal: the snapshot is behind.
    if (typeof (doc as Partial<VersionedTask>).v === 'number' && (doc as VersionedTask).v > 0) {
      offerLoadedRows(d, doc)
      d.staleSnapshot(doc as VersionedTask)
    }
    return null
  }
  const loading = loadRuntime(d.store, d.engine, d.limits, doc, recovering).then((rt) => {
    rt.events.push(`owner ${d.writer} generation ${generation}`)
    d.claimed?.(rt)
    offerLoadedRows(d, doc)
    d.mark(rt)
    return rt
  })
  const map = claiming
  map.set(doc.id, loading)
  const done = (): void => {
    if (map.get(doc.id) === loading) map.delete(doc.id)
  }
  loading.then(done, done)
  return loading
}

/** The batch counts a loaded document carries may lack their rows (countsRows): offered again. */
function offerLoadedRows(d: HandoverDeps, doc: { id: string }): void {
  const rows = countsRows(doc.id, (doc as Partial<VersionedTask>).batches)
  if (rows.length > 0) d.offerRows?.(rows)
}

/** How often a task handed over inline is looked for in the store (a check of the deployment). */
const STORE_CHECK_INTERVAL_MS = 60_000

/**
 * A task handed over inline was written to its creator's store first: once a minute, one is looked
 * for in this coordinator's store. Not there: coordinators of one group (same Kafka cluster and
 * groupId) use different databases, and the tasks the others create would run here unseen by them
 * (queued for ever in their store).
 */
export function sharedStoreCheck(d: { store: Store; log: Logger; clock: Clock }): (taskId: string) => Promise<void> {
  let checkedAt = Number.NEGATIVE_INFINITY
  return async (taskId) => {
    const now = d.clock.now()
    if (now - checkedAt < STORE_CHECK_INTERVAL_MS) return
    checkedAt = now
    const stored = await d.store.getTask(taskId).catch(() => undefined)
    if (stored !== null) return
    d.log.error('coordinator.store_mismatch', {
      task_id: taskId,
      hint: "a task handed over by another coordinator of this group is not in this coordinator's database: coordinators sharing a Kafka cluster and groupId must share one database (URL, database name and collection prefix), or use different groupIds",
    })
  }
}
