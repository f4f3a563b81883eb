/**
 * The dashboard's task list: a compact summary per task (id, status, times, node types, node
 * counts), kept in memory so filtering, counting and paging 10,000 tasks takes a single pass
 * over small objects instead of loading every task document per request.
 *
 * Built on existing Store verbs only:
 * - `listTaskStatuses` (ids and statuses only, from the snapshots: one read) finds new tasks and
 *   their status; it runs at most every `refreshMs` (the store resting 3 times as long as that
 *   read took), only when someone asks (a page, a live stream); a request waits for the first
 *   load, and at most `waitMs` for a later one (then answers from what is held);
 * - a task's immutable fields (created_at_ms, node types, node count) are read once per task: one
 *   `listTasks()` when many are new (the first load), `getTask` per task otherwise;
 * - the `flowkit:task-events` diagnostics channel keeps statuses current between refreshes for
 *   the tasks this process's coordinator runs (a snapshot status can lag behind the journal).
 * A task's status only moves forward (queued → running → cancelling → terminal), so whichever
 * source is ahead wins. A task listed under no status is read once more: when the store no longer
 * has it (retention deleted it), its summary is dropped.
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { TASK_EVENTS_CHANNEL, type TaskEvent } from '../coordinator/watch.ts'
import type { TaskView } from '../coordinator/view.ts'
import type { Store, TaskDoc, TaskStatus } from '../ports/store.ts'
import { HttpError } from './http.ts'
import { TASK_STATUSES, type TaskPage, type TaskQuery, type TaskSummary, eachLimited, emptyCounts, newerThan, summaryOf } from './task-summary.ts'

export { TASK_STATUSES, type TaskCursor, type TaskPage, type TaskQuery, type TaskSummary, summaryOf } from './task-summary.ts'

const TERMINAL: ReadonlySet<string> = new Set(['finished', 'failed', 'cancelled'])
const RANK: Record<TaskStatus, number> = { queued: 0, running: 1, cancelling: 2, finished: 3, failed: 3, cancelled: 3 }
/** More new tasks than this at one refresh: one listTasks() instead of a getTask each. */
const BULK_LOAD = 256
const PARALLEL_READS = 16
/** Page rows read again at once (reread). */
const ROW_READS = 8
/** Longest rest between two refreshes, however long the last one took (or failed after). */
const MAX_REST_MS = 60_000
/** A refresh that took d waits at least REST_FACTOR × d before the next one (the store's load). */
const REST_FACTOR = 3


export class TaskIndex {
  readonly #store: Store
  readonly #now: () => number
  readonly #refreshMs: number
  readonly #byId = new Map<string, TaskSummary>()
  /** When an active task was last read in full (update). */
  readonly #readAt = new Map<string, number>()
  /** Tasks being read again for a page (reread). */
  readonly #reading = new Set<string>()
  /** Newest first; rebuilt when tasks are added. */
  #order: TaskSummary[] | null = null
  #refreshedAt = Number.NEGATIVE_INFINITY
  /** When the last refresh ended (one that failed too). */
  #endedAt = Number.NEGATIVE_INFINITY
  /** Least time between two refreshes, from how long the last one took (one that failed too). */
  #restMs = 0
  readonly #waitMs: number
  readonly #firstWaitMs: number
  #loadStartedAt: number | null = null
  #refreshing: Promise<void> | null = null
  #soon: ReturnType<typeof setTimeout> | null = null
  #closed = false
  /** Bumped on every visible change (a live stream sends counts when it moves). */
  version = 0
  readonly #onEvent = (m: unknown): void => this.#observe(m as TaskEvent)

