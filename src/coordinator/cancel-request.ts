/**
 * A cancel in two steps: **requested** (durable at once) and **applied** (once the events already
 * queued for the task are in).
 *
 * A cancel must not overtake the status records queued for the task's running nodes (a node that
 * ended while no coordinator ran would be cancelled with part of its batches counted), so it waits
 * for the task's recovery — or only until every inherited running node has ended or been answered
 * for by its worker (recovery.ts settledForCancel) — and for the status backlog of its worker
 * types (drainStatus, bounded).
 * That wait must not hold the partition of the owners' topic the request came from: the records
 * queued behind it — forwarded reports of other tasks, among them the ones that task's recovery
 * waits for — would wait too (a task finished from its artifact without its last reports).
 *
 * So a request is first written into the task (`coordinator.cancelled`, the reason; one journal
 * entry with the next flush) and the request is acknowledged once that write is durable; the
 * cancel itself (engine.cancel) follows when the queued events are applied. From the request on,
 * no node of the task is dispatched. A coordinator that loads a task whose cancel was requested
 * but not applied (a crash, a hand-over in between) applies it after its own recovery (resume).
 */
import { ErrorCode, FlowkitError } from '../errors.ts'
import { type Logger, errorForNode } from '../log.ts'
import type { Engine } from './engine.ts'
import type { TaskRuntime } from './runtime.ts'

export interface CancelDeps {
  engine: Engine
  log: Logger
  /** Marks the runtime for the next flush. */
  mark(rt: TaskRuntime): void
  /** Resolves once everything applied so far is durable. */
  barrier(): Promise<void>
  /** Resolves once the task's recovery is over and its queued status records are applied (bounded). */
  drain(rt: TaskRuntime): Promise<void>
}

/** Cancels being applied, by runtime (one per runtime). */
const APPLYING = new WeakMap<TaskRuntime, Promise<boolean>>()

/** Whether the task's cancel was requested and not applied yet. */
export function cancelPending(rt: TaskRuntime): boolean {
  return rt.cancelled && rt.status !== 'cancelling' && !rt.terminal
}

/**
 * Records the cancel on the task (written with the next flush) and starts applying it once the
 * queued events are in. Returns the application: true once the cancel is applied, false when the
 * task ended otherwise or left this coordinator first. False at once when the task has ended.
 */
export function requestCancel(d: CancelDeps, rt: TaskRuntime, reason: string): Promise<boolean> | false {
  if (rt.terminal) return false
  // Stopping already: by a cancel (true), or because a node failed or a deadline passed (false:
  // the task ends failed, this cancel changes nothing).
  if (rt.status === 'cancelling') return Promise.resolve(endsCancelled(rt))
  if (!rt.cancelled) {
    // Free text from whoever cancels (the CLI, the dashboard, the API): kept masked and bounded,
    // as an error is (it is shown by getTask, the CLI and the dashboard).
    const shown = errorForNode(reason)
    rt.change({ cancelled: true, cancel_reason: shown })
    rt.events.push(`task cancel requested: ${shown}`)
    d.log.info('task.cancel_requested', { task_id: rt.id, reason: shown })
    d.mark(rt)
  }
  return applyLater(d, rt)
}

/** The task is stopping or stopped as cancelled (a stop that ends it failed has its error). */
function endsCancelled(rt: TaskRuntime): boolean {
  return (rt.status === 'cancelling' && rt.error === null) || rt.status === 'cancelled'
}

/** Applies a requested cancel once the task's queued events are in (started once per runtime); true when applied. */
export function applyLater(d: CancelDeps, rt: TaskRuntime): Promise<boolean> {
  let p = APPLYING.get(rt)
  if (p === undefined) {
    p = d
      .drain(rt)
      .catch(() => undefined)
      .then(() => {
        if (d.engine.tasks.get(rt.id) === rt && cancelPending(rt)) d.engine.cancel(rt, rt.cancelReason ?? 'cancelled', 'cancelled')
        // Applied here, or earlier by a deadline or failure that came meanwhile (engine.cancel
        // keeps the requested outcome); not when the task ended first or left this coordinator.
        return endsCancelled(rt)
      })
    APPLYING.set(rt, p)
  }
  return p
}

/**
 * A cancel request from another process (owners' topic, control topic): resolves once the request
 * is durable in the task; true when it was recorded for an active task. Throws a retryable error
 * when the task left this coordinator before the write covered it (the bus delivers the request
 * again; once the partition moved, to the new owner).
 */
export async function acceptCancel(d: CancelDeps, rt: TaskRuntime, reason: string): Promise<boolean> {
  const applying = requestCancel(d, rt, reason)
  if (applying === false) return false
  await d.barrier()
  // Out of memory because it ended (the cancel applied at once, or the task ended meanwhile): its
  // end is written. Out of memory otherwise: it moved, and this write may not have landed.
  if (rt.fenced || (d.engine.tasks.get(rt.id) !== rt && !rt.terminal)) {
    throw new FlowkitError(ErrorCode.StoreUnavailable, `task ${rt.id} moved to another coordinator before its cancel was written; the request is delivered again`, { retryable: true })
  }
  return true
}
