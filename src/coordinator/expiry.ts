/**
 * Judging a lost lease before acting on it. A coordinator that falls behind (a backlog of status
 * records, a slow store) sees leases run out on its own clock while their holders' heartbeats and
 * TASK_DONE still wait in the status topic. So before a running node is declared lost:
 *   1. the status subscription of its type is drained: every record already in its partitions is
 *      applied (bounded: a bus that cannot drain does not keep a dead worker's node for ever);
 *   2. the node's complete artifact of this attempt is looked up: a worker that finished and whose
 *      report was lost has done the work, the node finishes from it.
 * The engine then looks at the node again: a report that arrived meanwhile renewed the lease.
 */
import type { CoordinatorConfig } from '../config.ts'
import { errorMessage } from '../errors.ts'
import type { Logger } from '../log.ts'
import type { Subscription } from '../ports/bus.ts'
import type { Store } from '../ports/store.ts'
import type { TaskRuntime } from './runtime.ts'

export interface JudgeDeps {
  config: CoordinatorConfig
  store: Store
  log: Logger
  /** The status subscription of a worker type (undefined when there is none yet). */
  statusSubscription(type: string): Subscription | undefined
}

/** Longest wait for a status backlog to drain before a lease is judged anyway (real time). */
export function drainCapMs(config: CoordinatorConfig): number {
  return Math.max(5_000, config.leaseTtlSec * 1000)
}

export function leaseJudge(d: JudgeDeps): (rt: TaskRuntime, ord: number, epoch: number) => Promise<'complete' | 'check'> {
  return async (rt, ord, epoch) => {
    const spec = rt.spec(ord)
    const sub = d.statusSubscription(spec.type)
    if (sub?.drained !== undefined) {
      const cap = drainCapMs(d.config)
      let timer: ReturnType<typeof setTimeout> | undefined
      const drained = await Promise.race([
        sub.drained().then(() => true),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(false), cap)
        }),
      ]).finally(() => clearTimeout(timer))
      if (!drained) d.log.warn('coordinator.status_backlog', { task_id: rt.id, node_id: spec.node_id, type: spec.type, waited_ms: cap })
    }
    try {
      const art = await d.store.getArtifact(rt.id, spec.node_id, null)
      if (art?.status === 'complete' && art.attempt_epoch >= epoch) return 'complete'
    } catch (err) {
      d.log.warn('coordinator.artifact_read_failed', { task_id: rt.id, node_id: spec.node_id, error: errorMessage(err) })
    }
    return 'check'
  }
}
