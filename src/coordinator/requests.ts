/**
 * Requests from other processes (the owners' topic, and the older control topic every coordinator
 * reads), applied by the owner of the task only.
 *
 * - `cancel`: acknowledged once the request is written into the task, applied after the task's
 *   queued events (cancel-request.ts). A coordinator that is not running (stopping, killed), or
 *   whose task moved meanwhile, does not acknowledge it: the bus delivers it again, to the owner.
 * - `adopt`: the task is loaded and claimed; one carried inline is checked as a submission first.
 */
import { ErrorCode, FlowkitError } from '../errors.ts'
import { acceptCancel, requestCancel } from './cancel-request.ts'
import type { ControlTarget } from './control.ts'
import { checkedInlineTask } from './handover.ts'
import type { TaskRuntime } from './runtime.ts'
import type { BuildTaskOptions } from './submit.ts'
import type { CoordinatorWiring } from './wiring.ts'

/**
 * The task's runtime, loaded if it is ours and active; null when it is not active; TASK_NOT_FOUND
 * when unknown. `loaded`: see OwnedTasks.adopt.
 */
export async function heldTask(p: CoordinatorWiring, id: string, loaded?: (rt: TaskRuntime) => void): Promise<TaskRuntime | null> {
  const rt = p.engine.tasks.get(id) ?? (await p.tasks.adopt(id, undefined, loaded))
  if (rt !== null) return rt
  const t = await p.store.getTask(id)
  if (t === null) throw new FlowkitError(ErrorCode.TaskNotFound, `task ${id} not found`)
  return null
}

/**
 * `Coordinator.cancelTask` of a task this coordinator owns: true once it is cancelling or
 * cancelled and that is durable; false when it had ended or stops for another reason (it ends
 * failed); 'moved' when it left this coordinator meanwhile (ask again). Written into the task at
 * once (before its scheduling resumes, when this loads it); applied once the status records
 * already queued for its running nodes are (a node may have ended while no coordinator ran): the
 * cancel then stops what is really left (cancel-request.ts). A coordinator stopped or killed
 * meanwhile says the cancel may not be recorded (false would read as "the task had ended"; after
 * a kill it is not, after a stop its last flush may have written it).
 */
export async function cancelOwned(p: CoordinatorWiring, id: string, reason: string, started: () => boolean): Promise<boolean | 'moved'> {
  const stopped = (): FlowkitError => new FlowkitError(ErrorCode.Closed, `cancelTask: the coordinator stopped before the cancel of task ${id} was applied, and it may not be recorded: ask a running coordinator (asking again is harmless)`)
  let applying: Promise<boolean> | false | undefined
  const rt = await heldTask(p, id, (loaded) => {
    applying = requestCancel(p.cancels, loaded, reason)
  })
  if (!started()) throw stopped() // its tasks were let go
  if (rt === null) return false
  applying ??= requestCancel(p.cancels, rt, reason)
  if (applying === false) return false
  const applied = await applying
  if (!started()) throw stopped()
  if (p.engine.tasks.get(id) !== rt && !rt.terminal) return 'moved'
  await p.flusher.barrier()
  return applied
}

/** Loads a task another process wrote, if it is ours, active and not held yet. */
export async function adoptOwned(p: CoordinatorWiring, id: string): Promise<boolean> {
  if (p.engine.tasks.has(id) || !p.ownership.owns(id)) return false
  return (await p.tasks.adopt(id)) !== null
}

/** The requests' target; `wiring` is read at each request (the parts are wired after this is made). */
export function ownerRequests(wiring: () => CoordinatorWiring, started: () => boolean, buildOptions: () => BuildTaskOptions): ControlTarget {
  return {
    cancelTask: async (id, o) => {
      const p = wiring()
      const again = (why: string): FlowkitError => new FlowkitError(ErrorCode.Closed, `${why}: the cancel request of task ${id} is delivered again`)
      if (!started()) throw again('the coordinator is not running')
      if (!p.ownership.owns(id)) return false
      const reason = o.reason ?? 'cancelled by request'
      // Loaded for this cancel: recorded before its scheduling resumes (nothing of it starts).
      const rt = await heldTask(p, id, (loaded) => void requestCancel(p.cancels, loaded, reason))
      if (!started()) throw again('the coordinator stopped')
      if (rt === null && !p.ownership.owns(id)) throw again('the task moved to another coordinator')
      return rt === null ? false : acceptCancel(p.cancels, rt, reason)
    },
    adoptTask: (id, task) => {
      const p = wiring()
      // Not ours: nothing to check (adopt would refuse it anyway).
      if (!p.ownership.owns(id)) return Promise.resolve(false)
      const checked = task === undefined ? undefined : checkedInlineTask(task, id, buildOptions())
      if (checked === undefined || 'error' in checked) {
        if (checked !== undefined) p.log.warn('control.inline_task_refused', { task_id: id, error: checked.error })
        return adoptOwned(p, id)
      }
      return p.tasks.adopt(id, checked.doc).then((rt) => rt !== null)
    },
  }
}
