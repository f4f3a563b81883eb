/**
 * Live updates as server-sent events.
 *
 * - `/api/tasks/:id/events`: the task's `Coordinator.watch` events as they become durable
 *   (`snapshot` first, then `node` and `task`, `end` after the terminal one), plus a `progress`
 *   event about once a second with the nodes that changed since the last one (batches seen,
 *   stats, lease holder): the page derives batches/s from it, and it also follows a task another
 *   coordinator runs (watch sees only this process's).
 * - `/api/events`: for every page, `tasks` (status counts, when the task index moved: fed by the
 *   `flowkit:task-events` channel and the index refresh) and `workers` (worker and dead-letter
 *   counts) when they change.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { NodeView, TaskView } from '../coordinator/view.ts'
import { isFinalEvent } from '../coordinator/watch.ts'
import { redactText } from '../log.ts'
import { type ApiContext, shownTask } from './api.ts'
import { HttpError, SECURITY_HEADERS } from './http.ts'

const HEARTBEAT_MS = 15_000
/** Bytes of events a stream may hold unsent for a client that does not read before it is closed. */
export const MAX_UNSENT = 4 * 1024 * 1024
const TERMINAL: ReadonlySet<string> = new Set(['finished', 'failed', 'cancelled'])

/** The response's connection is gone (closed or destroyed). */
function streamGone(res: ServerResponse): boolean {
  return res.destroyed || res.socket === null || res.socket.destroyed
}

export class SseStream {
  readonly #res: ServerResponse
  #heartbeat: ReturnType<typeof setInterval> | null = null
  readonly #onClose: (() => void)[] = []
  #closed = false

