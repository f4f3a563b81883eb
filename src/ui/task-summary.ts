/**
 * The dashboard task list's rows: a compact summary per task, the query over them (filters and a
 * page by offset or by cursor) and its answer. The index that keeps them is task-index.ts.
 */
import type { TaskView } from '../coordinator/view.ts'
import type { TaskDoc, TaskStatus } from '../ports/store.ts'

export const TASK_STATUSES: readonly TaskStatus[] = ['queued', 'running', 'cancelling', 'finished', 'failed', 'cancelled']
const TERMINAL_NODE: ReadonlySet<string> = new Set(['finished', 'failed', 'cancelled', 'skipped'])

export interface TaskSummary {
  id: string
  status: TaskStatus
  created_at_ms: number
  updated_at_ms: number
  finished_at_ms: number | null
  /** Distinct node types of the graph, sorted. */
  types: string[]
  nodes: number
  /** Nodes in a terminal state when the summary was last read in full. */
  nodes_done: number
  error: string | null
  /** Changed since last read in full (nodes_done, error may be behind). */
  stale: boolean
}

export interface TaskQuery {
  statuses?: readonly TaskStatus[]
  type?: string
  createdAfterMs?: number
  createdBeforeMs?: number
  /** Ids containing this text. */
  idContains?: string
  /**
   * Where the page starts (newest first): `offset` rows in, or, so that a page stays put while
   * tasks arrive, end or leave a status, next to a row by its position in the order (keyset):
   * `before` the rows older than it, `after` the newer ones closest to it; `last` the oldest rows.
   */
  offset: number
  before?: TaskCursor
  after?: TaskCursor
  last?: boolean
  limit: number
}

/** A position in the list (newest first: created_at_ms, then id, both descending). */
export interface TaskCursor {
  created_at_ms: number
  id: string
}

/** Whether `s` comes before (is newer than) cursor `c` in the list's order. */
export function newerThan(s: TaskSummary, c: TaskCursor): boolean {
  return s.created_at_ms > c.created_at_ms || (s.created_at_ms === c.created_at_ms && s.id > c.id)
}

export interface TaskPage {
  /** Tasks matching every filter. */
  total: number
  /** Per status, tasks matching the filters other than status (the live counts). */
  counts: Record<TaskStatus, number>
  /** Tasks in the store. */
  all: number
  /** Matching rows before the page's first. */
  offset: number
  items: TaskSummary[]
}

export function summaryOf(doc: TaskDoc | TaskView): TaskSummary {
  const nodes = Array.isArray(doc.nodes) ? doc.nodes : Object.values(doc.nodes)
  const types = 'graph' in doc ? doc.graph.nodes.map((n) => n.type) : nodes.map((n) => n.type)
  return {
    id: doc.id,
    status: doc.status,
    created_at_ms: doc.created_at_ms,
    updated_at_ms: doc.updated_at_ms,
    finished_at_ms: doc.finished_at_ms,
    types: [...new Set(types)].sort(),
    nodes: nodes.length,
    nodes_done: nodes.filter((n) => TERMINAL_NODE.has(n.status)).length,
    error: doc.error,
    stale: false,
  }
}

export function emptyCounts(): Record<TaskStatus, number> {
  return { queued: 0, running: 0, cancelling: 0, finished: 0, failed: 0, cancelled: 0 }
}

/** Calls `fn` on each of `items`, `limit` at a time. */
export async function eachLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  const lane = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++] as T)
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane))
}
