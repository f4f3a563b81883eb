/**
 * Following a task from another process: `Coordinator.watch` only serves the process that runs the
 * coordinator, so `status --watch` and `submit --watch` poll the store (`getTask`: the snapshot
 * with its journal applied, i.e. every durable transition) and turn the differences into the same
 * events `watch` yields — a `snapshot` first, then `node` and `task` events — until the task ends.
 * `pollTask` is the loop itself; `followStore` feeds it to a progress display, and the dashboard of
 * `flowkit ui` (remote.ts) serves it as `Coordinator.watch`.
 */
import type { TaskEvent } from '../coordinator/watch.ts'
import { type NodeView, type TaskView, toTaskView } from '../coordinator/view.ts'
import { FlowkitError } from '../errors.ts'
import type { Store } from '../ports/store.ts'
import { CliError, EXIT, firstLine } from './errors.ts'
import { type Progress, isTerminal } from './progress.ts'

export interface FollowOptions {
  /** Poll period (default 500 ms). */
  intervalMs?: number
  signal?: AbortSignal
  /** Called once when the task is still queued, untouched, this long after following began. */
  stillQueued?: { afterMs: number; notify: () => void }
  /** Store errors tolerated in a row for this long before giving up (default 60 s). */
  outageMs?: number
  note?: (text: string) => void
}

function nodeKey(n: NodeView): string {
  return JSON.stringify([n.status, n.attempt_epoch, n.stats, n.last_error, n.lease.worker_id ?? null, n.batches_seen ?? null])
}

/** The events between two views of one task, as Coordinator.watch would give them. */
export function diffEvents(prev: TaskView, next: TaskView, at: number): TaskEvent[] {
  const out: TaskEvent[] = []
  const before = new Map(prev.nodes.map((n) => [n.node_id, nodeKey(n)]))
  for (const n of next.nodes) {
    if (before.get(n.node_id) === nodeKey(n)) continue
    out.push({
      type: 'node',
      task_id: next.id,
      at_ms: at,
      node_id: n.node_id,
      status: n.status,
      attempt_epoch: n.attempt_epoch,
      stats: n.stats,
      last_error: n.last_error,
      worker_id: n.lease.worker_id ?? null,
    })
  }
  if (prev.status !== next.status) out.push({ type: 'task', task_id: next.id, at_ms: at, status: next.status, error: next.error })
  else if (!prev.cancelled && next.cancelled) out.push({ type: 'cancel_requested', task_id: next.id, at_ms: at, reason: next.cancel_reason })
  return out
}

/** A read that took d is followed by at least READ_REST × d of rest. */
const READ_REST = 3

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    signal?.addEventListener('abort', done, { once: true })
  })
}

function interrupted(): CliError {
  return new CliError(EXIT.interrupted, 'interrupted: stopped following the task (it goes on running)')
}

export interface PollOptions {
  /**
   * Poll period (default 500 ms); after a read that took d, the next comes 3 d later at the
   * earliest (a big task on a slow server is not read back to back by each follower).
   */
  intervalMs?: number
  /** The time and the wait between reads (tests). */
  clock?: { now(): number; sleep(ms: number, signal?: AbortSignal): Promise<void> }
  signal?: AbortSignal
  /** Store errors tolerated in a row for this long before giving up (default 60 s). */
  outageMs?: number
  note?: (text: string) => void
  /** The error thrown when the task is not in the store. */
  notFound: (taskId: string) => Error
}

/** One read of the task: its view, and the events since the previous read (a snapshot first). */
export interface TaskPoll {
  view: TaskView
  events: TaskEvent[]
  at_ms: number
}

/**
 * Reads the task from the store every `intervalMs` and yields what changed, until it ends (the
 * terminal read is yielded, then the iteration ends) or `signal` aborts (it ends without error).
 * Retryable store errors are tolerated for `outageMs`.
 */
export async function* pollTask(store: Store, taskId: string, options: PollOptions): AsyncGenerator<TaskPoll, void, undefined> {
  const interval = options.intervalMs ?? 500
  const clock = options.clock ?? { now: Date.now, sleep }
  const outageMs = options.outageMs ?? 60_000
  let failingSince: number | null = null
  let prev: TaskView | null = null
  for (;;) {
    if (options.signal?.aborted) return
    let view: TaskView | null = null
    const readAt = clock.now()
    let took = 0
    try {
      const doc = await store.getTask(taskId)
      took = clock.now() - readAt
      if (doc === null) throw options.notFound(taskId)
      view = toTaskView(doc)
      if (failingSince !== null) options.note?.('store reachable again')
      failingSince = null
    } catch (err) {
      if (!(err instanceof FlowkitError && err.retryable)) throw err
      const now = clock.now()
      if (failingSince === null) {
        failingSince = now
        options.note?.(`store unavailable, retrying: ${firstLine(err.message)}`)
      } else if (now - failingSince > outageMs) {
        throw err
      }
    }
    if (view !== null) {
      const now = clock.now()
      const events: TaskEvent[] = prev === null ? [{ type: 'snapshot', task_id: taskId, at_ms: now, task: view }] : diffEvents(prev, view, now)
      prev = view
      yield { view, events, at_ms: now }
      if (isTerminal(view.status)) return
    }
    await clock.sleep(Math.max(interval, READ_REST * took), options.signal)
  }
}

/** Follows the task until it ends; returns its final view. Unknown task: exit 4. */
export async function followStore(store: Store, taskId: string, progress: Progress, options: FollowOptions = {}): Promise<TaskView> {
  const began = Date.now()
  let warnedQueued = false
  const polls = pollTask(store, taskId, {
    ...(options.intervalMs === undefined ? {} : { intervalMs: options.intervalMs }),
    ...(options.signal === undefined ? {} : { signal: options.signal }),
    ...(options.outageMs === undefined ? {} : { outageMs: options.outageMs }),
    ...(options.note === undefined ? {} : { note: options.note }),
    notFound: (id) => new CliError(EXIT.notFound, `task ${id} not found`, { hint: 'list tasks with `flowkit ls --status all`' }),
  })
  for await (const { view, events, at_ms: now } of polls) {
    for (const e of events) progress.event(e)
    if (isTerminal(view.status)) {
      progress.end(view)
      return view
    }
    progress.view(view)
    const q = options.stillQueued
    if (q !== undefined && !warnedQueued && now - began >= q.afterMs && view.status === 'queued' && view.nodes.every((n) => n.status === 'queued' && n.attempt_epoch === 0)) {
      warnedQueued = true
      q.notify()
    }
  }
  throw interrupted()
}
