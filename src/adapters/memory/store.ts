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
import { ErrorCode, FlowkitError } from '../../errors.ts'
import { NODE_ID_PATTERN } from '../../graph/types.ts'
import type {
  ArtifactDoc,
  ArtifactQuery,
  ArtifactWrite,
  BatchMetricsWrite,
  NodeGuard,
  NodePatch,
  NodeState,
  OutboxEnqueue,
  OutboxRow,
  OutboxStatus,
  RunView,
  Store,
  StreamClaim,
  TaskDoc,
  TaskPatch,
  TaskStatus,
  WorkerInfo,
  WorkerStateDoc,
} from '../../ports/store.ts'
import { NODE_PATCH_KEYS, TASK_PATCH_KEYS } from '../../ports/store.ts'
import { canonicalJson, outboxId } from '../../util/ids.ts'



interface EventRow {
  key: string
  task_id: string
  node_id: string
  kind: string
  at_ms: number
}

interface MetricsRow {
  task_id: string
  node_id: string
  batch_uid: string
  attempt_epoch: number
  metrics: Record<string, unknown>
  updated_at_ms: number
}

interface ArtifactEntry {
  doc: ArtifactDoc
  /** Insertion sequence: the tiebreak a MongoDB adapter gets from `_id`. Kept on update. */
  seq: number
}

/** Deep copy of a stored document on its way out. */
const clone = <T>(v: T): T => structuredClone(v)

/** A task on its way out: a deep copy, except the graph, which is immutable and shared (frozen). */
function cloneTask(t: TaskDoc): TaskDoc {
  const { graph, ...rest } = t
  const out = structuredClone(rest) as TaskDoc
  out.graph = graph
  return out
}

function deepFreeze<T>(v: T): T {
  if (v !== null && typeof v === 'object' && !Object.isFrozen(v)) {
    Object.freeze(v)
    for (const x of Object.values(v)) deepFreeze(x)
  }
  return v
}

/**
 * Deep copy of a caller's value on its way in, with `undefined` treated as BSON does under the
 * driver option `ignoreUndefined: true` (and as JSON does): object fields holding `undefined` are
 * dropped, `undefined` array elements (and holes) become `null`.
 */
function ingest<T>(v: T): T {
  return dropUndefined(structuredClone(v)) as T
}

function dropUndefined(v: unknown): unknown {
  // As a document store does: JSON numbers only (NaN/±Infinity → null, -0 → 0).
  if (typeof v === 'number') return Number.isFinite(v) ? (Object.is(v, -0) ? 0 : v) : null
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) v[i] = v[i] === undefined ? null : dropUndefined(v[i])
    return v
  }
  if (v !== null && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
    const o = v as Record<string, unknown>
    for (const k of Object.keys(o)) {
      if (o[k] === undefined) delete o[k]
      else o[k] = dropUndefined(o[k])
    }
  }
  return v
}

/** Orders strings by Unicode code point (= MongoDB's byte order of UTF-8), not UTF-16 units. */
export function compareCodePoints(a: string, b: string): number {
  if (a === b) return 0
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    const ca = a.charCodeAt(i)
    const cb = b.charCodeAt(i)
    if (ca !== cb) return fixUnit(ca) - fixUnit(cb)
  }
  return a.length - b.length
}

function fixUnit(c: number): number {
  // Surrogates (D800–DFFF) encode code points above FFFF: move them above E000–FFFF.
  if (c < 0xd800) return c
  return c <= 0xdfff ? c + 0x2000 : c - 0x800
}

function assertNodeId(nodeId: unknown): asserts nodeId is string {
  if (typeof nodeId !== 'string' || !NODE_ID_PATTERN.test(nodeId)) {
    throw new FlowkitError(ErrorCode.InvalidKey, `invalid node id ${JSON.stringify(nodeId)}`, {
      details: { node_id: String(nodeId) },
    })
  }
}

