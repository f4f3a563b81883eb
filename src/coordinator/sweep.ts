/**
 * The coordinator's slow sweep: retention (the application purges old journal entries, sent
 * outbox rows and, with `taskRetentionSec`, whole ended tasks: no TTL indexes on every server),
 * and tasks that appeared in the store without this coordinator (written by another process) are
 * adopted, from a projected read of ids. Deadlines are not swept: they live in the timer heap.
 */
import type { CoordinatorConfig } from '../config.ts'
import { errorMessage, failureLevel } from '../errors.ts'
import type { Logger } from '../log.ts'
import type { Clock } from '../ports/clock.ts'
import type { Store } from '../ports/store.ts'

export interface SweepDeps {
  config: CoordinatorConfig
  store: Store
  clock: Clock
  log: Logger
  /** Whether this coordinator holds the task (or finished it recently). */
  known: (taskId: string) => boolean
  /** Flushes written so far (the coordinator is busy when the count moves between ticks). */
  flushes: () => number
  adopt: (taskId: string) => Promise<unknown>
}

/** Journal and outbox retention runs this often. */
const PURGE_EVERY_MS = 600_000
/**
 * Most of the time the sweep's scans of the store take: after a scan that took `d`, the next one
 * waits at least `d / MAX_DUTY`. On a server that cannot use an index for them (FerretDB on SQLite
 * reads every document of the collection), a scan grows with the collection; without this bound a
 * sweep every 10 s over 10,000 tasks kept that server busy a fifth of the time. Where the indexes
 * serve them (MongoDB), scans take milliseconds and the bound never applies.
 */
const MAX_DUTY = 0.02
/**
 * A coordinator busy with events (a flush since the last tick) defers the scan for tasks written
 * by another process — a fallback, for a submission whose adopt request was lost — for at most
 * this many ticks: as snapshots do, background reads of the store give way to the event path.
 */
const SCAN_DEFER_TICKS = 6
/** Ended tasks deleted per store call, and calls per sweep at most. */
const TASKS_PER_PURGE = 5_000
const PURGES_PER_SWEEP = 200

export async function sweep(signal: AbortSignal, d: SweepDeps): Promise<void> {
  const tickMs = Math.max(100, d.config.sweepIntervalSec * 1000)
  const taskRetentionMs = d.config.taskRetentionSec * 1000
  // Ended tasks are purged at least every quarter of their retention (a short retention is meant).
  const taskPurgeEveryMs = Math.min(PURGE_EVERY_MS, Math.max(tickMs, taskRetentionMs / 4))
  // The first journal and outbox purge comes at a random point of the first period, not at once: a
  // coordinator that starts has other work, and coordinators started together spread theirs.
  let lastPurge = d.clock.now() - Math.random() * PURGE_EVERY_MS
  let lastTaskPurge = 0
  let nextScan = 0
  // A coordinator that starts has just loaded its active tasks: that counts as a scan.
  let lastScan = d.clock.now()
  let lastFlushes = d.flushes()
  while (!signal.aborted) {
    try {
      await d.clock.sleep(tickMs, signal)
    } catch {
      return
    }
    try {
      const now = d.clock.now()
      if (now - lastPurge >= PURGE_EVERY_MS) {
        lastPurge = now
        const res = await d.store.purgeBefore(now - d.config.retentionSec * 1000)
        if (res.journal > 0 || res.outbox > 0 || res.workers > 0) d.log.info('coordinator.retention', { journal: res.journal, outbox: res.outbox, workers: res.workers })
      }
      if (taskRetentionMs > 0 && now - lastTaskPurge >= taskPurgeEveryMs) {
        lastTaskPurge = now
        await purgeEndedTasks(d, now - taskRetentionMs, signal)
      }
      const flushes = d.flushes()
      const busy = flushes !== lastFlushes
      lastFlushes = flushes
      const t0 = d.clock.now()
      if (t0 >= nextScan && (!busy || t0 - lastScan >= SCAN_DEFER_TICKS * tickMs)) {
        const ids = await d.store.listTaskIds(['queued'])
        const t1 = d.clock.now()
        lastScan = t1
        nextScan = t1 + (t1 - t0) / MAX_DUTY
        for (const id of ids) if (!d.known(id)) await d.adopt(id)
      }
    } catch (err) {
      // Tried again at the next tick: a brief store outage is a warning.
      d.log[failureLevel(err)]('coordinator.sweep_failed', { error: errorMessage(err) })
    }
  }
}

/** Deletes the tasks that ended before `cutoff`, a bounded number of store calls at a time. */
async function purgeEndedTasks(d: SweepDeps, cutoff: number, signal: AbortSignal): Promise<void> {
  let tasks = 0
  for (let i = 0; i < PURGES_PER_SWEEP && !signal.aborted; i++) {
    const ids = await d.store.purgeTasks(cutoff, TASKS_PER_PURGE)
    tasks += ids.length
    if (ids.length < TASKS_PER_PURGE) break
  }
  if (tasks > 0) d.log.info('coordinator.task_retention', { tasks, ended_before_ms: cutoff })
}