  constructor(store: Store, now: () => number, options: { refreshMs?: number; waitMs?: number; firstWaitMs?: number } = {}) {
    this.#store = store
    this.#now = now
    this.#refreshMs = options.refreshMs ?? 2_000
    this.#waitMs = options.waitMs ?? 500
    this.#firstWaitMs = options.firstWaitMs ?? 10_000
    subscribe(TASK_EVENTS_CHANNEL, this.#onEvent)
  }

  close(): void {
    this.#closed = true
    unsubscribe(TASK_EVENTS_CHANNEL, this.#onEvent)
    if (this.#soon !== null) clearTimeout(this.#soon)
  }

  get size(): number {
    return this.#byId.size
  }

  /** The first load is done: the summaries held are every task's. */
  get loaded(): boolean {
    return this.#refreshedAt !== Number.NEGATIVE_INFINITY
  }

  get(id: string): TaskSummary | undefined {
    return this.#byId.get(id)
  }

  /**
   * Refreshes from the store when the last refresh is older than `maxAgeMs` (and the store has
   * had its rest: see #load). The first load is waited for; after it, a refresh is waited for at
   * most `waitMs` (a store that answers at once gives every request what it holds now), then the
   * request is answered from the summaries held while the refresh goes on in the background (on a
   * server that scans every task for a status filter, a refresh of 10,000 tasks takes seconds).
   * `wait`: wait for the whole refresh (the live stream's tick, which sends what it brought).
   */
  async ensureFresh(maxAgeMs = this.#refreshMs, options: { wait?: boolean } = {}): Promise<void> {
    const loaded = this.loaded
    const now = this.#now()
    // After a refresh (one that failed too), the store rests 3 times as long as it took.
    if (this.#refreshing === null && now - this.#refreshedAt >= maxAgeMs && now - this.#endedAt >= this.#restMs) {
      this.#refreshing = this.#refresh().finally(() => {
        this.#endedAt = this.#now()
        this.#restMs = Math.min(MAX_REST_MS, REST_FACTOR * Math.max(0, this.#endedAt - now))
        this.#refreshing = null
      })
    }
    const running = this.#refreshing
    if (options.wait === true && running !== null) return running
    if (loaded) {
      if (running === null) return
      running.catch(() => undefined) // a failed background refresh: the next one tries again
      await this.#within(running, this.#waitMs)
      return
    }
    // Not loaded yet: a request waits for the first load `firstWaitMs` at most (a server that
    // scans every task document can take a minute under load), then is told to come back.
    if (running === null) throw this.#loading()
    if (!(await this.#within(running, this.#firstWaitMs))) throw this.#loading()
    await running // its error, if it failed
  }

  /** Whether `p` settled within `ms` (it may still reject: the caller sees to that). */
  async #within(p: Promise<void>, ms: number): Promise<boolean> {
    let timer: ReturnType<typeof setTimeout> | undefined
    const bounded = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), ms)
      timer.unref()
    })
    const settled = await Promise.race([p.then(() => true, () => true), bounded])
    clearTimeout(timer)
    return settled
  }

  #loading(): HttpError {
    const since = this.#loadStartedAt === null ? 0 : Math.round((this.#now() - this.#loadStartedAt) / 1000)
    const what = this.#refreshing === null ? 'its last read failed; the next one begins in a few seconds' : `reading for ${since} s`
    return new HttpError(503, `the task list is still being read from the store (${what})`, { 'Retry-After': '5' })
  }

  /**
   * Whether a page row should be read again in full: its summary may be behind (an event of this
   * process's coordinator moved it), or it is active and was last read `refreshMs` ago or more
   * (a task another process runs moves without events here).
   */
  needsRead(s: TaskSummary): boolean {
    if (this.#reading.has(s.id)) return false // a read of it is under way
    if (s.stale) return true
    if (TERMINAL.has(s.status)) return false
    return this.#now() - (this.#readAt.get(s.id) ?? Number.NEGATIVE_INFINITY) >= this.#refreshMs
  }

  /**
   * Reads `rows` again in full through `read` (8 at a time, none already being read), waiting
   * `waitMs` at most: on a slow store the page is answered from the summaries held, and the reads
   * that finish later update them (the live stream then says the tasks moved).
   */
  async reread(rows: readonly TaskSummary[], read: (id: string) => Promise<TaskView | null>): Promise<void> {
    const due = rows.filter((s) => this.needsRead(s))
    if (due.length === 0) return
    for (const s of due) this.#reading.add(s.id)
    const reads = eachLimited(due, ROW_READS, async (s) => {
      try {
        const t = await read(s.id)
        if (t !== null) this.update(t)
      } catch {
        // read at a later request (a read that threw must not stop the others: they would stay
        // marked as being read, and never be read again)
      } finally {
        this.#reading.delete(s.id)
      }
    })
    await this.#within(reads, this.#waitMs)
  }

  /** A task read in full (a page row, the task page): its summary is brought up to date. */
  update(view: TaskView | TaskDoc): void {
    if (TERMINAL.has(view.status)) this.#readAt.delete(view.id)
    else this.#readAt.set(view.id, this.#now())
    const next = summaryOf(view)
    const cur = this.#byId.get(view.id)
    if (cur === undefined) {
      this.#add(next)
      return
    }
    const moved = RANK[next.status] >= RANK[cur.status]
    const changed = cur.stale || cur.nodes_done !== next.nodes_done || (moved && cur.status !== next.status)
    if (moved) {
      cur.status = next.status
      cur.error = next.error
      cur.finished_at_ms = next.finished_at_ms
      cur.nodes_done = next.nodes_done
    }
    cur.updated_at_ms = Math.max(cur.updated_at_ms, next.updated_at_ms)
    cur.stale = !moved
    if (changed) this.version++
  }

  /** Distinct node types over all tasks, with how many tasks have each. */
  types(): { type: string; tasks: number }[] {
    const counts = new Map<string, number>()
    for (const s of this.#byId.values()) for (const t of s.types) counts.set(t, (counts.get(t) ?? 0) + 1)
    return [...counts].map(([type, tasks]) => ({ type, tasks })).sort((a, b) => (a.type < b.type ? -1 : a.type > b.type ? 1 : 0))
  }

  /** One pass over the tasks, newest first: the page, its total and the per-status counts. */
  query(q: TaskQuery): TaskPage {
    const counts = emptyCounts()
    const statuses = q.statuses !== undefined && q.statuses.length > 0 ? new Set<string>(q.statuses) : null
    let items: TaskSummary[] = []
    let total = 0
    let offset = 0
    const needle = q.idContains !== undefined && q.idContains !== '' ? q.idContains.toLowerCase() : null
    // `after` and `last` keep the latest `limit` rows seen (the ones closest to the cursor, the oldest).
    const tail = q.after !== undefined || q.last === true
    let seen = 0
    for (const s of this.#sorted()) {
      if (q.type !== undefined && q.type !== '' && !s.types.includes(q.type)) continue
      if (q.createdAfterMs !== undefined && s.created_at_ms < q.createdAfterMs) continue
      if (q.createdBeforeMs !== undefined && s.created_at_ms >= q.createdBeforeMs) continue
      if (needle !== null && !s.id.toLowerCase().includes(needle)) continue
      counts[s.status]++
      if (statuses !== null && !statuses.has(s.status)) continue
      total++
      if (q.before !== undefined) {
        if (newerThan(s, q.before) || (s.id === q.before.id && s.created_at_ms === q.before.created_at_ms)) offset++
        else if (items.length < q.limit) items.push(s)
      } else if (tail) {
        if (q.after !== undefined && !newerThan(s, q.after)) continue
        seen++
        items.push(s)
        if (items.length > 2 * q.limit) items = items.slice(-q.limit)
      } else if (total > q.offset && items.length < q.limit) items.push(s)
    }
    if (tail) {
      items = items.slice(-q.limit)
      offset = seen - items.length
    } else if (q.before === undefined) offset = Math.min(q.offset, total)
    return { total, counts, all: this.#byId.size, offset, items }
  }

  #sorted(): TaskSummary[] {
    if (this.#order === null) {
      this.#order = [...this.#byId.values()].sort((a, b) => b.created_at_ms - a.created_at_ms || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0))
    }
    return this.#order
  }

  #add(s: TaskSummary): void {
    this.#byId.set(s.id, s)
    this.#order = null
    this.version++
  }

  /** Moves a status forward (never back: a lagging snapshot cannot undo a newer event). */
  #advance(s: TaskSummary, status: TaskStatus): boolean {
    if (RANK[status] <= RANK[s.status]) return false
    s.status = status
    s.stale = true
    this.version++
    return true
  }

  async #refresh(): Promise<void> {
    if (!this.loaded) return this.#firstLoad()
    const found = new Map<string, TaskStatus>()
    for (const { id, status } of await this.#store.listTaskStatuses(TASK_STATUSES)) found.set(id, status)
    const fresh = [...found.keys()].filter((id) => !this.#byId.has(id))
    if (fresh.length > BULK_LOAD) {
      for (const doc of await this.#store.listTasks()) if (!this.#byId.has(doc.id)) this.#add(summaryOf(doc))
    } else {
      await eachLimited(fresh, PARALLEL_READS, async (id) => {
        const doc = await this.#store.getTask(id)
        if (doc !== null && !this.#byId.has(id)) this.#add(summaryOf(doc))
      })
    }
    for (const [id, status] of found) {
      const s = this.#byId.get(id)
      if (s !== undefined) this.#advance(s, status)
    }
    // Held here but listed under no status: deleted (taskRetentionSec, `flowkit` retention), or
    // between two lists as it changed status; a read tells which.
    const gone = [...this.#byId.keys()].filter((id) => !found.has(id))
    await eachLimited(gone, PARALLEL_READS, async (id) => {
      if ((await this.#store.getTask(id)) !== null) return
      this.#byId.delete(id)
      this.#readAt.delete(id)
      this.#order = null
      this.version++
    })
    this.#refreshedAt = this.#now()
  }

  /** Every task, read once (with its status: no status read first). */
  async #firstLoad(): Promise<void> {
    this.#loadStartedAt = this.#now()
    for (const doc of await this.#store.listTasks()) if (!this.#byId.has(doc.id)) this.#add(summaryOf(doc))
    this.#refreshedAt = this.#now()
  }

  #observe(e: TaskEvent): void {
    if (this.#closed) return
    const s = this.#byId.get(e.task_id)
    if (s === undefined) {
      this.#refreshSoon()
      return
    }
    s.updated_at_ms = Math.max(s.updated_at_ms, e.at_ms)
    if (e.type === 'task') {
      this.#advance(s, e.status)
      if (TERMINAL.has(e.status)) {
        s.finished_at_ms = s.finished_at_ms ?? e.at_ms
        s.error = e.error
      }
    } else if (e.type === 'node' && !s.stale) {
      s.stale = true
      this.version++
    }
  }

  /**
   * An event of a task not seen yet (just created): refresh shortly, once for a burst, and never
   * more often than every `refreshMs`.
   */
  #refreshSoon(): void {
    if (this.#soon !== null || this.#closed) return
    // After the store's rest too (a refresh asked for during it would do nothing).
    const wait = Math.max(200, Math.max(this.#refreshMs, this.#restMs) - (this.#now() - this.#refreshedAt))
    this.#soon = setTimeout(() => {
      this.#soon = null
      this.ensureFresh(0).catch(() => undefined)
    }, wait)
    this.#soon.unref()
  }
}
