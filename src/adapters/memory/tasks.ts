/**
 * Task snapshots and their journal in the MemoryStore (see the Store port): one snapshot per task
 * id, one journal entry per (task, seq) (a second writer of a seq is refused, the same writer's
 * retry is accepted); the current task is its snapshot with the entries after its version applied.
 *
 * What the coordinator hands over (store-rules.ts handOver) is kept by reference (copied on the
 * way out): new tasks, journal entries, snapshots and their node states; a frozen graph too.
 * Anything else is copied in.
 */
import { ErrorCode, FlowkitError } from '../../errors.ts'
import { applyJournal } from '../../model/journal.ts'
import { TERMINAL_TASK_STATUSES } from '../../model/state.ts'
import type { JournalEntry, RunView, TaskDoc, TaskStatus, VersionedTask } from '../../ports/store.ts'
import { assertNodeId, compareCodePoints, deepFreeze, isHandedOver, withVersion } from '../../ports/store-rules.ts'
import { clone, ingest, take } from './copy.ts'

/** A stored journal entry: as JSON text, or (handed over, the coordinator's) by reference. */
interface JournalRow {
  writer: string
  at_ms: number
  json: string | null
  entry: JournalEntry | null
}

/**
 * A stored task's variables as readers get them: a frozen copy, made once per stored object (a
 * write replaces the object), so the runs of a wide fan-out do not each copy large variables.
 */
const FROZEN_VARS = new WeakMap<object, Record<string, unknown>>()

function frozenCopy(vars: Record<string, unknown>): Record<string, unknown> {
  let f = FROZEN_VARS.get(vars)
  if (f === undefined) {
    f = deepFreeze(clone(vars))
    FROZEN_VARS.set(vars, f)
  }
  return f
}

/** A task on its way out: a deep copy, except the graph, which is immutable and shared (frozen). */
function cloneTask(t: VersionedTask): TaskDoc {
  const { graph, v, sent_through, batches, batches_in_rows, ...rest } = t
  const out = clone(rest) as unknown as TaskDoc
  out.graph = graph
  return withVersion(out, v, sent_through, clone(batches ?? {}), batches_in_rows === true)
}

export class MemoryTasks {
  readonly #tasks = new Map<string, VersionedTask>()
  /** Journal entries (as JSON text: stored, not shared) by task, then seq. */
  readonly #journal = new Map<string, Map<number, JournalRow>>()

  create(task: TaskDoc): void {
    for (const nodeId of Object.keys(task.nodes)) assertNodeId(nodeId)
    if (this.#tasks.has(task.id)) {
      throw new FlowkitError(ErrorCode.DuplicateKey, `task ${task.id} already exists`, {
        details: { task_id: task.id },
      })
    }
    // The graph is immutable: a caller's graph that is already frozen is kept as is (no copy).
    const { graph, ...rest } = task
    const stored = (isHandedOver(task) ? { ...rest, v: 0 } : ingest({ ...rest, v: 0 })) as VersionedTask
    stored.graph = Object.isFrozen(graph) ? graph : deepFreeze(ingest(graph))
    this.#tasks.set(task.id, stored)
  }

