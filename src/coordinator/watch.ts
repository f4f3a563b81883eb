/**
 * Task events: what changed in a task, once it is durable. Every journal entry the coordinator
 * writes becomes events — one per node whose state changed, one when the task's status changed —
 * delivered to `Coordinator.watch(taskId)` iterators and published on the
 * `flowkit:task-events` diagnostics channel (only when someone subscribes).
 */
import { channel } from 'node:diagnostics_channel'
import type { JournalEntry } from '../model/journal.ts'
import type { NodeError, NodeStatus, TaskStatus } from '../model/state.ts'
import type { TaskView } from './view.ts'
import type { Store } from '../ports/store.ts'

/** Name of the diagnostics channel every task event is published on. */
export const TASK_EVENTS_CHANNEL = 'flowkit:task-events'
const published = channel(TASK_EVENTS_CHANNEL)

export type TaskEvent =
  /** The task as it is when the watch starts (always first). */
  | { type: 'snapshot'; task_id: string; at_ms: number; task: TaskView }
  | {
      type: 'node'
      task_id: string
      at_ms: number
      node_id: string
      status: NodeStatus
      attempt_epoch: number
      stats: Record<string, unknown>
      last_error: NodeError | null
      worker_id: string | null
    }
  | { type: 'task'; task_id: string; at_ms: number; status: TaskStatus; error: string | null }
  /**
   * A cancel was recorded for the task: nothing new starts; it applies (a `task` event
   * `cancelling`) once the reports already queued for the task are applied.
   */
  | { type: 'cancel_requested'; task_id: string; at_ms: number; reason: string | null }

const TERMINAL: ReadonlySet<string> = new Set(['finished', 'failed', 'cancelled'])

export function isFinalEvent(e: TaskEvent): boolean {
  return (e.type === 'task' && TERMINAL.has(e.status)) || (e.type === 'snapshot' && TERMINAL.has(e.task.status))
}

/** The events of one durable journal entry. */
export function eventsOf(entry: JournalEntry): TaskEvent[] {
  const out: TaskEvent[] = []
  for (const n of entry.nodes) {
    out.push({
      type: 'node',
      task_id: entry.task_id,
      at_ms: entry.at_ms,
      node_id: n.node_id,
      status: n.status,
      attempt_epoch: n.attempt_epoch,
      stats: n.stats,
      last_error: n.last_error,
      worker_id: n.lease.worker_id ?? null,
    })
  }
  const status = entry.task?.status
  if (status !== undefined) out.push({ type: 'task', task_id: entry.task_id, at_ms: entry.at_ms, status, error: entry.task?.error ?? null })
  else if (entry.task?.cancelled === true) out.push({ type: 'cancel_requested', task_id: entry.task_id, at_ms: entry.at_ms, reason: entry.task.cancel_reason ?? null })
  return out
}

interface Watcher {
  /** `fed`: read from the store (another coordinator's entry, already after the snapshot). */
  push(e: TaskEvent, fed?: boolean): void
  /** The coordinator stops: the watch ends with `err` after the events it already has. */
  close(err: Error): void
}

/** The live watchers, by task. */
export class Watchers {
  readonly #byTask = new Map<string, Set<Watcher>>()
  /** Per watched task: the seq of the last entry its watchers were given (entries are not given twice). */
  readonly #last = new Map<string, number>()
  /** Per watched task that left this coordinator: the journal poll that follows it. */
  readonly #following = new Map<string, AbortController>()

  /** An entry became durable: its events go to the task's watchers and the channel. */
  observe(entry: JournalEntry): void {
    const ws = this.#byTask.get(entry.task_id)
    if (ws === undefined && !published.hasSubscribers) return
    if (ws !== undefined) {
      // Written here: the task is this coordinator's (again), no need to follow it in the store.
      this.#following.get(entry.task_id)?.abort()
      this.#last.set(entry.task_id, Math.max(entry.seq, this.#last.get(entry.task_id) ?? 0))
    }
    for (const e of eventsOf(entry)) {
      if (published.hasSubscribers) published.publish(e)
      if (ws !== undefined) for (const w of ws) w.push(e)
    }
  }

