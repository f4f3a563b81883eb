/**
 * The task journal: one entry per task per coordinator flush, holding everything that flush
 * changed for the task (the full new state of every node it touched, the task fields it changed,
 * the commands it emitted and the events it applied). Entries of a task are numbered 1, 2, 3, …
 * (`seq`); an entry's `(task_id, seq)` is unique in the store, so two writers that start from the
 * same version cannot both append: the loser's write is refused (fencing).
 *
 * The task document is a snapshot of the task at version `v` (the seq of the last entry it
 * includes); the current state of a task is its snapshot with every entry after `v` applied in
 * order (`applyJournal`). Node states in an entry are absolute, so applying is replacing.
 */
import type { NodeState, TaskDoc, TaskStatus } from './state.ts'

/** Task fields a flush may change (absent = unchanged). */
export interface TaskChanges {
  status?: TaskStatus
  error?: string | null
  result?: unknown
  finished_at_ms?: number | null
  vars?: Record<string, unknown>
  cancelled?: boolean
  cancel_reason?: string | null
}

export interface JournalCommand {
  topic: string
  key: string | null
  dedup_id: string
  /** TASK_START, TASK_CANCEL, CANCEL (signal), … */
  kind: string
}

export interface JournalEntry {
  task_id: string
  seq: number
  at_ms: number
  /** The coordinator instance that wrote it (tells our own retried write from another writer's). */
  writer: string
  /** What was applied, one short line per event or decision (history for operators). */
  events: string[]
  nodes: NodeState[]
  task?: TaskChanges
  commands?: JournalCommand[]
  /** Every command of the entries up to this seq has been sent (recorded with a later entry). */
  sent_through?: number
  /** Batch metrics this entry counted into node stats: [node_id, batch_uid, epoch, metrics]. */
  batches?: BatchCount[]
}

export type BatchCount = [node_id: string, batch_uid: string, epoch: number, metrics: Record<string, unknown>]

/** Per node, per batch uid: the epoch and metrics counted in the node's stats. */
export type BatchCounts = Record<string, Record<string, [epoch: number, metrics: Record<string, unknown>]>>

/**
 * A task document with its snapshot version, and the seq up to which every command was sent
 * (recovery re-issues what the state implies when commands of later entries may be unsent).
 * `batches_in_rows`: the snapshot leaves its batch ledger out (a large one): the store's batch
 * metrics rows hold it (every row up to the snapshot's version was written before it), and
 * `batches` has only what journal entries after the snapshot add.
 */
export type VersionedTask = TaskDoc & { v: number; sent_through?: number; batches?: BatchCounts; batches_in_rows?: boolean }

/** Applies journal entries (any order, any overlap with the snapshot) to a copy of `doc`. */
export function applyJournal(doc: VersionedTask, entries: readonly JournalEntry[]): VersionedTask {
  const sorted = entries.filter((e) => e.seq > doc.v).sort((a, b) => a.seq - b.seq)
  if (sorted.length === 0) return doc
  const out: VersionedTask = { ...doc, nodes: { ...doc.nodes }, coordinator: { ...doc.coordinator }, v: doc.v }
  if (doc.sent_through !== undefined) out.sent_through = doc.sent_through
  if (doc.batches !== undefined) out.batches = doc.batches
  if (doc.batches_in_rows === true) out.batches_in_rows = true
  // The batch ledger and each node's part of it are copied once (copied per batch, reading a long
  // journal cost the square of its batches: a streaming task's thousands).
  let ledger: BatchCounts | null = null
  const copied = new Set<string>()
  for (const e of sorted) {
    for (const n of e.nodes) out.nodes[n.node_id] = n
    const t = e.task
    if (t !== undefined) {
      if (t.status !== undefined) out.status = t.status
      if (t.error !== undefined) out.error = t.error
      if (t.result !== undefined) out.result = t.result
      if (t.finished_at_ms !== undefined) out.finished_at_ms = t.finished_at_ms
      if (t.vars !== undefined) out.coordinator.vars = t.vars
      if (t.cancelled !== undefined) out.coordinator.cancelled = t.cancelled
      if (t.cancel_reason !== undefined) out.coordinator.cancel_reason = t.cancel_reason
    }
    out.updated_at_ms = Math.max(out.updated_at_ms, e.at_ms)
    if (e.sent_through !== undefined) out.sent_through = Math.max(out.sent_through ?? 0, e.sent_through)
    if (e.batches !== undefined && e.batches.length > 0) {
      if (ledger === null) {
        ledger = { ...(out.batches ?? {}) }
        out.batches = ledger
      }
      for (const [node, uid, epoch, metrics] of e.batches) {
        let batches = ledger[node]
        if (batches === undefined || !copied.has(node)) {
          copied.add(node)
          batches = { ...(batches ?? {}) }
          ledger[node] = batches
        }
        batches[uid] = [epoch, metrics]
      }
    }
    out.v = e.seq
  }
  return out
}
