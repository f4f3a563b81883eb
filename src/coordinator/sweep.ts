/**
 * The coordinator's slow sweep: retention (the application purges old journal entries and sent
 * outbox rows: no TTL indexes on every server), and tasks that appeared in the store without this
 * coordinator (written by another process) are adopted, from a projected read of ids. Deadlines
 * are not swept: they live in the timer heap.
 */
import type { CoordinatorConfig } from '../config.ts'
import { errorMessage } from '../errors.ts'
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
  adopt: (taskId: string) => Promise<unknown>
}

export async function sweep(signal: AbortSignal, d: SweepDeps): Promise<void> {
  const tickMs = Math.max(100, d.config.sweepIntervalSec * 1000)
  let lastPurge = 0
  while (!signal.aborted) {
    try {
      await d.clock.sleep(tickMs, signal)
    } catch {
      return
    }
    try {
      const now = d.clock.now()
      if (now - lastPurge >= 600_000) {
        lastPurge = now
        const res = await d.store.purgeBefore(now - d.config.retentionSec * 1000)
        if (res.journal > 0 || res.outbox > 0) d.log.info('coordinator.retention', res)
      }
      const ids = await d.store.listTaskIds(['queued'])
      for (const id of ids) if (!d.known(id)) await d.adopt(id)
    } catch (err) {
      d.log.error('coordinator.sweep_failed', { error: errorMessage(err) })
    }
  }
}