function assertPatchKeys(patch: object, allowed: ReadonlySet<string>, what: string): void {
  for (const k of Object.keys(patch)) {
    if (!allowed.has(k)) {
      throw new FlowkitError(ErrorCode.InvalidKey, `${what} patch: unknown field ${JSON.stringify(k)}`, {
        details: { field: k },
      })
    }
  }
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
  #seq = 0
  readonly #tasks = new Map<string, TaskDoc>()
  readonly #events = new Map<string, EventRow>()
  readonly #metrics = new Map<string, MetricsRow>()
  readonly #artifacts = new Map<string, ArtifactEntry>()
  /** Artifact keys by task, so a listing reads one task's artifacts only. */
  readonly #artifactsByTask = new Map<string, Set<string>>()
  readonly #streamClaims = new Map<string, StreamClaim & { claimed_at_ms: number }>()
  readonly #outbox = new Map<string, OutboxRow>()
  readonly #workers = new Map<string, WorkerInfo>()
  readonly #workerState = new Map<string, WorkerStateDoc>()

  #open(): void {
    if (this.#closed) throw new FlowkitError(ErrorCode.Closed, 'store is closed')
  }

  async init(): Promise<void> {
    this.#open()
  }

  async close(): Promise<void> {
    this.#closed = true
  }

  // ---- tasks and nodes

  async createTask(task: TaskDoc): Promise<void> {
    this.#open()
    for (const nodeId of Object.keys(task.nodes)) assertNodeId(nodeId)
    if (this.#tasks.has(task.id)) {
      throw new FlowkitError(ErrorCode.DuplicateKey, `task ${task.id} already exists`, {
        details: { task_id: task.id },
      })
    }
    const stored = ingest(task)
    deepFreeze(stored.graph)
    this.#tasks.set(task.id, stored)
  }

  async getTask(taskId: string): Promise<TaskDoc | null> {
    this.#open()
    const t = this.#tasks.get(taskId)
    return t ? cloneTask(t) : null
  }

  async getRunView(taskId: string, nodeId: string): Promise<RunView | null> {
    this.#open()
    assertNodeId(nodeId)
    const t = this.#tasks.get(taskId)
    if (!t) return null
    const node = Object.hasOwn(t.nodes, nodeId) ? t.nodes[nodeId] : undefined
    return clone({ cancelled: t.coordinator.cancelled, vars: t.coordinator.vars, node: node ?? null })
  }

  async listTasks(filter: { statuses?: readonly TaskStatus[]; limit?: number } = {}): Promise<TaskDoc[]> {
    this.#open()
    const statuses = filter.statuses
    const rows = [...this.#tasks.values()]
      .filter((t) => statuses === undefined || statuses.includes(t.status))
      .sort((a, b) => a.created_at_ms - b.created_at_ms || compareCodePoints(a.id, b.id))
    return take(rows, filter.limit).map(cloneTask)
  }

  async transitionNode(
    taskId: string,
    nodeId: string,
    guard: NodeGuard,
    patch: NodePatch,
    now: number,
  ): Promise<TaskDoc | null> {
    this.#open()
    assertNodeId(nodeId)
    assertPatchKeys(patch, NODE_PATCH_KEYS, 'node')
    const task = this.#tasks.get(taskId)
    if (!task || !Object.hasOwn(task.nodes, nodeId)) return null
    const node = task.nodes[nodeId] as NodeState
    if (guard.status !== undefined) {
      const allowed: readonly string[] = typeof guard.status === 'string' ? [guard.status] : guard.status
      if (!allowed.includes(node.status)) return null
    }
    if (guard.epoch !== undefined && node.attempt_epoch !== guard.epoch) return null
    const copy = ingest(patch) as Record<string, unknown>
    const target = node as unknown as Record<string, unknown>
    for (const [k, v] of Object.entries(copy)) {
      if (v !== undefined) target[k] = v
    }
    task.updated_at_ms = now
    return cloneTask(task)
  }

  async updateTask(
    taskId: string,
    guard: { status?: readonly TaskStatus[] },
    patch: TaskPatch,
    now: number,
  ): Promise<TaskDoc | null> {
    this.#open()
    assertPatchKeys(patch, TASK_PATCH_KEYS, 'task')
    const task = this.#tasks.get(taskId)
    if (!task) return null
    if (guard.status !== undefined && !guard.status.includes(task.status)) return null
    const p = ingest(patch)
    if (p.status !== undefined) task.status = p.status
    if (p.result !== undefined) task.result = p.result
    if (p.error !== undefined) task.error = p.error
    if (p.finished_at_ms !== undefined) task.finished_at_ms = p.finished_at_ms
    if (p.vars !== undefined) task.coordinator.vars = p.vars
    if (p.cancelled !== undefined) task.coordinator.cancelled = p.cancelled
    if (p.cancel_reason !== undefined) task.coordinator.cancel_reason = p.cancel_reason
    task.updated_at_ms = now
    return cloneTask(task)
  }

  // ---- event ledger

  async hasEvent(key: string): Promise<boolean> {
    this.#open()
    return this.#events.has(key)
  }

  async recordEventOnce(
    key: string,
    info: { task_id: string; node_id: string; kind: string },
    now: number,
  ): Promise<boolean> {
    this.#open()
    if (this.#events.has(key)) return false
    this.#events.set(key, { key, task_id: info.task_id, node_id: info.node_id, kind: info.kind, at_ms: now })
    return true
  }

  // ---- batch metrics

  async upsertBatchMetrics(row: BatchMetricsWrite, now: number): Promise<Record<string, unknown> | null> {
    this.#open()
    const key = canonicalJson([row.task_id, row.node_id, row.batch_uid])
    const prev = this.#metrics.get(key)
    this.#metrics.set(key, {
      task_id: row.task_id,
      node_id: row.node_id,
      batch_uid: row.batch_uid,
      attempt_epoch: row.attempt_epoch,
      metrics: ingest(row.metrics),
      updated_at_ms: now,
    })
    // The previous row is no longer reachable from the map: no copy needed.
    return prev ? prev.metrics : null
  }

  async purgeBefore(cutoff: number): Promise<{ events: number; outbox: number }> {
    this.#open()
    let events = 0
    let outbox = 0
    for (const [k, row] of this.#events) {
      if (row.at_ms < cutoff) {
        this.#events.delete(k)
        events++
      }
    }
    for (const [k, row] of this.#outbox) {
      if (row.status === 'sent' && (row.sent_at_ms ?? Number.POSITIVE_INFINITY) < cutoff) {
        this.#outbox.delete(k)
        outbox++
      }
    }
    return { events, outbox }
  }

  async listBatchMetrics(taskId: string, nodeId: string): Promise<{ batch_uid: string; metrics: Record<string, unknown> }[]> {
    this.#open()
    const out: { batch_uid: string; metrics: Record<string, unknown> }[] = []
    for (const row of this.#metrics.values()) {
      if (row.task_id === taskId && row.node_id === nodeId) out.push({ batch_uid: row.batch_uid, metrics: clone(row.metrics) })
    }
    return out
  }

  async getBatchMetrics(taskId: string, nodeId: string, batchUid: string): Promise<Record<string, unknown> | null> {
    this.#open()
    const row = this.#metrics.get(canonicalJson([taskId, nodeId, batchUid]))
    return row ? clone(row.metrics) : null
  }

  // ---- artifacts

  async upsertArtifact(artifact: ArtifactWrite, now: number): Promise<boolean> {
    this.#open()
    const batchUid = artifact.batch_uid ?? null
    const key = canonicalJson([artifact.task_id, artifact.node_id, batchUid])
    const existing = this.#artifacts.get(key)
    if (existing && existing.doc.attempt_epoch > artifact.attempt_epoch) return false
    const doc: ArtifactDoc = {
      task_id: artifact.task_id,
      node_id: artifact.node_id,
      batch_uid: batchUid,
      status: artifact.status,
      meta: ingest(artifact.meta),
      attempt_epoch: artifact.attempt_epoch,
      worker_id: artifact.worker_id ?? null,
      created_at: existing ? existing.doc.created_at : now,
      updated_at: now,
    }
    this.#artifacts.set(key, { doc, seq: existing ? existing.seq : ++this.#seq })
    let keys = this.#artifactsByTask.get(artifact.task_id)
    if (keys === undefined) {
      keys = new Set()
      this.#artifactsByTask.set(artifact.task_id, keys)
    }
    keys.add(key)
    return true
  }

  async listArtifacts(taskId: string, query: ArtifactQuery = {}): Promise<ArtifactDoc[]> {
    this.#open()
    const keys = this.#artifactsByTask.get(taskId) ?? new Set<string>()
    const rows = [...keys]
      .map((k) => this.#artifacts.get(k) as ArtifactEntry)
      .filter(
        (e) =>
          (query.nodeId === undefined || e.doc.node_id === query.nodeId) &&
          (query.status === undefined || e.doc.status === query.status) &&
          (query.createdAfter === undefined || e.doc.created_at >= query.createdAfter),
      )
    rows.sort((a, b) => a.doc.created_at - b.doc.created_at || compareBatchUid(a.doc.batch_uid, b.doc.batch_uid) || a.seq - b.seq)
    return rows.map((e) => clone(e.doc))
  }

  async getArtifact(taskId: string, nodeId: string, batchUid: string | null): Promise<ArtifactDoc | null> {
    this.#open()
    const e = this.#artifacts.get(canonicalJson([taskId, nodeId, batchUid ?? null]))
    return e ? clone(e.doc) : null
  }

  // ---- stream progress

  async claimStreamBatch(claim: StreamClaim, now: number): Promise<boolean> {
    this.#open()
    const key = canonicalJson([claim.task_id, claim.consumer_node, claim.from_node, claim.batch_uid, claim.consumer_epoch])
    if (this.#streamClaims.has(key)) return false
    this.#streamClaims.set(key, {
      task_id: claim.task_id,
      consumer_node: claim.consumer_node,
      from_node: claim.from_node,
      batch_uid: claim.batch_uid,
      consumer_epoch: claim.consumer_epoch,
      claimed_at_ms: now,
    })
    return true
  }

  // ---- outbox

  async outboxEnqueue(row: OutboxEnqueue, now: number): Promise<boolean> {
    this.#open()
    const key = row.key ?? null
    const id = outboxId(row.topic, key, row.dedup_id)
    if (this.#outbox.has(id)) return false
    this.#outbox.set(id, {
      id,
      topic: row.topic,
      key,
      value: row.value,
      dedup_id: row.dedup_id,
      status: 'pending',
      attempts: 0,
      next_attempt_at_ms: now,
      last_error: null,
      created_at_ms: now,
      updated_at_ms: now,
      sent_at_ms: null,
    })
    return true
  }

  async outboxClaimDue(now: number, limit: number, claimUntil: number): Promise<OutboxRow[]> {
    this.#open()
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
    this.#open()
    const r = this.#outbox.get(id)
    if (r?.status !== 'pending') return
    r.status = 'sent'
    r.sent_at_ms = now
    r.updated_at_ms = now
  }

  /** Stays pending, due again at `nextAttemptAt`. Only applies to a pending row. */
  async outboxMarkRetry(id: string, attempts: number, nextAttemptAt: number, error: string, now: number): Promise<void> {
    this.#open()
    const r = this.#outbox.get(id)
    if (r?.status !== 'pending') return
    r.attempts = attempts
    r.next_attempt_at_ms = nextAttemptAt
    r.last_error = error
    r.updated_at_ms = now
  }

  /** Pending → failed (dead letter). Only applies to a pending row. */
  async outboxMarkFailed(id: string, attempts: number, error: string, now: number): Promise<void> {
    this.#open()
    const r = this.#outbox.get(id)
    if (r?.status !== 'pending') return
    r.status = 'failed'
    r.attempts = attempts
    r.last_error = error
    r.updated_at_ms = now
  }

  /** Rows ordered by created_at_ms then id. */
  async outboxList(filter: { status?: OutboxStatus; limit?: number } = {}): Promise<OutboxRow[]> {
    this.#open()
    const rows = [...this.#outbox.values()]
      .filter((r) => filter.status === undefined || r.status === filter.status)
      .sort((a, b) => a.created_at_ms - b.created_at_ms || compareCodePoints(a.id, b.id))
    return take(rows, filter.limit).map(clone)
  }

  /** Failed → pending, due `now`, attempts reset to 0 (last_error kept). False otherwise. */
  async outboxRequeue(id: string, now: number): Promise<boolean> {
    this.#open()
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
    this.#open()
    this.#workers.set(info.worker_id, ingest(info))
  }

  /** Ordered by worker_id. */
  async listWorkers(): Promise<WorkerInfo[]> {
    this.#open()
    return [...this.#workers.values()].sort((a, b) => compareCodePoints(a.worker_id, b.worker_id)).map(clone)
  }

  async saveWorkerState(state: WorkerStateDoc): Promise<void> {
    this.#open()
    this.#workerState.set(state.worker_id, ingest(state))
  }

  async getWorkerState(workerId: string): Promise<WorkerStateDoc | null> {
    this.#open()
    const s = this.#workerState.get(workerId)
    return s ? clone(s) : null
  }
}

/** Batch uids ascending by code point, the complete artifact (null) after every partial. */
function compareBatchUid(a: string | null, b: string | null): number {
  if (a === b) return 0
  if (a === null) return 1
  if (b === null) return -1
  return compareCodePoints(a, b)
}