  /** The snapshot with the journal after it applied (no copy). */
  #current(taskId: string): VersionedTask | null {
    const snap = this.#tasks.get(taskId)
    if (snap === undefined) return null
    const entries = this.#entries(taskId, snap.v)
    return entries.length === 0 ? snap : applyJournal(snap, entries)
  }

  #entries(taskId: string, afterSeq: number): JournalEntry[] {
    const j = this.#journal.get(taskId)
    if (j === undefined) return []
    const out: JournalEntry[] = []
    for (const [seq, row] of j) if (seq > afterSeq) out.push(row.json !== null ? (JSON.parse(row.json) as JournalEntry) : clone(row.entry as JournalEntry))
    return out.sort((a, b) => a.seq - b.seq)
  }

  get(taskId: string): TaskDoc | null {
    const t = this.#current(taskId)
    return t ? cloneTask(t) : null
  }

  runView(taskId: string, nodeId: string): RunView | null {
    assertNodeId(nodeId)
    const t = this.#tasks.get(taskId)
    if (!t) return null
    const node = Object.hasOwn(t.nodes, nodeId) ? t.nodes[nodeId] : undefined
    return { cancelled: t.coordinator.cancelled, vars: frozenCopy(t.coordinator.vars), node: node === undefined ? null : clone(node) }
  }

  list(filter: { statuses?: readonly TaskStatus[]; limit?: number }): TaskDoc[] {
    const statuses = filter.statuses
    const rows = [...this.#tasks.keys()]
      .map((id) => this.#current(id) as VersionedTask)
      .filter((t) => statuses === undefined || statuses.includes(t.status))
      .sort((a, b) => a.created_at_ms - b.created_at_ms || compareCodePoints(a.id, b.id))
    return take(rows, filter.limit).map(cloneTask)
  }

  listStatuses(statuses: readonly TaskStatus[]): Array<{ id: string; status: TaskStatus }> {
    const out: Array<{ id: string; status: TaskStatus }> = []
    for (const t of this.#tasks.values()) if (statuses.includes(t.status)) out.push({ id: t.id, status: t.status })
    return out
  }

  listIds(statuses: readonly TaskStatus[]): string[] {
    return this.listStatuses(statuses).map((t) => t.id)
  }

  appendJournal(entries: readonly JournalEntry[]): boolean[] {
    // Every entry is checked before any is stored (as the MongoDB store does).
    for (const e of entries) for (const n of e.nodes) assertNodeId(n.node_id)
    return entries.map((e) => {
      let j = this.#journal.get(e.task_id)
      if (j === undefined) {
        j = new Map()
        this.#journal.set(e.task_id, j)
      }
      const held = j.get(e.seq)
      if (held !== undefined) return held.writer === e.writer
      // An entry handed over (the coordinator's) does not change: kept as is, copied on the way
      // out; any other is copied in.
      j.set(e.seq, isHandedOver(e) ? { writer: e.writer, at_ms: e.at_ms, json: null, entry: e } : { writer: e.writer, at_ms: e.at_ms, json: JSON.stringify(e), entry: null })
      return true
    })
  }

  readJournal(taskIds: readonly string[], afterSeq: number): JournalEntry[] {
    return taskIds.flatMap((id) => this.#entries(id, afterSeq))
  }

  writeSnapshot(task: VersionedTask, now: number): boolean {
    for (const nodeId of Object.keys(task.nodes)) assertNodeId(nodeId)
    const stored = this.#tasks.get(task.id)
    if (stored === undefined || stored.v >= task.v) return false
    const fields = {
      status: task.status,
      coordinator: task.coordinator,
      result: task.result,
      error: task.error,
      finished_at_ms: task.finished_at_ms,
    }
    // A snapshot the coordinator handed over is kept by reference; any other is copied in.
    const own = isHandedOver(task)
    const t = own ? fields : ingest(fields)
    const nodes = own ? task.nodes : ingest(task.nodes)
    const batches = own ? (task.batches ?? {}) : ingest(task.batches ?? {})
    const next: VersionedTask = { ...stored, ...t, nodes, updated_at_ms: now, v: task.v, sent_through: task.sent_through ?? 0, batches }
    if (task.batches_in_rows === true) next.batches_in_rows = true
    else delete next.batches_in_rows
    this.#tasks.set(task.id, next)
    return true
  }

  /** Up to `limit` ids of tasks whose snapshot is terminal with finished_at_ms before `cutoff`, oldest first. */
  ended(cutoff: number, limit: number): string[] {
    if (limit <= 0) return []
    const rows: { id: string; at: number }[] = []
    for (const t of this.#tasks.values()) {
      const at = t.finished_at_ms
      if (TERMINAL_TASK_STATUSES.includes(t.status) && typeof at === 'number' && at < cutoff) rows.push({ id: t.id, at })
    }
    rows.sort((a, b) => a.at - b.at || compareCodePoints(a.id, b.id))
    return rows.slice(0, limit).map((r) => r.id)
  }

  /** Deletes these tasks and their journals. */
  drop(ids: ReadonlySet<string>): void {
    for (const id of ids) {
      this.#journal.delete(id)
      this.#tasks.delete(id)
    }
  }

  /** Deletes the journal entries written before `cutoff`; returns how many. */
  purgeJournal(cutoff: number): number {
    let journal = 0
    for (const j of this.#journal.values()) {
      for (const [seq, row] of j) {
        if (row.at_ms < cutoff) {
          j.delete(seq)
          journal++
        }
      }
    }
    return journal
  }
}
