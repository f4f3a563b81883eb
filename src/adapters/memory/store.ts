/**
 * In-process Store with the semantics the MongoDB store has (the conformance suite in
 * test/conformance/store.suite.ts pins them down for both):
 * - documents are deep-copied on the way in and out (no shared references with callers);
 * - every verb is atomic (it runs synchronously between two awaits of the caller);
 * - unique keys carry dedup (task id, event key, stream claim, outbox id);
 * - strings order by code point, i.e. like MongoDB's binary comparison of UTF-8;
 * - `undefined` is handled like the MongoDB driver with `ignoreUndefined: true`: patch keys and
 *   object fields holding it are dropped (a patch key is then neither set nor unset), array
 *   elements holding it become null;
 * - a `limit` <= 0 returns nothing (MongoDB's `limit(0)` would mean "no limit": adapters must
 *   short-circuit it).
 */
import { setImmediate as yieldToLoop } from 'node:timers/promises'
import { ErrorCode, FlowkitError } from '../../errors.ts'
import type {
  ArtifactDoc,
  AttemptClaim,
  Checkpoint,
  CheckpointWrite,
  ArtifactQuery,
  ArtifactWrite,
  BatchMetricsRow,
  BatchMetricsWrite,
  JournalEntry,
  NodeState,
  OutboxEnqueue,
  OutboxRow,
  OutboxStatus,
  RunView,
  Store,
  StreamClaim,
  TaskDoc,
  TaskStatus,
  VersionedTask,
  WorkerInfo,
  WorkerStateDoc,
} from '../../ports/store.ts'
import { applyJournal } from '../../model/journal.ts'
import { assertNodeId, compareCodePoints, deepFreeze, newestPerBatch, withVersion } from '../../ports/store-rules.ts'
import { canonicalJson, outboxId } from '../../util/ids.ts'
import { MemoryArtifacts } from './artifacts.ts'
import { MemoryAttempts } from './attempts.ts'

export { compareCodePoints } from '../../ports/store-rules.ts'

/** Calls between two yields to the event loop: an in-process store must not starve timers and I/O. */
const YIELD_EVERY = 64



interface MetricsRow extends BatchMetricsRow {
  task_id: string
  inserted_at_ms: number
}

/** Deep copy of a stored (JSON) document on its way out. */
const clone = <T>(v: T): T => (v === undefined ? v : (JSON.parse(JSON.stringify(v)) as T))

/** A task on its way out: a deep copy, except the graph, which is immutable and shared (frozen). */
function cloneTask(t: VersionedTask): TaskDoc {
  const { graph, v, sent_through, batches, ...rest } = t
  const out = clone(rest) as unknown as TaskDoc
  out.graph = graph
  return withVersion(out, v, sent_through, clone(batches ?? {}))
}

/**
 * Deep copy of a caller's value on its way in, with `undefined` treated as BSON does under the
 * driver option `ignoreUndefined: true` (and as JSON does): object fields holding `undefined` are
 * dropped, `undefined` array elements (and holes) become `null`.
 */
function ingest<T>(v: T): T {
  // A JSON round trip does exactly what a document store does with JSON data: undefined fields
  // dropped, undefined array elements (and holes) null, NaN/±Infinity null, -0 as 0.
  if (v === undefined) return v
  return JSON.parse(JSON.stringify(v)) as T
}

/**
 * A snapshot's node states on their way in. The coordinator's are deep-frozen (it never changes a
 * node state in place): those are kept as they are (documents are copied on the way out); any
 * other is copied in.
 */
function ingestNodes(nodes: Record<string, NodeState>): Record<string, NodeState> {
  const out: Record<string, NodeState> = {}
  for (const [id, n] of Object.entries(nodes)) {
    if (!Object.isFrozen(n)) return ingest(nodes)
    out[id] = n
  }
  return out
}

function limitOf(limit: number | undefined): number {
  if (limit === undefined) return Number.POSITIVE_INFINITY
  return limit > 0 ? Math.floor(limit) : 0
}

function take<T>(rows: T[], limit: number | undefined): T[] {
  const n = limitOf(limit)
  return n === Number.POSITIVE_INFINITY ? rows : rows.slice(0, n)
}

