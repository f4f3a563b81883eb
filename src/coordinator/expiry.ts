/**
 * Judging a lost lease before acting on it. A coordinator that falls behind (a backlog of status
 * records, a slow store) sees leases run out on its own clock while their holders' heartbeats and
 * TASK_DONE still wait in the status topic. So before a running node is declared lost:
 *   1. the status subscription of its type is drained: every record already in its partitions is
 *      applied (bounded: a bus that cannot drain does not keep a dead worker's node for ever), and
 *      so are the reports other coordinators read and forwarded, waiting in this coordinator's
 *      partitions of the owners' topic (after a rebalance an owners' partition can be seconds
 *      behind: a claimed attempt was handed back 0.34 s before its forwarded reports were applied);
 *   2. the node's complete artifact of this attempt is looked up: a worker that finished and whose
 *      report was lost has done the work, the node finishes from it;
 *   3. but when other coordinators hold some of the status partitions of its type, the reports may
 *      wait in a partition of one that died after reading them and before forwarding them: they
 *      are read again only once its session ends and the partition moves. Before finishing a node
 *      from its artifact (which would leave out the metrics of those reports), the judge waits
 *      until the node leaves `running` (the reports came) or for that hand-over: twice the bus's
 *      session timeout plus 5 s, then the backlog is drained once more.
 * The engine then looks at the node again: a report that arrived meanwhile renewed the lease.
 */
import type { CoordinatorConfig } from '../config.ts'
import { errorMessage } from '../errors.ts'
import type { Logger } from '../log.ts'
import type { Subscription } from '../ports/bus.ts'
import type { ArtifactDoc, Store } from '../ports/store.ts'
import { COORDINATOR_FN_TYPE } from '../graph/types.ts'
import { settledForCancel } from './recovery.ts'
import { waitUntil } from '../util/wait-until.ts'
import type { TaskRuntime } from './runtime.ts'

export interface JudgeDeps {
  config: CoordinatorConfig
  store: Store
  log: Logger
  /** The status subscription of a worker type (undefined when there is none yet). */
  statusSubscription(type: string): Subscription | undefined
  /** Resolves once the records now in this coordinator's owners' partitions are handled (forwarded reports). */
  forwarded?(): Promise<void>
  /**
   * How long to wait for reports of a node of `type` that another coordinator may hold (ms): 0
   * when this coordinator holds every status partition of the type, else handoverGraceMs.
   */
  handoverWaitMs(type: string): number
  /** The coordinator is stopping (a wait in progress ends). */
  stopped?(): boolean
}

/** How long a node finished from its artifact waits for reports a dead coordinator held (ms). */
export function handoverGraceMs(sessionTimeoutMs: number | undefined): number {
  return sessionTimeoutMs === undefined ? 0 : 2 * sessionTimeoutMs + 5_000
}

type DrainDeps = Pick<JudgeDeps, 'statusSubscription' | 'forwarded' | 'config' | 'log'>

/** Longest wait for the owners' partitions in a judgement (forwarded reports take well under a second). */
const FORWARDED_CAP_MS = 5_000

function sleepUnref(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref())
}

async function drain(d: DrainDeps, rt: TaskRuntime, type: string, nodeId: string): Promise<void> {
  const sub = d.statusSubscription(type)
  const waits: Promise<void>[] = []
  if (sub?.drained !== undefined) waits.push(sub.drained())
  // (At most FORWARDED_CAP_MS: the owners' partitions commit as their records' writes become
  // durable, and a recovering coordinator can hold them back far longer than reports take.)
  if (d.forwarded !== undefined) waits.push(Promise.race([d.forwarded(), sleepUnref(FORWARDED_CAP_MS)]))
  if (waits.length === 0) return
  const cap = drainCapMs(d.config)
  let timer: ReturnType<typeof setTimeout> | undefined
  const drained = await Promise.race([
    // (A bus that fails to tell is taken as drained: the judge goes on, as after the cap.)
    Promise.all(waits).then(
      () => true,
      () => true,
    ),
    new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), cap)
    }),
  ]).finally(() => clearTimeout(timer))
  if (!drained) d.log.warn('coordinator.status_backlog', { task_id: rt.id, node_id: nodeId, type, waited_ms: cap })
}

/**
 * Waits (bounded) until `rt`'s recovery is over and the status records already queued for its
 * running nodes' worker types are applied: a
 * decision such as a cancel must not overtake them (a node that ended while no coordinator ran
 * would be cancelled with part of its batches counted).
 */
export async function drainStatus(d: DrainDeps, rt: TaskRuntime): Promise<void> {
  await settledForCancel(rt)
  const types = new Set(rt.specs.filter((sp, i) => rt.node(i).status === 'running' && sp.type !== COORDINATOR_FN_TYPE).map((sp) => sp.type))
  await Promise.all([...types].map((type) => drain(d, rt, type, '')))
}

/** Longest wait for a status backlog to drain before a lease is judged anyway (real time). */
export function drainCapMs(config: CoordinatorConfig): number {
  return Math.max(5_000, config.leaseTtlSec * 1000)
}

export function leaseJudge(d: JudgeDeps): (rt: TaskRuntime, ord: number, epoch: number) => Promise<'check' | { complete: ArtifactDoc }> {
  return async (rt, ord, epoch) => {
    const spec = rt.spec(ord)
    // (A claimed attempt judged before it is handed back: its acceptance, arriving meanwhile, ends the wait.)
    const accepted = rt.node(ord).accepted_at_ms
    await drain(d, rt, spec.type, spec.node_id)
    try {
      const art = await d.store.getArtifact(rt.id, spec.node_id, null)
      if (art?.status === 'complete' && art.attempt_epoch >= epoch) {
        const grace = d.handoverWaitMs(spec.type)
        if (grace > 0) {
          const moved = (): boolean =>
            d.stopped?.() === true || rt.dropped || rt.terminal || rt.node(ord).status !== 'running' || rt.node(ord).attempt_epoch !== epoch || rt.node(ord).accepted_at_ms !== accepted
          d.log.info('coordinator.judge_waits_handover', { task_id: rt.id, node_id: spec.node_id, attempt_epoch: epoch, wait_ms: grace })
          await waitUntil(moved, grace)
          if (moved()) return 'check'
          await drain(d, rt, spec.type, spec.node_id)
        }
        return { complete: art }
      }
    } catch (err) {
      d.log.warn('coordinator.artifact_read_failed', { task_id: rt.id, node_id: spec.node_id, error: errorMessage(err) })
    }
    return 'check'
  }
}