  constructor(res: ServerResponse) {
    this.#res = res
    // A client that left while the stream was being prepared (a store read before it): its close
    // has fired already, so a close listener would never run. It is closed from the start (whoever
    // registers onClose is called at once), nothing is written to it, nothing sent to it later.
    if (streamGone(res)) {
      this.#closed = true
      return
    }
    res.writeHead(200, {
      ...SECURITY_HEADERS,
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    })
    res.write('retry: 2000\n\n')
    this.#heartbeat = setInterval(() => this.#write(': keep-alive\n\n'), HEARTBEAT_MS)
    this.#heartbeat.unref()
    res.on('close', () => this.#closeNow())
  }

  get closed(): boolean {
    return this.#closed
  }

  onClose(fn: () => void): void {
    if (this.#closed) fn()
    else this.#onClose.push(fn)
  }

  send(event: string, data: unknown): void {
    this.#write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`)
  }

  end(): void {
    if (!this.#closed) this.#res.end()
    this.#closeNow()
  }

  #write(text: string): void {
    if (this.#closed) return
    // A client that reads nothing (a frozen tab, a stalled proxy): its unsent events would pile up
    // in this process without end. Past MAX_UNSENT the stream is closed; a browser reconnects
    // (`retry`) and gets a fresh snapshot.
    if (this.#res.writableLength > MAX_UNSENT) {
      this.#res.destroy()
      this.#closeNow()
      return
    }
    this.#res.write(text)
  }

  #closeNow(): void {
    if (this.#closed) return
    this.#closed = true
    if (this.#heartbeat !== null) clearInterval(this.#heartbeat)
    for (const fn of this.#onClose.splice(0)) fn()
  }
}

/** What a `progress` event says of a node. */
function slim(n: NodeView): Record<string, unknown> {
  return {
    node_id: n.node_id,
    status: n.status,
    attempt_epoch: n.attempt_epoch,
    batches_seen: n.batches_seen ?? 0,
    stats: n.stats,
    worker_id: n.lease.worker_id ?? null,
    failures: n.failures,
    last_error: n.last_error,
    waiting_for_worker: n.waiting_for_worker === true,
    suspected: n.suspected === true,
    accepted_at_ms: n.accepted_at_ms,
    finished_at_ms: n.finished_at_ms,
  }
}

export interface TaskStreamOptions {
  /** Least time between two progress events (ms). */
  progressMs: number
  /** Open streams, ended by the server's close(). */
  streams: Set<SseStream>
}

export async function streamTask(ctx: ApiContext, id: string, res: ServerResponse, options: TaskStreamOptions): Promise<void> {
  if ((await ctx.coordinator.getTask(id)) === null) throw new HttpError(404, `task ${id} not found`)
  const sse = new SseStream(res)
  if (sse.closed) return
  options.streams.add(sse)
  const ac = new AbortController()
  sse.onClose(() => {
    ac.abort()
    options.streams.delete(sse)
  })
  const last = new Map<string, string>()
  const remember = (t: TaskView): Record<string, unknown>[] => {
    const changed: Record<string, unknown>[] = []
    for (const n of t.nodes) {
      const s = slim(n)
      const key = JSON.stringify(s)
      if (last.get(n.node_id) !== key) {
        last.set(n.node_id, key)
        changed.push(s)
      }
    }
    return changed
  }
  let timer: ReturnType<typeof setTimeout> | null = null
  let ended = false
  const finish = (): void => {
    if (ended) return
    ended = true
    sse.send('end', { task_id: id })
    ac.abort()
  }
  const poll = async (): Promise<void> => {
    const started = performance.now()
    const t = await ctx.coordinator.getTask(id)
    if (t === null || sse.closed || ended) return
    const nodes = remember(t)
    sse.send('progress', { task_id: id, at_ms: ctx.now(), status: t.status, nodes })
    if (TERMINAL.has(t.status)) {
      // Ended without a watch event: another coordinator runs this task (watch sees only this
      // process's), so the end is told from the store.
      sse.send('task', { type: 'task', task_id: id, at_ms: t.finished_at_ms ?? ctx.now(), status: t.status, error: t.error })
      finish()
      return
    }
    // A big task is read less often: polling never takes more than a tenth of the time.
    const took = performance.now() - started
    schedule(Math.max(options.progressMs, took * 10))
  }
  const schedule = (ms: number): void => {
    if (sse.closed) return
    timer = setTimeout(() => {
      poll().catch(() => schedule(options.progressMs))
    }, ms)
    timer.unref()
  }
  try {
    for await (const e of ctx.coordinator.watch(id, { signal: ac.signal })) {
      if (ended) break
      if (e.type === 'snapshot') {
        remember(e.task)
        ctx.index.update(e.task)
        sse.send('snapshot', { ...e, task: { ...shownTask(e.task), nodes: e.task.nodes.map((n) => ({ ...n, batches_seen: n.batches_seen ?? 0 })) } })
        if (!isFinalEvent(e)) schedule(options.progressMs)
      } else {
        sse.send(e.type, e)
      }
      if (isFinalEvent(e)) {
        if (e.type === 'task') {
          const t = await ctx.coordinator.getTask(id)
          if (t !== null && !ended) sse.send('progress', { task_id: id, at_ms: ctx.now(), status: t.status, nodes: remember(t) })
        }
        finish()
        break
      }
    }
  } catch (err) {
    sse.send('failure', { error: redactText(err instanceof Error ? err.message : String(err)) })
  } finally {
    if (timer !== null) clearTimeout(timer)
    sse.end()
  }
}

/** The `/api/events` stream shared by every page: one ticker for all clients. */
export class LiveHub {
  readonly #ctx: ApiContext
  readonly #tickMs: number
  readonly #clients = new Set<SseStream>()
  #timer: ReturnType<typeof setTimeout> | null = null
  #ticks = 0
  #sentVersion = -1
  #workersDigest = ''
  #busy = false

  constructor(ctx: ApiContext, options: { tickMs?: number } = {}) {
    this.#ctx = ctx
    this.#tickMs = options.tickMs ?? 1_000
  }

  get clients(): number {
    return this.#clients.size
  }

  async add(_req: IncomingMessage, res: ServerResponse): Promise<void> {
    // The stream opens at once: before the first load is done (a slow store) it waits for
    // nothing, and its counts follow the load; a refresh that fails leaves the counts held.
    const loaded = this.#ctx.index.loaded
    const fresh = this.#ctx.index.ensureFresh().catch(() => undefined)
    if (loaded) await fresh
    const sse = new SseStream(res)
    if (sse.closed) return
    this.#clients.add(sse)
    sse.onClose(() => this.#clients.delete(sse))
    if (this.#ctx.index.loaded) sse.send('tasks', this.#tasksEvent())
    const w = await this.#workersEvent()
    sse.send('workers', w.event)
    this.#start()
  }

  close(): void {
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
    for (const c of [...this.#clients]) c.end()
  }

  #tasksEvent(): Record<string, unknown> {
    const { counts, all } = this.#ctx.index.query({ offset: 0, limit: 0 })
    return { version: this.#ctx.index.version, counts, all }
  }

  async #workersEvent(): Promise<{ event: Record<string, unknown>; digest: string }> {
    const [workers, dead] = await Promise.all([this.#ctx.coordinator.listWorkers(), this.#ctx.coordinator.countDeadLetters()])
    // A worker not heard from within the liveness window is silent (as on the workers page), not
    // online: the badge counted it online, and its going silent (no announce) sent no new event.
    const now = this.#ctx.now()
    const silent = (w: (typeof workers)[number]): boolean => w.status === 'online' && now - w.last_seen_ms > this.#ctx.workerLivenessMs
    const digest = JSON.stringify([workers.map((w) => [w.worker_id, w.status, w.last_seen_ms, w.capacity, w.roles, silent(w)]), dead])
    const quiet = workers.filter(silent).length
    const online = workers.filter((w) => w.status === 'online').length - quiet
    return { event: { workers: workers.length, online, silent: quiet, dead_letters: dead }, digest }
  }

  #start(): void {
    if (this.#timer !== null) return
    this.#timer = setTimeout(() => {
      this.#timer = null
      this.#tick().finally(() => {
        if (this.#clients.size > 0) this.#start()
      })
    }, this.#tickMs)
    this.#timer.unref()
  }

  async #tick(): Promise<void> {
    if (this.#busy || this.#clients.size === 0) return
    this.#busy = true
    try {
      this.#ticks++
      await this.#ctx.index.ensureFresh(undefined, { wait: true })
      if (this.#ctx.index.version !== this.#sentVersion) {
        this.#sentVersion = this.#ctx.index.version
        this.#broadcast('tasks', this.#tasksEvent())
      }
      if (this.#ticks % 2 === 0) {
        const w = await this.#workersEvent()
        if (w.digest !== this.#workersDigest) {
          this.#workersDigest = w.digest
          this.#broadcast('workers', w.event)
        }
      }
    } catch {
      // the next tick tries again
    } finally {
      this.#busy = false
    }
  }

  #broadcast(event: string, data: unknown): void {
    for (const c of this.#clients) c.send(event, data)
  }
}
