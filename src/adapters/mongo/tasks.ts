/**
 * Tasks on MongoDB: a snapshot document per task in `tasks` (rewritten rarely, at version `v`) and
 * its journal in `journal`, one insert-only document per entry.
 *
 * - `tasks`: plain `id` (= `_id`), `status`, timestamps, `v`, `coordinator.cancelled` (Python
 *   workers read `id` and `coordinator.cancelled`); nodes as a map `nodes.<node_id>` (node ids are
 *   checked against NODE_ID_PATTERN before they become keys); user JSON as itself or as
 *   `<field>_json` text (codec.ts).
 * - `journal`: `{_id: journalKey(task_id, seq), task_id, seq, at_ms, writer, body}` where `body` is
 *   the whole entry as JSON text, so user JSON never meets the server's key rules. The unique
 *   `_id` fences writers: appending is one unordered `insertMany`, inserts being what FerretDB
 *   serves in constant time (its lookups by `_id` scan the collection).
 */
import { type Document, MongoServerError } from 'mongodb'
import { ErrorCode, FlowkitError } from '../../errors.ts'
import type { GraphSpec } from '../../graph/types.ts'
import { applyJournal } from '../../model/journal.ts'
import type { JournalEntry, VersionedTask } from '../../model/journal.ts'
import type { NodeState, RunView, TaskDoc, TaskStatus } from '../../model/state.ts'
import { assertNodeId, deepFreeze, journalKey, withVersion } from '../../ports/store-rules.ts'
import { JSON_SUFFIX, decodeFields, encodeFields, sanitize, setField } from './codec.ts'
import { isDuplicateKeyError, mapMongoError } from './errors.ts'
import { type Collections, limitOf, num, updateOf, writeErrorsOf } from './schema.ts'
import { RecentMap } from '../../util/recent.ts'

const TASK_STRUCTURED: ReadonlySet<string> = new Set(['id', 'nodes', 'coordinator', 'v', 'sent_through', 'batches_json', 'batches_in_rows'])
/** A snapshot whose stored status is one of these may be behind its journal's status. */
const ACTIVE: readonly TaskStatus[] = ['queued', 'running', 'cancelling']
const GRAPH_CACHE_SIZE = 2000
/** Snapshots merged per journal read when listTasks has a limit. */
const LIST_CHUNK = 200
/** Conflicting entries of one append read back by separate lookups (more: one `$in` query). */
const FEW_CONFLICTS = 4

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
function isFlowkitTaskDoc(doc: Document): boolean {
  const nodes = doc['nodes']
  return nodes !== null && typeof nodes === 'object' && !Array.isArray(nodes)
}