export class MemoryStore implements Store {
  #closed = false
  #calls = 0
  readonly #tasks = new Map<string, VersionedTask>()
  /** Journal entries (as JSON text: stored, not shared) by task, then seq. */
  readonly #journal = new Map<string, Map<number, { writer: string; at_ms: number; json: string | null; entry: JournalEntry | null }>>()
  /** Batch metrics rows by task, then (node, batch_uid, epoch). */
  readonly #metrics = new Map<string, Map<string, MetricsRow>>()
  readonly #arts = new MemoryArtifacts()
  readonly #attempts = new MemoryAttempts()
  readonly #outbox = new Map<string, OutboxRow>()
  readonly #workers = new Map<string, WorkerInfo>()
  readonly #workerState = new Map<string, string>()

  #open(): void {
    if (this.#closed) throw new FlowkitError(ErrorCode.Closed, 'store is closed')
  }

  /** Every YIELD_EVERY calls, lets the event loop run (timers, I/O) before answering. */
  async #pace(): Promise<void> {
    if (++this.#calls % YIELD_EVERY === 0) await yieldToLoop()
    this.#open()
  }

  async init(): Promise<void> {
    this.#open()
  }

  async close(): Promise<void> {
    this.#closed = true
  }

  // ---- tasks: snapshot + journal

  async createTask(task: TaskDoc): Promise<void> {
    await this.#pace()
    for (const nodeId of Object.keys(task.nodes)) assertNodeId(nodeId)
    if (this.#tasks.has(task.id)) {
      throw new FlowkitError(ErrorCode.DuplicateKey, `task ${task.id} already exists`, {
        details: { task_id: task.id },
      })
    }
    // The graph is immutable: a caller's graph that is already frozen is kept as is (no copy).
    const { graph, ...rest } = task
    const stored = ingest({ ...rest, v: 0 }) as VersionedTask
    stored.graph = Object.isFrozen(graph) ? graph : deepFreeze(ingest(graph))
    this.#tasks.set(task.id, stored)
  }

