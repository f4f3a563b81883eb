/**
 * Live per-node progress of one task: status, attempt epoch, batches, worker, stats, last error.
 *
 * - In a terminal: a table redrawn in place (throttled), then a summary line.
 * - Piped: one line per visible change of a node (status, epoch, batches, worker, error; stats
 *   alone at most once a second per node), then the summary line.
 * - `--json`: the task events, one JSON object per line (the shape of `Coordinator.watch`).
 */
import type { TaskEvent } from '../coordinator/watch.ts'
import type { NodeView, TaskView } from '../coordinator/view.ts'
import { type Out, duration, formatStats, pad, table } from './output.ts'

const TERMINAL: ReadonlySet<string> = new Set(['finished', 'failed', 'cancelled'])
const REDRAW_MS = 100
const STATS_LINE_MS = 1000

export function isTerminal(status: string): boolean {
  return TERMINAL.has(status)
}

function nodeCells(n: NodeView, statsWidth: number): string[] {
  const status = n.waiting_for_worker === true && n.status === 'running' ? 'running (no worker for its type yet)' : n.status
  // A node that finished after failed attempts keeps its last error (as history): not shown as a failure.
  const err =
    n.last_error === null ? '' : n.status === 'finished' ? `retried_after=${n.last_error.reason_code}` : `error=${n.last_error.reason_code}${n.last_error.permanent ? ' (permanent)' : ''}`
  const stats = formatStats(n.stats, statsWidth)
  return [n.node_id, status, String(n.attempt_epoch), n.batches_seen === undefined ? '-' : String(n.batches_seen), n.lease.worker_id ?? '-', [stats, err].filter(Boolean).join(' ')]
}

/** The task as a table: header line, column titles, one row per node. */
export function taskLines(t: TaskView, now: number, statsWidth = 60): string[] {
  const elapsed = (t.finished_at_ms ?? now) - t.created_at_ms
  // A cancel recorded but not applied yet (it waits for the reports already queued for the task).
  const status = t.cancelled && (t.status === 'running' || t.status === 'queued') ? `${t.status} (cancel requested)` : t.status
  const head = `task ${t.id}  ${status}  ${duration(elapsed)}${t.error ? `  error: ${t.error}` : ''}`
  const rows = table([['NODE', 'STATUS', 'EPOCH', 'BATCHES', 'WORKER', 'STATS'], ...t.nodes.map((n) => nodeCells(n, statsWidth))])
  return [head, ...rows.map((r) => `  ${r}`)]
}

export function summaryLine(t: TaskView): string {
  const took = t.finished_at_ms === null ? '' : ` in ${duration(t.finished_at_ms - t.created_at_ms)}`
  return `task ${t.id} ${t.status}${took}${t.error ? `: ${t.error}` : ''}`
}

export interface Progress {
  /** The task as it is now (human modes render it). */
  view(t: TaskView): void
  /** A task event (JSON mode prints it). */
  event(e: TaskEvent): void
  /** Final render (human modes) and the summary line. */
  end(t: TaskView): void
  /** A note for the user (stderr), kept clear of a live display. */
  note(text: string): void
  /** Stops timers (interrupted). */
  close(): void
}

export function makeProgress(out: Out, options: { summary?: boolean } = {}): Progress {
  if (out.json) {
    return { view() {}, event: (e) => out.doc(e), end() {}, note: (t) => out.note(t), close() {} }
  }
  return out.isTTY ? new LiveTable(out, options.summary ?? true) : new ChangeLines(out, options.summary ?? true)
}

class LiveTable implements Progress {
  readonly #out: Out
  readonly #summary: boolean
  #drawn = 0
  #latest: TaskView | null = null
  #timer: NodeJS.Timeout | null = null
  /** Redraws once a second, so the elapsed time moves while nothing else does. */
  #ticker: NodeJS.Timeout | null = null
  #lastDraw = 0

  constructor(out: Out, summary: boolean) {
    this.#out = out
    this.#summary = summary
  }