function decodeTask(doc: Document): TaskDoc {
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

function decodeEntry(doc: Document): JournalEntry | null {
  const body = doc['body']
  if (typeof body !== 'string') return null
  try {
    return JSON.parse(body) as JournalEntry
  } catch (err) {
    throw new FlowkitError(ErrorCode.StoreError, `journal entry ${String(doc['_id'])} is not valid JSON`, { cause: err })
  }
}

/** The task as read: its version and sent mark ride along as metadata (the coordinator resumes from them). */
function withoutVersion(t: VersionedTask): TaskDoc {
  const { v, sent_through, batches, batches_in_rows, ...task } = t
  return withVersion(task as TaskDoc, v, sent_through, batches, batches_in_rows === true)
}

/** Journal lookups by `_id` in the first round of a probe, and at most per round (see #probe). */
const PROBE_FIRST = 2
const PROBE_MAX = 64
/** Up to this many tasks, FerretDB reads their journal entries by `_id` (more: one scan). */
const PROBE_TASKS = 8

/** Task and journal operations; holds the decoded graphs (a graph never changes after creation). */
export class MongoTasks {
  readonly #graphs = new RecentMap<string, GraphSpec>(GRAPH_CACHE_SIZE)

  async create(c: Collections, doc: Record<string, unknown>): Promise<void> {
    try {
      await c.tasks.insertOne(doc)
    } catch (err) {
      if (isDuplicateKeyError(err)) {
        throw new FlowkitError(ErrorCode.DuplicateKey, `task ${String(doc['id'])} already exists`, {
          cause: err,
          details: { task_id: String(doc['id']) },
        })
      }
      throw err
    }
  }

  /** One unordered insertMany; per document null, or the error createTask would throw. */
  async createMany(c: Collections, docs: Record<string, unknown>[]): Promise<(Error | null)[]> {
    const out: (Error | null)[] = docs.map(() => null)
    if (docs.length === 0) return out
    try {
      await c.tasks.insertMany(docs, { ordered: false })
    } catch (err) {
      const errors = writeErrorsOf(err)
      if (errors === null) throw err
      for (const we of errors) {
        const single = new MongoServerError({ message: we.errmsg ?? 'write error', errmsg: we.errmsg, code: we.code })
        const id = String(docs[we.index]?.['id'])
        out[we.index] = isDuplicateKeyError(single)
          ? new FlowkitError(ErrorCode.DuplicateKey, `task ${id} already exists`, { cause: single, details: { task_id: id } })
          : mapMongoError(single, 'createTask')
      }
    }
    return out
  }

  /** Projection that leaves the graph out when this store already holds it decoded. */
  #projection(taskId: string): Document | undefined {
    return this.#graphs.has(taskId) ? { graph: 0, [`graph${JSON_SUFFIX}`]: 0 } : undefined
  }

  /** Decodes a snapshot, taking the graph from the cache (or caching the one it carries). */
  #decodeSnapshot(doc: Document): VersionedTask {
    const id = doc['id'] as string
    if (this.#graphs.has(id)) {
      // Already decoded once: skip parsing the (immutable) graph again.
      delete doc['graph']
      delete doc[`graph${JSON_SUFFIX}`]
    }
    const task = decodeTask(doc) as VersionedTask
    if (doc['graph'] !== undefined || doc[`graph${JSON_SUFFIX}`] !== undefined) {
      const graph = deepFreeze(task.graph)
      this.#graphs.set(id, graph)
      task.graph = graph
    } else {
      const cached = this.#graphs.get(id)
      if (cached === undefined) throw new FlowkitError(ErrorCode.StoreError, `task ${id}: graph left out of a read but not cached`)
      task.graph = cached
    }
    const v = doc['v']
    task.v = typeof v === 'number' ? v : 0
    const sent = doc['sent_through']
    if (typeof sent === 'number') task.sent_through = sent
    const batches = doc['batches_json']
    if (typeof batches === 'string') task.batches = JSON.parse(batches) as VersionedTask['batches'] & object
    if (doc['batches_in_rows'] === true) task.batches_in_rows = true
    return task
  }

  /**
   * The journal entries of one task after `after`, read by exact `_id` (a task's entries are
   * numbered without gaps, retention deleting only its oldest ones): rounds of lookups in parallel, each round twice the last, until one misses.
   * On FerretDB (1.24, SQLite) a filter on other fields is evaluated by FerretDB on every stored
   * document (about 48 µs per 2 KB document: 960 ms for a journal of 20,000 entries), a lookup by
   * exact `_id` by SQLite (4.5 µs per document scanned, stopping at the match): reading one
   * task's few entries this way took 67–286 ms instead of 741–807 ms with 20,000 entries.
   */
  async #probe(c: Collections, taskId: string, after: number): Promise<JournalEntry[]> {
    const out: JournalEntry[] = []
    for (let next = after + 1, round = PROBE_FIRST; ; next += round, round = Math.min(round * 2, PROBE_MAX)) {
      const seqs = Array.from({ length: round }, (_, i) => next + i)
      const docs = await Promise.all(seqs.map((seq) => c.journal.findOne({ _id: journalKey(taskId, seq) as never })))
      for (const d of docs) {
        if (d === null) return out
        const e = decodeEntry(d)
        if (e !== null) out.push(e)
      }
    }
  }

  /** Snapshots with their journal entries after their versions applied (one journal read; on FerretDB, a few tasks by `_id`). */
  async #merge(c: Collections, docs: Document[], ferret = false): Promise<TaskDoc[]> {
    const snaps = docs.map((d) => this.#decodeSnapshot(d))
    if (snaps.length === 0) return []
    if (ferret && snaps.length <= PROBE_TASKS) {
      const entries = await Promise.all(snaps.map((s) => this.#probe(c, s.id, s.v)))
      return snaps.map((s, i) => withoutVersion(applyJournal(s, entries[i] ?? [])))
    }
    const byVersion = new Map<number, string[]>()
    for (const s of snaps) {
      const ids = byVersion.get(s.v)
      if (ids) ids.push(s.id)
      else byVersion.set(s.v, [s.id])
    }
    const clauses = [...byVersion].map(([v, ids]) => ({ task_id: ids.length === 1 ? ids[0] : { $in: ids }, seq: { $gt: v } }))
    const query = clauses.length === 1 ? (clauses[0] as Document) : { $or: clauses }
    const entries = new Map<string, JournalEntry[]>()
    for (const doc of await c.journal.find(query).toArray()) {
      const e = decodeEntry(doc)
      if (e === null) continue
      const list = entries.get(e.task_id)
      if (list) list.push(e)
      else entries.set(e.task_id, [e])
    }
    return snaps.map((s) => withoutVersion(applyJournal(s, entries.get(s.id) ?? [])))
  }

  async get(c: Collections, taskId: string, ferret = false): Promise<TaskDoc | null> {
    const projection = this.#projection(taskId)
    const doc = await c.tasks.findOne({ _id: taskId as never }, projection ? { projection } : {})
    if (!doc || !isFlowkitTaskDoc(doc)) return null
    return (await this.#merge(c, [doc], ferret))[0] ?? null
  }

  async runView(c: Collections, taskId: string, nodeId: string): Promise<RunView | null> {
    const projection = { id: 1, coordinator: 1, [`nodes.${nodeId}`]: 1 }
    // Ours are keyed by _id; a Python coordinator's task is found by its `id` field.
    const doc = (await c.tasks.findOne({ _id: taskId as never }, { projection })) ?? (await c.tasks.findOne({ id: taskId }, { projection }))
    if (!doc) return null
    const coordinator = doc['coordinator'] !== null && typeof doc['coordinator'] === 'object' ? decodeFields(doc['coordinator'] as Record<string, unknown>) : {}
    const nodes = doc['nodes'] as Record<string, Record<string, unknown>> | undefined
    const raw = nodes !== null && typeof nodes === 'object' && Object.hasOwn(nodes, nodeId) ? nodes[nodeId] : undefined
    const vars = coordinator['vars']
    return {
      cancelled: coordinator['cancelled'] === true,
      vars: vars !== null && typeof vars === 'object' && !Array.isArray(vars) ? (vars as Record<string, unknown>) : {},
      node: raw !== null && typeof raw === 'object' ? (decodeFields(raw) as unknown as NodeState) : null,
    }
  }

  /**
   * Tasks whose current status is in `statuses`, oldest first. A snapshot can be behind its
   * journal only while its stored status is active, so the candidates are the snapshots stored
   * with a requested or an active status; they are merged, then filtered.
   */
  async list(c: Collections, filter: { statuses?: readonly TaskStatus[]; limit?: number }): Promise<TaskDoc[]> {
    const limit = limitOf(filter.limit)
    const statuses = filter.statuses
    if (limit === 0 || statuses?.length === 0) return []
    const sort = { created_at_ms: 1, id: 1 } as const
    // Only task documents in flowkit's layout (a Python coordinator may share the collection).
    if (statuses === undefined) {
      let cursor = c.tasks.find({ nodes: { $exists: true } }).sort(sort)
      if (limit !== null) cursor = cursor.limit(limit)
      return this.#merge(c, await cursor.toArray())
    }
    const stored = [...new Set<TaskStatus>([...statuses, ...ACTIVE])]
    const cursor = c.tasks.find({ status: { $in: stored }, nodes: { $exists: true } }).sort(sort)
    const keep = (rows: TaskDoc[]) => rows.filter((t) => statuses.includes(t.status))
    if (limit === null) return keep(await this.#merge(c, await cursor.toArray()))
    const out: TaskDoc[] = []
    try {
      let chunk: Document[] = []
      const flush = async () => {
        out.push(...keep(await this.#merge(c, chunk)))
        chunk = []
      }
      for await (const doc of cursor) {
        chunk.push(doc)
        if (chunk.length >= LIST_CHUNK) {
          await flush()
          if (out.length >= limit) break
        }
      }
      if (chunk.length > 0 && out.length < limit) await flush()
    } finally {
      await cursor.close()
    }
    return out.slice(0, limit)
  }

  /**
   * One unordered insertMany of every entry. A duplicate `_id` is our own retried write when the
   * stored entry has the same writer (true), another writer's (false); other errors are thrown.
   */
  async append(c: Collections, docs: Record<string, unknown>[]): Promise<boolean[]> {
    const out = docs.map(() => true)
    if (docs.length === 0) return out
    try {
      await c.journal.insertMany(docs, { ordered: false })
    } catch (err) {
      const errors = writeErrorsOf(err)
      if (errors === null) throw err
      const dups: number[] = []
      for (const we of errors) {
        const single = new MongoServerError({ message: we.errmsg ?? 'write error', errmsg: we.errmsg, code: we.code })
        if (!isDuplicateKeyError(single)) throw mapMongoError(single, 'appendJournal')
        dups.push(we.index)
      }
      const ids = dups.map((i) => docs[i]?.['_id'] as string)
      const projection = { _id: 1, writer: 1 }
      // FerretDB filters a lookup by exact _id about 8 times faster than an `$in` (both scan):
      // a few conflicts are read one by one, a fenced writer's whole batch at once.
      const held =
        ids.length <= FEW_CONFLICTS
          ? (await Promise.all(ids.map((id) => c.journal.findOne({ _id: id as never }, { projection })))).filter((d) => d !== null)
          : await c.journal.find({ _id: { $in: ids } as never }, { projection }).toArray()
      const writerOf = new Map(held.map((d) => [String(d['_id']), d['writer']]))
      for (const i of dups) out[i] = writerOf.get(String(docs[i]?.['_id'])) === docs[i]?.['writer']
    }
    return out
  }

  /** Entries of these tasks after `afterSeq`, in the order of `taskIds`, then by seq. */
  async read(c: Collections, taskIds: readonly string[], afterSeq: number, ferret = false): Promise<JournalEntry[]> {
    if (taskIds.length === 0 || Number.isNaN(afterSeq) || afterSeq === Number.POSITIVE_INFINITY) return []
    const after = afterSeq === Number.NEGATIVE_INFINITY ? 0 : Math.max(0, Math.floor(afterSeq))
    const ids = [...new Set(taskIds)]
    // From the start, a query: retention (purgeBefore) deletes a task's oldest entries.
    if (ferret && after > 0 && ids.length <= PROBE_TASKS) {
      const byTask = new Map(ids.map((id, i) => [id, i]))
      const lists = await Promise.all(ids.map((id) => this.#probe(c, id, after)))
      return taskIds.flatMap((id) => lists[byTask.get(id) as number] ?? [])
    }
    const query = { task_id: ids.length === 1 ? ids[0] : { $in: ids }, seq: { $gt: after } }
    const byTask = new Map<string, JournalEntry[]>()
    for (const doc of await c.journal.find(query).toArray()) {
      const e = decodeEntry(doc)
      if (e === null) continue
      const list = byTask.get(e.task_id)
      if (list) list.push(e)
      else byTask.set(e.task_id, [e])
    }
    return taskIds.flatMap((id) => (byTask.get(id) ?? []).slice().sort((a, b) => a.seq - b.seq))
  }

  /** Rewrites the snapshot when the stored version is lower (or absent). True when written. */
  async writeSnapshot(c: Collections, taskId: string, v: number, update: { set: Record<string, unknown>; unset: Record<string, ''> }, ferret = false): Promise<boolean> {
    if (!Number.isFinite(v)) return false
    if (ferret) {
      // FerretDB (1.x on SQLite) evaluates a filter beyond `_id` on every document of the
      // collection: the guarded update below took 77 ms per call with 2,000 tasks (and a `v` range
      // alone 745 ms), a read of `v` by _id then an update by _id and layout 15 ms. Not atomic: a
      // snapshot overtaken in between can replace a newer one, which costs a longer journal replay,
      // never a wrong state (readers and recovery apply the journal after the snapshot's `v`).
      const held = await c.tasks.findOne({ _id: taskId as never }, { projection: { v: 1 } })
      if (held === null || (typeof held['v'] === 'number' && held['v'] >= v)) return false
      const res = await c.tasks.updateOne({ _id: taskId as never, nodes: { $exists: true } }, updateOf(update.set, update.unset))
      return res.matchedCount > 0
    }
    const res = await c.tasks.updateOne(
      { _id: taskId as never, nodes: { $exists: true }, $or: [{ v: { $lt: v } }, { v: { $exists: false } }] },
      updateOf(update.set, update.unset),
    )
    return res.matchedCount > 0
  }
}