  async createTasks(tasks: readonly TaskDoc[]): Promise<(Error | null)[]> {
    const out: (Error | null)[] = []
    for (const t of tasks) {
      try {
        await this.createTask(t)
        out.push(null)
      } catch (err) {
        out.push(err as Error)
      }
    }
    return out
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

  async getTask(taskId: string): Promise<TaskDoc | null> {
    await this.#pace()
    const t = this.#current(taskId)
    return t ? cloneTask(t) : null
  }

  async getRunView(taskId: string, nodeId: string): Promise<RunView | null> {
    await this.#pace()
    assertNodeId(nodeId)
    const t = this.#tasks.get(taskId)
    if (!t) return null
    const node = Object.hasOwn(t.nodes, nodeId) ? t.nodes[nodeId] : undefined
    return clone({ cancelled: t.coordinator.cancelled, vars: t.coordinator.vars, node: node ?? null })
  }

  async listTasks(filter: { statuses?: readonly TaskStatus[]; limit?: number } = {}): Promise<TaskDoc[]> {
    await this.#pace()
    const statuses = filter.statuses
    const rows = [...this.#tasks.keys()]
      .map((id) => this.#current(id) as VersionedTask)
      .filter((t) => statuses === undefined || statuses.includes(t.status))
      .sort((a, b) => a.created_at_ms - b.created_at_ms || compareCodePoints(a.id, b.id))
    return take(rows, filter.limit).map(cloneTask)
  }

  async listTaskIds(statuses: readonly TaskStatus[]): Promise<string[]> {
    await this.#pace()
    return [...this.#tasks.values()].filter((t) => statuses.includes(t.status)).map((t) => t.id)
  }

  async appendJournal(entries: readonly JournalEntry[]): Promise<boolean[]> {
    await this.#pace()
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
      // An entry handed over deep-frozen (the coordinator's) cannot change: kept as is, copied on
      // the way out; any other is copied in.
      j.set(e.seq, Object.isFrozen(e) ? { writer: e.writer, at_ms: e.at_ms, json: null, entry: e } : { writer: e.writer, at_ms: e.at_ms, json: JSON.stringify(e), entry: null })
      return true
    })
  }

  async readJournal(taskIds: readonly string[], afterSeq = 0): Promise<JournalEntry[]> {
    await this.#pace()
    return taskIds.flatMap((id) => this.#entries(id, afterSeq))
  }

  async writeSnapshot(task: VersionedTask, now: number): Promise<boolean> {
    await this.#pace()
    for (const nodeId of Object.keys(task.nodes)) assertNodeId(nodeId)
    const stored = this.#tasks.get(task.id)
    if (stored === undefined || stored.v >= task.v) return false
    const t = ingest({
      status: task.status,
      coordinator: task.coordinator,
      result: task.result,
      error: task.error,
      finished_at_ms: task.finished_at_ms,
    })
    this.#tasks.set(task.id, { ...stored, ...t, nodes: ingestNodes(task.nodes), updated_at_ms: now, v: task.v, sent_through: task.sent_through ?? 0, batches: ingest(task.batches ?? {}) })
    return true
  }

  // ---- batch metrics

  async insertBatchMetrics(rows: readonly BatchMetricsWrite[], now: number): Promise<void> {
    await this.#pace()
    for (const row of rows) assertNodeId(row.node_id)
    for (const row of rows) {
      let m = this.#metrics.get(row.task_id)
      if (m === undefined) {
        m = new Map()
        this.#metrics.set(row.task_id, m)
      }
      const key = canonicalJson([row.node_id, row.batch_uid, row.attempt_epoch])
      if (m.has(key)) continue
      m.set(key, {
        task_id: row.task_id,
        node_id: row.node_id,
        batch_uid: row.batch_uid,
        attempt_epoch: row.attempt_epoch,
        metrics: ingest(row.metrics),
        inserted_at_ms: now,
      })
    }
  }

  async listBatchMetrics(taskId: string, nodeId?: string): Promise<BatchMetricsRow[]> {
    await this.#pace()
    const rows = [...(this.#metrics.get(taskId)?.values() ?? [])].filter((r) => nodeId === undefined || r.node_id === nodeId)
    return newestPerBatch(rows).map((r) => ({ node_id: r.node_id, batch_uid: r.batch_uid, attempt_epoch: r.attempt_epoch, metrics: clone(r.metrics) }))
  }

  async purgeBefore(cutoff: number): Promise<{ journal: number; outbox: number }> {
    await this.#pace()
    let journal = 0
    let outbox = 0
    for (const j of this.#journal.values()) {
      for (const [seq, row] of j) {
        if (row.at_ms < cutoff) {
          j.delete(seq)
          journal++
        }
      }
    }
    this.#attempts.purge(cutoff)
    for (const [k, row] of this.#outbox) {
      if (row.status === 'sent' && (row.sent_at_ms ?? Number.POSITIVE_INFINITY) < cutoff) {
        this.#outbox.delete(k)
        outbox++
      }
    }
    return { journal, outbox }
  }

  // ---- artifacts

  async upsertArtifact(artifact: ArtifactWrite, now: number): Promise<boolean> {
    await this.#pace()
    return this.#arts.upsert(artifact, now)
  }

  async upsertArtifacts(artifacts: readonly ArtifactWrite[], now: number): Promise<boolean[]> {
    const out: boolean[] = []
    for (const a of artifacts) out.push(await this.upsertArtifact(a, now))
    return out
  }

  async listArtifacts(taskId: string, query: ArtifactQuery = {}): Promise<ArtifactDoc[]> {
    await this.#pace()
    return this.#arts.list(taskId, query)
  }

  async getArtifact(taskId: string, nodeId: string, batchUid: string | null): Promise<ArtifactDoc | null> {
    await this.#pace()
    return this.#arts.get(taskId, nodeId, batchUid)
  }

  // ---- attempts

  async claimAttempt(claim: AttemptClaim, now: number): Promise<boolean> {
    await this.#pace()
    return this.#attempts.claim(claim, now)
  }

  async claimAttempts(claims: readonly AttemptClaim[], now: number): Promise<boolean[]> {
    await this.#pace()
    return claims.map((c) => this.#attempts.claim(c, now))
  }

  async saveCheckpoint(cp: CheckpointWrite, now: number): Promise<boolean> {
    await this.#pace()
    return this.#attempts.saveCheckpoint(cp, now)
  }

  async getCheckpoint(taskId: string, nodeId: string): Promise<Checkpoint | null> {
    await this.#pace()
    return this.#attempts.getCheckpoint(taskId, nodeId)
  }

  // ---- stream progress

  async claimStreamBatches(claims: readonly StreamClaim[], now: number): Promise<boolean[]> {
    const out: boolean[] = []
    for (const c of claims) out.push(await this.claimStreamBatch(c, now))
    return out
  }

  async claimStreamBatch(claim: StreamClaim, now: number): Promise<boolean> {
    await this.#pace()
    return this.#arts.claimStream(claim, now)
  }

  // ---- outbox

  async outboxEnqueue(row: OutboxEnqueue, now: number, parked?: { attempts: number; error: string }): Promise<boolean> {
    await this.#pace()
    const key = row.key ?? null
    const id = outboxId(row.topic, key, row.dedup_id)
    if (this.#outbox.has(id)) return false
    this.#outbox.set(id, {
      id,
      topic: row.topic,
      key,
      value: row.value,
      dedup_id: row.dedup_id,
      status: parked ? 'failed' : 'pending',
      attempts: parked?.attempts ?? 0,
      next_attempt_at_ms: now,
      last_error: parked?.error ?? null,
      created_at_ms: now,
      updated_at_ms: now,
      sent_at_ms: null,
    })
    return true
  }

  async outboxClaimDue(now: number, limit: number, claimUntil: number): Promise<OutboxRow[]> {
    await this.#pace()
    const due = [...this.#outbox.values()]
      .filter((r) => r.status === 'pending' && r.next_attempt_at_ms <= now)
      .sort(
        (a, b) =>
          a.next_attempt_at_ms - b.next_attempt_at_ms ||
          a.created_at_ms - b.created_at_ms ||
          compareCodePoints(a.id, b.id),
      )
    const claimed = due.slice(0, limitOf(limit))
    for (const r of claimed) {
      r.next_attempt_at_ms = claimUntil
      r.updated_at_ms = now
    }
    return claimed.map(clone)
  }

  /** Pending → sent. A row that is not pending (sent, dead-lettered, unknown) is left as is. */
  async outboxMarkSent(id: string, now: number): Promise<void> {
    await this.#pace()
    const r = this.#outbox.get(id)
    if (r?.status !== 'pending') return
    r.status = 'sent'
    r.value = '' // kept for audit without its payload
    r.sent_at_ms = now
    r.updated_at_ms = now
  }

  /** Stays pending, due again at `nextAttemptAt`. Only applies to a pending row. */
  async outboxMarkRetry(id: string, attempts: number, nextAttemptAt: number, error: string, now: number): Promise<void> {
    await this.#pace()
    const r = this.#outbox.get(id)
    if (r?.status !== 'pending') return
    r.attempts = attempts
    r.next_attempt_at_ms = nextAttemptAt
    r.last_error = error
    r.updated_at_ms = now
  }

  /** Pending → failed (dead letter). Only applies to a pending row. */
  async outboxMarkFailed(id: string, attempts: number, error: string, now: number): Promise<void> {
    await this.#pace()
    const r = this.#outbox.get(id)
    if (r?.status !== 'pending') return
    r.status = 'failed'
    r.attempts = attempts
    r.last_error = error
    r.updated_at_ms = now
  }

  /** Rows ordered by created_at_ms then id. */
  async outboxList(filter: { status?: OutboxStatus; limit?: number } = {}): Promise<OutboxRow[]> {
    await this.#pace()
    const rows = [...this.#outbox.values()]
      .filter((r) => filter.status === undefined || r.status === filter.status)
      .sort((a, b) => a.created_at_ms - b.created_at_ms || compareCodePoints(a.id, b.id))
    return take(rows, filter.limit).map(clone)
  }

  /** Failed → pending, due `now`, attempts reset to 0 (last_error kept). False otherwise. */
  async outboxRequeue(id: string, now: number): Promise<boolean> {
    await this.#pace()
    const r = this.#outbox.get(id)
    if (r?.status !== 'failed') return false
    r.status = 'pending'
    r.attempts = 0
    r.next_attempt_at_ms = now
    r.updated_at_ms = now
    return true
  }

  // ---- workers

  async upsertWorker(info: WorkerInfo): Promise<void> {
    await this.#pace()
    this.#workers.set(info.worker_id, ingest(info))
  }

  /** Ordered by worker_id. */
  async listWorkers(): Promise<WorkerInfo[]> {
    await this.#pace()
    return [...this.#workers.values()].sort((a, b) => compareCodePoints(a.worker_id, b.worker_id)).map(clone)
  }

  async saveWorkerState(state: WorkerStateDoc): Promise<void> {
    await this.#pace()
    // Kept as JSON text: written on every change of a worker's runs, read only when it restarts.
    this.#workerState.set(state.worker_id, JSON.stringify(state))
  }

  async getWorkerState(workerId: string): Promise<WorkerStateDoc | null> {
    await this.#pace()
    const s = this.#workerState.get(workerId)
    return s === undefined ? null : (JSON.parse(s) as WorkerStateDoc)
  }
}