  /** Entries read from the store (a task another coordinator owns): to this task's watchers only. */
  feed(entry: JournalEntry): void {
    const ws = this.#byTask.get(entry.task_id)
    if (ws === undefined || entry.seq <= (this.#last.get(entry.task_id) ?? 0)) return
    this.#last.set(entry.task_id, entry.seq)
    for (const e of eventsOf(entry)) for (const w of ws) w.push(e, true)
  }

  /** Ends every watch with `err` (the coordinator stops; a watch would otherwise wait for ever). */
  close(err: Error): void {
    for (const set of this.#byTask.values()) for (const w of set) w.close(err)
  }

  /**
   * A watched task left this coordinator (its partition moved, or another coordinator wrote it):
   * its watchers follow it in the store's journal from `afterSeq` (the last entry written here)
   * until they end, the task is written here again, or `stop` (the coordinator stops).
   */
  handedOver(taskId: string, afterSeq: number, store: Pick<Store, 'readJournal'>, stop: AbortSignal): void {
    if (stop.aborted || !this.#byTask.has(taskId) || this.#following.has(taskId)) return
    const follow = new AbortController()
    this.#following.set(taskId, follow)
    // The coordinator's stop ends the poll too (its store may close).
    const onStop = (): void => follow.abort()
    stop.addEventListener('abort', onStop, { once: true })
    void pollJournal(this, store, taskId, afterSeq, follow.signal).finally(() => {
      stop.removeEventListener('abort', onStop)
      if (this.#following.get(taskId) === follow) this.#following.delete(taskId)
    })
  }

  /**
   * Follows a task: `start` gives the first event (a snapshot) once the watcher is registered, so
   * nothing durable after it is missed. Ends after the task's terminal event, or on `signal`;
   * throws the error given to close() when the coordinator stops first.
   */
  async *watch(taskId: string, start: () => Promise<TaskEvent>, signal?: AbortSignal): AsyncGenerator<TaskEvent> {
    const queue: Array<[TaskEvent, boolean]> = []
    let wake: (() => void) | null = null
    let closedWith: Error | null = null
    const w: Watcher = {
      push(e, fed = false) {
        queue.push([e, fed])
        wake?.()
      },
      close(err) {
        closedWith ??= err
        wake?.()
      },
    }
    let set = this.#byTask.get(taskId)
    if (set === undefined) {
      set = new Set()
      this.#byTask.set(taskId, set)
    }
    set.add(w)
    const onAbort = (): void => wake?.()
    signal?.addEventListener('abort', onAbort, { once: true })
    try {
      const first = await start()
      yield first
      if (isFinalEvent(first)) return
      // Events that were already in the snapshot (written before it was taken) are skipped.
      const since = first.at_ms
      for (;;) {
        while (queue.length > 0) {
          const [e, fed] = queue.shift() as [TaskEvent, boolean]
          if (e.at_ms < since && !fed) continue
          yield e
          if (isFinalEvent(e)) return
        }
        if (signal?.aborted) return
        if (closedWith !== null) throw closedWith
        await new Promise<void>((resolve) => {
          wake = resolve
        })
        wake = null
      }
    } finally {
      signal?.removeEventListener('abort', onAbort)
      set.delete(w)
      if (set.size === 0) {
        this.#byTask.delete(taskId)
        this.#last.delete(taskId)
        this.#following.get(taskId)?.abort()
      }
    }
  }
}

/**
 * Feeds the watchers of a task another coordinator owns from the store's journal: entries after
 * `afterSeq`, read every `everyMs` until `stop` aborts.
 */
export async function pollJournal(watchers: Watchers, store: Pick<Store, 'readJournal'>, taskId: string, afterSeq: number, stop: AbortSignal, everyMs = 250): Promise<void> {
  let after = afterSeq
  while (!stop.aborted) {
    // One listener per tick, removed when the tick ends (a long watch does not pile them up).
    await new Promise<void>((resolve) => {
      const onAbort = (): void => {
        clearTimeout(t)
        resolve()
      }
      const t = setTimeout(() => {
        stop.removeEventListener('abort', onAbort)
        resolve()
      }, everyMs)
      stop.addEventListener('abort', onAbort, { once: true })
    })
    if (stop.aborted) return
    try {
      const entries = await store.readJournal([taskId], after)
      for (const e of entries) {
        if (e.seq <= after) continue
        after = e.seq
        watchers.feed(e)
      }
    } catch {
      // A store error: read again at the next tick.
    }
  }
}

/** Watches a task another coordinator owns: its journal is read from the store. */
export async function* watchRemote(watchers: Watchers, store: Pick<Store, 'readJournal'>, taskId: string, snapshot: () => Promise<TaskEvent>, signal?: AbortSignal): AsyncGenerator<TaskEvent> {
  const stop = new AbortController()
  const onAbort = (): void => stop.abort()
  signal?.addEventListener('abort', onAbort, { once: true })
  try {
    const start = async (): Promise<TaskEvent> => {
      const seen = await store.readJournal([taskId])
      const after = seen.reduce((m, e) => Math.max(m, e.seq), 0)
      const first = await snapshot()
      void pollJournal(watchers, store, taskId, after, stop.signal)
      return first
    }
    yield* watchers.watch(taskId, start, stop.signal)
  } finally {
    signal?.removeEventListener('abort', onAbort)
    stop.abort()
  }
}
