/**
 * What the worker's modules share (internal): configuration, ports, the runs in progress, the
 * status emitter and the run-state saver. `Worker` (worker.ts) builds one and hands it to the
 * command intake (intake.ts), the run manager (runs.ts) and discovery/signals (discovery.ts).
 */
import type { WorkerConfig } from '../config.ts'
import type { Logger } from '../log.ts'
import type { Bus } from '../ports/bus.ts'
import type { Clock } from '../ports/clock.ts'
import type { Store } from '../ports/store.ts'
import { assertNodeId } from '../ports/store-rules.ts'
import { TASK_ID_PATTERN } from '../graph/types.ts'
import type { RoleHandler, RunInfo } from './handler.ts'
import type { HeartbeatTicker } from './heartbeats.ts'
import type { WorkerStateSaver } from './state.ts'
import type { StatusEmitter } from './status-emitter.ts'
import type { RunObservation } from '../observability/worker.ts'
import type { RecentSet } from '../util/recent.ts'

export interface ActiveRun {
  info: RunInfo
  abort: AbortController
  cancelReason: string | null
  started: number
  batches: number
  done: Promise<void>
  /** TASK_ACCEPTED went out: the coordinator knows a lease. */
  accepted: boolean
  /** The slot was given back (run ended, or its cancel grace expired). */
  released: boolean
  /** Resolves when the slot is given back. */
  freed: Promise<void>
  free: () => void
  seenKey: string
  /** Headers of the TASK_START record that started it, as they came (its trace context). */
  startHeaders: Readonly<Record<string, string>> | undefined
  /** Its span and metrics (observability/worker.ts observeRun), once the run started. */
  obs?: RunObservation | null
  /** Stops its heartbeats (HeartbeatTicker.add), once they started: its slot given back ends them too. */
  stopHeartbeats?: () => Promise<void> | null
  /** Runs the cleanups the handler registered (`ctx.onCleanup`), once, once the run started. */
  cleanup?: () => Promise<void>
}

export interface WorkerCore {
  readonly config: WorkerConfig
  readonly workerId: string
  /**
   * This process's instance of the worker id (a restart with the same id is another, newer
   * instance): `<start stamp>-<random>`, ordered by start (instance.ts).
   */
  readonly instanceId: string
  /**
   * Attempts (task:node:epoch) the previous process with this worker id held when it died: a
   * START of one redelivered to this process is handed back, never run again at that epoch.
   */
  restored: Set<string>
  /**
   * Attempts (task:node:epoch) a CANCEL named while this process did not run them: one whose START
   * comes after (a claim still being written, the START behind in its partition) is not run, its
   * cancel confirmed instead. Bounded: the oldest are forgotten.
   */
  readonly cancelledEarly: RecentSet<string>
  readonly bus: Bus
  readonly store: Store
  readonly clock: Clock
  readonly log: Logger
  readonly handlers: Record<string, RoleHandler>
  readonly roles: string[]
  /** Runs in progress, by messageKey(task_id, node_id). */
  readonly runs: Map<string, ActiveRun>
  /** Sends status events in batches; replaced on each start (a kill closes it). */
  status: StatusEmitter
  /** Persists the run state in the background. */
  readonly state: WorkerStateSaver
  /** Sends the heartbeats of the accepted runs (one timer for all). */
  readonly heartbeats: HeartbeatTicker
  /** Set by kill(): behave as a crashed process (persist nothing more, report nothing). */
  killed: boolean
  stopping: boolean
}

export function isObj(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

/** An attempt's key in the worker's memories (seen starts, restored runs, early cancels): `task:node:epoch`. */
export function attemptKey(taskId: string, nodeId: string, epoch: number): string {
  return `${taskId}:${nodeId}:${epoch}`
}

/** The ids every run log line carries. */
export function runIds(info: RunInfo): { task_id: string; node_id: string; attempt_epoch: number } {
  return { task_id: info.taskId, node_id: info.nodeId, attempt_epoch: info.attemptEpoch }
}


/**
 * Why the ids of an envelope addressed to this worker cannot be used (they build store keys, log
 * fields and keys of the runs map), or null when they can: the task id must be one a coordinator
 * accepts at submission, the node id one the store accepts (assertNodeId, the graph's rule).
 */
export function invalidIds(env: { task_id: string; node_id: string }): string | null {
  const problems: string[] = []
  if (!TASK_ID_PATTERN.test(env.task_id)) problems.push(`task_id ${JSON.stringify(env.task_id.slice(0, 100))} does not match ${TASK_ID_PATTERN.source}`)
  try {
    assertNodeId(env.node_id)
  } catch (err) {
    problems.push(err instanceof Error ? err.message : String(err))
  }
  return problems.length === 0 ? null : problems.join('; ')
}
