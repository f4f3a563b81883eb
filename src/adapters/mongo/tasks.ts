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
import { deepFreeze, journalKey } from '../../ports/store-rules.ts'
import { JSON_SUFFIX, decodeFields } from './codec.ts'
import { isDuplicateKeyError, mapMongoError } from './errors.ts'
import { MergedTasks } from './merged-cache.ts'
import { decodeEntry, decodeTask, isFlowkitTaskDoc, withoutVersion } from './task-codec.ts'
import { type Collections, limitOf, updateOf, writeErrorsOf } from './schema.ts'
import { RecentMap } from '../../util/recent.ts'

/** A snapshot whose stored status is one of these may be behind its journal's status. */
const ACTIVE: readonly TaskStatus[] = ['queued', 'running', 'cancelling']
const GRAPH_CACHE_SIZE = 2000
/** Snapshots merged per journal read when listTasks has a limit. */
const LIST_CHUNK = 200
/** Conflicting entries of one append read back by separate lookups (more: one `$in` query). */
const FEW_CONFLICTS = 4

/** Journal lookups by `_id` in the first round of a probe, and at most per round (see #probe). */
const PROBE_FIRST = 2
const PROBE_MAX = 64
/** Up to this many tasks, FerretDB reads their journal entries by `_id` (more: one scan). */
const PROBE_TASKS = 8
/**
 * Rounds of a probe (2 + 4 + 8 + 16 lookups) before the rest of a long backlog is read by one
 * query: every lookup by `_id` scans part of the collection too (and costs a round trip of ~3 ms),
 * so past a few dozen of them one scan costs less (a journal 480 entries ahead of its snapshot
 * took 2.4 s to probe on a collection of a few thousand entries).
 */
const PROBE_ROUNDS = 4
/**
 * How much merged state `get` keeps (node states and batch ledger entries: merged-cache.ts), so
 * that reading a task again (a dashboard's task page, a watch) reads only the journal entries
 * written since: of tasks whose journal was at least `MERGED_MIN_AHEAD` entries ahead of their
 * snapshot (a busy coordinator rewrites snapshots only when idle: a long streaming task's journal
 * runs far ahead).
 */
const MERGED_BUDGET = 50_000
const MERGED_MIN_AHEAD = 8

/** A copy of a cached merged state for a caller (the graph, frozen, is shared). */
function copyTask(t: VersionedTask): VersionedTask {
  const { graph, ...rest } = t
  const out = structuredClone(rest) as VersionedTask
  out.graph = graph
  return out
}

/** Task and journal operations; holds the decoded graphs (a graph never changes after creation). */
export class MongoTasks {
  readonly #graphs = new RecentMap<string, GraphSpec>(GRAPH_CACHE_SIZE)
  /** Merged states of tasks whose journal ran ahead of their snapshot (see MERGED_BUDGET). */
  readonly #merged = new MergedTasks(MERGED_BUDGET)

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
    for (let next = after + 1, round = PROBE_FIRST, rounds = 0; ; next += round, round = Math.min(round * 2, PROBE_MAX), rounds++) {
      // (Entries are numbered without gaps: the rest are those after the last one found.)
      if (rounds === PROBE_ROUNDS) return out.concat(await this.#scan(c, taskId, next - 1))
      const seqs = Array.from({ length: round }, (_, i) => next + i)
      const docs = await Promise.all(seqs.map((seq) => c.journal.findOne({ _id: journalKey(taskId, seq) as never })))
      for (const d of docs) {
        if (d === null) return out
        const e = decodeEntry(d)
        if (e !== null) out.push(e)
      }
    }
  }

  /** One task's journal entries after `after`, by one query, in order. */
  async #scan(c: Collections, taskId: string, after: number): Promise<JournalEntry[]> {
    const out: JournalEntry[] = []
    for (const doc of await c.journal.find({ task_id: taskId, seq: { $gt: after } }).toArray()) {
      const e = decodeEntry(doc)
      if (e !== null) out.push(e)
    }
    return out.sort((a, b) => a.seq - b.seq)
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
    if (!doc || !isFlowkitTaskDoc(doc)) {
      this.#merged.delete(taskId)
      return null
    }
    const snap = this.#decodeSnapshot(doc)
    // A merged state read before goes on from where it was, unless the snapshot passed it (retention
    // may have deleted the entries in between) or is another task's (the id was purged and reused).
    const cached = this.#merged.get(taskId)
    const base = cached !== undefined && cached.v >= snap.v && cached.created_at_ms === snap.created_at_ms ? cached : snap
    const merged = applyJournal(base, ferret ? await this.#probe(c, taskId, base.v) : await this.#scan(c, taskId, base.v))
    const keep = merged.v - snap.v >= MERGED_MIN_AHEAD && ACTIVE.includes(merged.status)
    if (keep) this.#merged.set(taskId, merged)
    else this.#merged.delete(taskId)
    return withoutVersion(base === snap && !keep ? merged : copyTask(merged))
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
