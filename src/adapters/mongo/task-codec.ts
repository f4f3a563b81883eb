/**
 * How a task and its journal are stored on MongoDB (tasks.ts): the snapshot document of a new
 * task and of a rewrite, a journal entry's document, and back. Node ids are checked against
 * NODE_ID_PATTERN before they become keys; user JSON goes through codec.ts.
 */
import type { Document } from 'mongodb'
import { ErrorCode, FlowkitError } from '../../errors.ts'
import type { JournalEntry, VersionedTask } from '../../model/journal.ts'
import type { NodeState, TaskDoc } from '../../model/state.ts'
import { assertNodeId, journalKey, withVersion } from '../../ports/store-rules.ts'
import { decodeFields, encodeFields, sanitize, setField } from './codec.ts'
import { num } from './schema.ts'

const TASK_STRUCTURED: ReadonlySet<string> = new Set(['id', 'nodes', 'coordinator', 'v', 'sent_through', 'batches_json', 'batches_in_rows'])

function encodeNodes(nodes: Record<string, NodeState>): Record<string, unknown> {
  const out: [string, unknown][] = []
  for (const [nodeId, node] of Object.entries(nodes)) {
    if (node !== undefined) out.push([nodeId, encodeFields(node)])
  }
  return Object.fromEntries(out)
}

/** The snapshot document of a new task, at version 0. Checks node ids first. */
export function encodeNewTask(task: TaskDoc): Record<string, unknown> {
  if (typeof task.id !== 'string') {
    throw new FlowkitError(ErrorCode.InvalidKey, 'task id must be a string', { details: { field: 'id' } })
  }
  for (const nodeId of Object.keys(task.nodes)) assertNodeId(nodeId)
  const doc = encodeFields(task, TASK_STRUCTURED)
  doc['id'] = task.id
  doc['_id'] = task.id
  if (task.nodes !== undefined) doc['nodes'] = encodeNodes(task.nodes)
  if (task.coordinator !== undefined) doc['coordinator'] = encodeFields(task.coordinator)
  doc['v'] = 0
  return doc
}

/** The journal document of an entry. Checks node ids and the seq first. */
export function encodeEntry(e: JournalEntry): Record<string, unknown> {
  for (const n of e.nodes) assertNodeId(n.node_id)
  if (typeof e.task_id !== 'string' || !Number.isSafeInteger(e.seq) || e.seq < 1) {
    throw new FlowkitError(ErrorCode.InvalidKey, `invalid journal entry key ${JSON.stringify([e.task_id, e.seq])}`, {
      details: { task_id: String(e.task_id), seq: String(e.seq) },
    })
  }
  // JSON text carries user JSON as JSON does (undefined dropped, NaN/±Infinity as null, -0 as 0).
  return { _id: journalKey(e.task_id, e.seq), task_id: e.task_id, seq: e.seq, at_ms: num(e.at_ms), writer: e.writer, body: JSON.stringify(e) }
}

/** The `$set`/`$unset` of a snapshot rewrite. Checks node ids first. */
export function encodeSnapshot(task: VersionedTask, now: number): { set: Record<string, unknown>; unset: Record<string, ''> } {
  for (const nodeId of Object.keys(task.nodes)) assertNodeId(nodeId)
  const set: Record<string, unknown> = {}
  const unset: Record<string, ''> = {}
  setField(set, unset, 'status', sanitize(task.status))
  set['nodes'] = encodeNodes(task.nodes)
  if (task.coordinator !== undefined) set['coordinator'] = encodeFields(task.coordinator)
  setField(set, unset, 'result', sanitize(task.result))
  setField(set, unset, 'error', sanitize(task.error))
  setField(set, unset, 'finished_at_ms', sanitize(task.finished_at_ms))
  set['updated_at_ms'] = num(now)
  set['v'] = num(task.v)
  set['sent_through'] = num(task.sent_through ?? 0)
  // Batch uids are user strings (any key): kept as JSON text.
  set['batches_json'] = JSON.stringify(task.batches ?? {})
  if (task.batches_in_rows === true) set['batches_in_rows'] = true
  else unset['batches_in_rows'] = ''
  return { set, unset }
}

/** A task document in flowkit's layout (a Python coordinator's documents have no `nodes` map). */
export function isFlowkitTaskDoc(doc: Document): boolean {
  const nodes = doc['nodes']
  return nodes !== null && typeof nodes === 'object' && !Array.isArray(nodes)
}

export function decodeTask(doc: Document): TaskDoc {
  const out = decodeFields(doc, TASK_STRUCTURED)
  out['id'] = doc['id']
  const nodes = doc['nodes']
  if (nodes !== null && typeof nodes === 'object') {
    out['nodes'] = Object.fromEntries(Object.entries(nodes as Record<string, Record<string, unknown>>).map(([k, v]) => [k, decodeFields(v)]))
  }
  const coordinator = doc['coordinator']
  if (coordinator !== null && typeof coordinator === 'object') out['coordinator'] = decodeFields(coordinator as Record<string, unknown>)
  return out as unknown as TaskDoc
}

export function decodeEntry(doc: Document): JournalEntry | null {
  const body = doc['body']
  if (typeof body !== 'string') return null
  try {
    return JSON.parse(body) as JournalEntry
  } catch (err) {
    throw new FlowkitError(ErrorCode.StoreError, `journal entry ${String(doc['_id'])} is not valid JSON`, { cause: err })
  }
}

/** The task as read: its version and sent mark ride along as metadata (the coordinator resumes from them). */
export function withoutVersion(t: VersionedTask): TaskDoc {
  const { v, sent_through, batches, batches_in_rows, ...task } = t
  return withVersion(task as TaskDoc, v, sent_through, batches, batches_in_rows === true)
}
