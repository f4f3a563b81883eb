/**
 * When did each task reach a terminal status? Listens on the `flowkit:events` diagnostics channel
 * (public API: `task.finished` / `task.failed` / `task.cancelled` with their task_id), so no store
 * read is added to the run. As a fallback (events renamed, a task missed), the outstanding ids
 * are polled through `coordinator.getTask` every `pollMs` as the observer (not charged to the
 * engine's counts); a task found terminal that way is timed at the poll.
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { EVENTS_CHANNEL, type Coordinator, type FlowkitEventMessage, type TaskView } from 'flowkit'
import { asObserver } from './counting.ts'

const TERMINAL_EVENTS = new Set(['task.finished', 'task.failed', 'task.cancelled'])
const TERMINAL_STATUSES = new Set(['finished', 'failed', 'cancelled'])

export class TerminalTracker {
  /** task id → performance.now() when it was seen terminal. */
  readonly at = new Map<string, number>()
  polled = 0
  /** Leases declared lost during the run (lease expiry or heartbeat hard limit): should stay 0. */
  leaseExpiries = 0
  readonly #listener = (m: unknown): void => {
    // `fields` are redacted when first read: read them only for the events that need them.
    const event = (m as FlowkitEventMessage).event
    if (event === 'node.lease_expired' || event === 'node.heartbeat_lost') this.leaseExpiries++
    if (!TERMINAL_EVENTS.has(event)) return
    const id = ((m as FlowkitEventMessage).fields as { task_id?: unknown }).task_id
    if (typeof id === 'string' && !this.at.has(id)) {
      this.at.set(id, performance.now())
      if (this.#pending.delete(id) && this.#pending.size === 0) this.#wake?.()
    }
  }
  #wake: (() => void) | null = null
  #pending = new Set<string>()

  constructor() {
    subscribe(EVENTS_CHANNEL, this.#listener)
  }

  close(): void {
    unsubscribe(EVENTS_CHANNEL, this.#listener)
  }

  /** Waits until every id is terminal; returns their final views (read once, as the observer). */
  async waitAll(c: Coordinator, ids: string[], options: { timeoutMs: number; pollMs?: number }): Promise<TaskView[]> {
    const pollMs = options.pollMs ?? 2000
    const deadline = performance.now() + options.timeoutMs
    let nextPoll = performance.now() + pollMs
    this.#pending = new Set(ids.filter((id) => !this.at.has(id)))
    for (;;) {
      if (this.#pending.size === 0) break
      const left = [...this.#pending]
      const now = performance.now()
      if (now > deadline) throw new Error(`${left.length} of ${ids.length} tasks not terminal after ${options.timeoutMs} ms`)
      if (now >= nextPoll) {
        await asObserver(async () => {
          for (const id of left) {
            const t = await c.getTask(id)
            if (t !== null && TERMINAL_STATUSES.has(t.status) && !this.at.has(id)) {
              this.at.set(id, performance.now())
              this.#pending.delete(id)
              this.polled++
            }
          }
        })
        nextPoll = performance.now() + pollMs
        continue
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, Math.min(nextPoll, deadline) - now)
        function done(): void {
          clearTimeout(timer)
          resolve()
        }
        this.#wake = done
      })
      this.#wake = null
    }
    return asObserver(async () => {
      const views: TaskView[] = []
      for (const id of ids) {
        const t = await c.getTask(id)
        if (t === null) throw new Error(`task ${id} vanished`)
        views.push(t)
      }
      return views
    })
  }
}