  view(t: TaskView): void {
    this.#latest = t
    if (this.#ticker === null) {
      this.#ticker = setInterval(() => this.#draw(), 1000)
      this.#ticker.unref()
    }
    const wait = this.#lastDraw + REDRAW_MS - Date.now()
    if (wait <= 0) this.#draw()
    else this.#timer ??= setTimeout(() => this.#draw(), wait)
  }

  event(): void {}

  #draw(): void {
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
    const t = this.#latest
    if (t === null) return
    this.#lastDraw = Date.now()
    const width = Math.max(40, this.#out.columns - 1)
    let lines = taskLines(t, Date.now(), Math.max(20, width - 60)).map((l) => (l.length > width ? `${l.slice(0, width - 1)}…` : l))
    // Taller than the terminal, the cursor could not go back up to redraw: cut the table short.
    const fit = Math.max(4, this.#out.rows - 2)
    if (lines.length > fit) lines = [...lines.slice(0, fit - 1), `  … ${lines.length - fit + 1} more nodes (a taller terminal shows them)`]
    let text = this.#drawn > 0 ? `\x1b[${this.#drawn}F` : ''
    for (const l of lines) text += `\x1b[2K${l}\n`
    // Fewer lines than last time: clear the rest.
    for (let i = lines.length; i < this.#drawn; i++) text += '\x1b[2K\n'
    if (lines.length < this.#drawn) text += `\x1b[${this.#drawn - lines.length}F`
    this.#out.write(text)
    this.#drawn = lines.length
  }

  note(text: string): void {
    // Above the table: erase it, print the note, draw the table again below.
    if (this.#drawn > 0) this.#out.write(`\x1b[${this.#drawn}F\x1b[J`)
    this.#drawn = 0
    this.#out.note(text)
    this.#draw()
  }

  end(t: TaskView): void {
    this.#latest = t
    this.#draw()
    this.close()
    if (this.#summary) this.#out.line(summaryLine(t))
  }

  close(): void {
    if (this.#timer !== null) clearTimeout(this.#timer)
    if (this.#ticker !== null) clearInterval(this.#ticker)
    this.#timer = null
    this.#ticker = null
  }
}

class ChangeLines implements Progress {
  readonly #out: Out
  readonly #summary: boolean
  readonly #start = Date.now()
  readonly #last = new Map<string, { key: string; stats: string; at: number }>()
  #status = ''
  #width = 0

  constructor(out: Out, summary: boolean) {
    this.#out = out
    this.#summary = summary
  }

  #stamp(): string {
    return `[${String(Date.now() - this.#start).padStart(6)} ms]`
  }

  view(t: TaskView, force = false): void {
    if (this.#width === 0) this.#width = Math.max(8, ...t.nodes.map((n) => n.node_id.length))
    const now = Date.now()
    for (const n of t.nodes) {
      const c = nodeCells(n, 60)
      const key = `${c[1]}|${c[2]}|${c[3]}|${c[4]}|${n.last_error?.reason_code ?? ''}`
      const stats = c[5] ?? ''
      const prev = this.#last.get(n.node_id)
      if (prev !== undefined && prev.key === key && (prev.stats === stats || (!force && now - prev.at < STATS_LINE_MS))) continue
      if (prev === undefined && n.status === 'queued' && stats === '') {
        this.#last.set(n.node_id, { key, stats, at: 0 })
        continue
      }
      this.#last.set(n.node_id, { key, stats, at: now })
      const batches = c[3] === '-' ? '' : ` batches=${c[3]}`
      const worker = c[4] === '-' ? '' : ` worker=${c[4]}`
      this.#out.line(`${this.#stamp()} ${pad(n.node_id, this.#width)} ${pad(c[1] ?? '', 10)} epoch=${c[2]}${batches}${worker}${stats === '' ? '' : ` ${stats}`}`)
    }
    // The task's status after its nodes' (a task ends after its last node).
    if (t.status !== this.#status) {
      this.#status = t.status
      this.#out.line(`${this.#stamp()} task ${t.id} ${t.status}${t.error ? `: ${t.error}` : ''}`)
    }
  }

  event(): void {}

  note(text: string): void {
    this.#out.note(text)
  }

  end(t: TaskView): void {
    this.view(t, true)
    if (this.#summary) this.#out.line(summaryLine(t))
  }

  close(): void {}
}
