/**
 * `Coordinator.waitForTask`: resolves once the task is terminal *durably* (its terminal journal
 * entry is written), from memory when this coordinator holds the task, else from the store;
 * rejects with TIMEOUT after `timeoutMs`, and with CLOSED as soon as the coordinator stops (it
 * waited out its whole timeout before).
 */
import { ErrorCode, FlowkitError } from '../errors.ts'
import type { TaskDoc } from '../model/state.ts'
import type { TaskRuntime } from './runtime.ts'
import { TERMINAL_TASK } from './runtime.ts'
import { type TaskView, toTaskView } from './view.ts'

export interface WaitDeps {
  runtime(id: string): TaskRuntime | undefined
  stored(id: string): Promise<TaskDoc | null>
  /** Calls `fn` when the task's terminal state is durable; returns an unsubscribe function. */
  onTerminal(id: string, fn: () => void): () => void
  view(v: TaskView): TaskView
  /** Closed when the coordinator stops (or is killed): a wait then rejects with CLOSED. */
  closed?: Waiters
}

/**
 * The waits of one run of a coordinator, woken together when it stops: one abort listener per
 * run, not one per wait and poll (an EventTarget finds a listener to remove by walking its list:
 * thousands of concurrent waits, each adding and removing one every poll, made that quadratic).
 */
export class Waiters {
  closed = false
  readonly #wake = new Set<() => void>()
  add(fn: () => void): () => void {
    this.#wake.add(fn)
    return () => this.#wake.delete(fn)
  }
  close(): void {
    this.closed = true
    for (const fn of [...this.#wake]) fn()
    this.#wake.clear()
  }
}

const WAITERS = new WeakMap<AbortSignal, Waiters>()

/** The waiters closed when `stop` aborts; undefined when it already has (nothing to wait for). */
export function waitersOf(stop: AbortSignal): Waiters | undefined {
  if (stop.aborted) return undefined
  let w = WAITERS.get(stop)
  if (w === undefined) {
    const created = new Waiters()
    stop.addEventListener('abort', () => created.close(), { once: true })
    WAITERS.set(stop, created)
    w = created
  }
  return w
}

export async function waitForTask(d: WaitDeps, id: string, timeoutMs: number): Promise<TaskView> {
  if (typeof timeoutMs !== 'number' || Number.isNaN(timeoutMs)) {
    // (NaN made every poll a 1 ms timer, for ever.)
    throw new FlowkitError(ErrorCode.Config, `waitForTask: timeoutMs must be a number of milliseconds, got ${Number.isNaN(timeoutMs) ? 'NaN' : typeof timeoutMs}`)
  }
  const deadline = performance.now() + timeoutMs
  const closed = (): FlowkitError => new FlowkitError(ErrorCode.Closed, `the coordinator stopped while waiting for task ${id}`, { details: { task_id: id } })
  for (;;) {
    if (d.closed?.closed === true) throw closed()
    const rt = d.runtime(id)
    let status: string
    if (rt !== undefined) {
      // Terminal in memory and written: the journal entry that says so is durable.
      if (rt.doneDurable) return d.view(toTaskView(rt.toDoc('none')))
      status = rt.status
    } else {
      const t = await d.stored(id)
      if (t === null) throw new FlowkitError(ErrorCode.TaskNotFound, `task ${id} not found`)
      if (TERMINAL_TASK.has(t.status)) return d.view(toTaskView(t))
      status = t.status
    }
    const left = deadline - performance.now()
    if (left <= 0) {
      throw new FlowkitError(ErrorCode.Timeout, `task ${id} still ${status} after ${timeoutMs} ms`, { details: { task_id: id, status } })
    }
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer)
        stop()
        unwake?.()
        resolve()
      }
      // Another coordinator may own the task: poll as well as listen.
      const timer = setTimeout(done, Math.min(left, rt === undefined ? 250 : 1000))
      const stop = d.onTerminal(id, done)
      const unwake = d.closed?.add(done)
    })
  }
}
