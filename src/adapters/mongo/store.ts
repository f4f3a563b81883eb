/**
 * Store on MongoDB (official driver), restricted to what FerretDB 1.x also supports: single-document
 * updates, `findOneAndUpdate`, unique-index inserts; no transactions, positional operators,
 * arrayFilters, nested arrays, keys with '.' or a leading '$', NaN/Infinity, TTL/partial indexes,
 * change streams or `$lookup`/`$facet`. Semantics follow the memory store (the conformance suite
 * test/conformance/store.suite.ts pins them down for both).
 *
 * Layout (collection names get `collectionPrefix`):
 * - `tasks`: one document per task, plain `id` (unique), `status`, timestamps, `coordinator.cancelled`
 *   (Python workers read `id` and `coordinator.cancelled`); nodes as a map `nodes.<node_id>` so a
 *   transition is one `findOneAndUpdate` on `nodes.<node_id>.<field>` paths. Node ids are checked
 *   against NODE_ID_PATTERN before any path is built.
 * - user JSON (params, result, graph, vars, node stats / last_error / done_pending, artifact meta,
 *   batch metrics, …) is stored as itself when BSON-safe, else as JSON text in `<field>_json`
 *   (see codec.ts): round trips are exact either way.
 * - `artifacts`: Python layout `{task_id, node_id, batch_uid, status, meta, attempt_epoch, worker_id,
 *   created_at, updated_at}` (timestamps in ms), unique (task_id, node_id, batch_uid); our complete
 *   artifact stores `batch_uid: null`, a Python one without the field reads as null. The insertion
 *   tiebreak of the listing order is the server-generated `_id`.
 * - `metrics_raw`, `stream_progress`: unique compound keys; `worker_events`, `outbox`, `workers`,
 *   `worker_state`: keyed by `_id` (event key, outbox id, worker id). `worker_state` also carries
 *   the Python fields `active_run` (first run or null) and `updated_at` (a Date).
 */
import { type Collection, type Db, type Document, MongoClient, type MongoClientOptions, ObjectId } from 'mongodb'
import { ErrorCode, FlowkitError } from '../../errors.ts'
import { NODE_ID_PATTERN } from '../../graph/types.ts'
import type { Logger } from '../../log.ts'
import type {
  ArtifactDoc,
  ArtifactQuery,
  ArtifactWrite,
  BatchMetricsWrite,
  NodeGuard,
  NodePatch,
  OutboxEnqueue,
  OutboxRow,
  OutboxStatus,
  RunView,
  NodeState,
  Store,
  StreamClaim,
  TaskDoc,
  TaskPatch,
  TaskStatus,
  WorkerInfo,
  WorkerStateDoc,
} from '../../ports/store.ts'
import { NODE_PATCH_KEYS, TASK_PATCH_PATHS } from '../../ports/store.ts'
import type { GraphSpec } from '../../graph/types.ts'
import { canonicalJson, outboxId } from '../../util/ids.ts'
import { dbNameFromUrl } from './url.ts'
import { compareCodePoints } from '../memory/store.ts'
import { JSON_SUFFIX, decodeFields, encodeFields, getField, putField, sanitize, setField, toMs } from './codec.ts'
import { isDuplicateKeyError, mapMongoError, safeMessage } from './errors.ts'

export interface MongoStoreOptions {
  /** Connection string; never logged (may carry credentials). */
  url?: string
  /** Alias of `url`. */
  uri?: string
  /** Database name; default: the one in the URL's path, else `flowkit`. */
  dbName?: string
  /** Prepended to every collection name (default none: Python workers use the plain names). */
  collectionPrefix?: string
  logger?: Logger
  /** Passed to the driver (auth, TLS, timeouts, pool); `ignoreUndefined` is always true. */
  clientOptions?: MongoClientOptions
}

/** Base collection names (before the prefix). */
export const MONGO_COLLECTIONS = {
  tasks: 'tasks',
  artifacts: 'artifacts',
  metrics: 'metrics_raw',
  events: 'worker_events',
  streamProgress: 'stream_progress',
  outbox: 'outbox',
  outboxSent: 'outbox_sent',
  workers: 'workers',
  workerState: 'worker_state',
} as const
export type MongoCollectionKey = keyof typeof MONGO_COLLECTIONS
type CollectionKey = MongoCollectionKey

interface IndexSpec {
  name: string
  key: Record<string, 1 | -1>
  unique?: boolean
}

const INDEXES: Record<CollectionKey, IndexSpec[]> = {
  tasks: [
    { name: 'flowkit_tasks_id', key: { id: 1 }, unique: true },
    { name: 'flowkit_tasks_created', key: { created_at_ms: 1, id: 1 } },
    { name: 'flowkit_tasks_status_created', key: { status: 1, created_at_ms: 1, id: 1 } },
  ],
  artifacts: [
    { name: 'flowkit_artifacts_key', key: { task_id: 1, node_id: 1, batch_uid: 1 }, unique: true },
    { name: 'flowkit_artifacts_order', key: { task_id: 1, node_id: 1, created_at: 1 } },
  ],
  metrics: [{ name: 'flowkit_metrics_key', key: { task_id: 1, node_id: 1, batch_uid: 1 }, unique: true }],
  events: [
    { name: 'flowkit_events_task', key: { task_id: 1 } },
    { name: 'flowkit_events_at', key: { at_ms: 1 } },
  ],
  streamProgress: [
    {
      name: 'flowkit_stream_claim',
      key: { task_id: 1, consumer_node: 1, from_node: 1, batch_uid: 1, consumer_epoch: 1 },
      unique: true,
    },
  ],
  outbox: [
    { name: 'flowkit_outbox_due', key: { status: 1, next_attempt_at_ms: 1, created_at_ms: 1 } },
    { name: 'flowkit_outbox_created', key: { created_at_ms: 1, _id: 1 } },
    { name: 'flowkit_outbox_sent', key: { status: 1, sent_at_ms: 1 } },
  ],
  outboxSent: [
    { name: 'flowkit_outbox_sent_at', key: { sent_at_ms: 1 } },
    { name: 'flowkit_outbox_sent_created', key: { created_at_ms: 1, _id: 1 } },
  ],
  workers: [],
  workerState: [],
}



const TASK_STRUCTURED: ReadonlySet<string> = new Set(['id', 'nodes', 'coordinator'])

/** Codes of createIndex refusing an index that exists under another name / with other options. */
const INDEX_CONFLICT_CODES: ReadonlySet<number> = new Set([85, 86])
const NAMESPACE_EXISTS = 48

/** Our documents: `_id` is an ObjectId, a string key, or whatever another writer chose. */
type Row = Document & { _id?: string | ObjectId }
type Collections = Record<CollectionKey, Collection<Row>>

function assertNodeId(nodeId: unknown): asserts nodeId is string {
  if (typeof nodeId !== 'string' || !NODE_ID_PATTERN.test(nodeId)) {
    throw new FlowkitError(ErrorCode.InvalidKey, `invalid node id ${JSON.stringify(nodeId)}`, {
      details: { node_id: String(nodeId) },
    })
  }
}

function assertPatchKeys(patch: object, allowed: (k: string) => boolean, what: string): void {
  for (const k of Object.keys(patch)) {
    if (!allowed(k)) {
      throw new FlowkitError(ErrorCode.InvalidKey, `${what} patch: unknown field ${JSON.stringify(k)}`, {
        details: { field: k },
      })
    }
  }
}

/** null = no limit, 0 = nothing (MongoDB's limit(0) would mean "no limit"). */
function limitOf(limit: number | undefined): number | null {
  if (limit === undefined) return null
  if (!(limit > 0)) return 0
  const n = Math.floor(limit)
  return n > 2_147_483_647 ? null : n
}

/** A number as the store writes it: finite, -0 as 0, anything else null (see codec.ts). */
function num(v: number): number | null {
  return sanitize(v) as number | null
}

function sameKey(a: unknown, b: Record<string, number>): boolean {
  if (a === null || typeof a !== 'object') return false
  const ea = Object.entries(a as Record<string, unknown>)
  const eb = Object.entries(b)
  return ea.length === eb.length && ea.every(([k, v], i) => k === eb[i]?.[0] && Number(v) === eb[i]?.[1])
}

function idOrder(id: unknown): string {
  return id instanceof ObjectId ? id.toHexString() : String(id)
}

/** Batch uids ascending by code point, the complete artifact (null) after every partial. */
function compareBatchUid(a: string | null, b: string | null): number {
  if (a === b) return 0
  if (a === null) return 1
  if (b === null) return -1
  return compareCodePoints(a, b)
}

function encodeTask(task: TaskDoc): Record<string, unknown> {
  if (typeof task.id !== 'string') {
    throw new FlowkitError(ErrorCode.InvalidKey, 'task id must be a string', { details: { field: 'id' } })
  }
  const doc = encodeFields(task, TASK_STRUCTURED)
  doc['id'] = task.id
  doc['_id'] = task.id
  if (task.nodes !== undefined) {
    const nodes: [string, unknown][] = []
    for (const [nodeId, node] of Object.entries(task.nodes)) {
      if (node !== undefined) nodes.push([nodeId, encodeFields(node)])
    }
    doc['nodes'] = Object.fromEntries(nodes)
  }
  if (task.coordinator !== undefined) doc['coordinator'] = encodeFields(task.coordinator)
  return doc
}

const GRAPH_CACHE_SIZE = 2000

/** `_id` of a batch's metrics row: lookups by `_id` are the ones FerretDB serves from SQLite's key. */
function metricsKey(taskId: string, nodeId: string, batchUid: string): string {
  return canonicalJson(['m', taskId, nodeId, batchUid])
}

/** `_id` of one of our artifacts (a Python worker's have an ObjectId). */
function artifactKey(taskId: string, nodeId: string, batchUid: string | null): string {
  return canonicalJson(['a', taskId, nodeId, batchUid])
}

function deepFreeze<T>(v: T): T {
  if (v !== null && typeof v === 'object' && !Object.isFrozen(v)) {
    Object.freeze(v)
    for (const x of Object.values(v)) deepFreeze(x)
  }
  return v
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
    out['nodes'] = Object.fromEntries(
      Object.entries(nodes as Record<string, Record<string, unknown>>).map(([k, v]) => [k, decodeFields(v)]),
    )
  }
  const coordinator = doc['coordinator']
  if (coordinator !== null && typeof coordinator === 'object') {
    out['coordinator'] = decodeFields(coordinator as Record<string, unknown>)
  }
  return out as unknown as TaskDoc
}

function decodeArtifact(doc: Document): ArtifactDoc {
  const batchUid = doc['batch_uid']
  const epoch = doc['attempt_epoch']
  const meta = getField(doc, 'meta')
  return {
    task_id: doc['task_id'],
    node_id: doc['node_id'],
    batch_uid: batchUid === undefined ? null : batchUid,
    status: doc['status'],
    meta: meta !== null && typeof meta === 'object' ? (meta as Record<string, unknown>) : {},
    attempt_epoch: typeof epoch === 'number' ? epoch : 0,
    worker_id: doc['worker_id'] ?? null,
    created_at: toMs(doc['created_at']),
    updated_at: toMs(doc['updated_at']),
  }
}

/** Our fields; a document in the Python layout only (`{_id, active_run, updated_at}`) is mapped. */
function decodeWorkerState(doc: Document): WorkerStateDoc {
  const workerId = doc['worker_id'] ?? doc['_id']
  let runs = getField(doc, 'active_runs')
  if (!Array.isArray(runs)) {
    const run = getField(doc, 'active_run')
    runs = run === null || run === undefined ? [] : [run]
  }
  const updated = doc['updated_at_ms']
  return {
    worker_id: String(workerId),
    active_runs: runs as WorkerStateDoc['active_runs'],
    updated_at_ms: typeof updated === 'number' ? updated : toMs(doc['updated_at']),
  }
}

function updateOf(set: Record<string, unknown>, unset: Record<string, ''>, extra: Document = {}): Document {
  const update: Document = { $set: set, ...extra }
  if (Object.keys(unset).length > 0) update['$unset'] = unset
  return update
}

/**
 * Applies a `{ $set, $unset }` of dotted paths to a document read before the update (the same
 * paths the server applied): saves reading the document back.
 */
function applyUpdate(doc: Document, update: Document): Document {
  const walk = (path: string, create: boolean): { parent: Record<string, unknown>; key: string } | null => {
    const parts = path.split('.')
    let cur: Record<string, unknown> = doc
    for (const p of parts.slice(0, -1)) {
      let next = cur[p]
      if (next === null || typeof next !== 'object') {
        if (!create) return null
        next = {}
        cur[p] = next
      }
      cur = next as Record<string, unknown>
    }
    return { parent: cur, key: parts[parts.length - 1] as string }
  }
  for (const [path, value] of Object.entries((update['$set'] ?? {}) as Record<string, unknown>)) {
    const at = walk(path, true)
    if (at) at.parent[at.key] = value
  }
  for (const path of Object.keys((update['$unset'] ?? {}) as Record<string, unknown>)) {
    const at = walk(path, false)
    if (at) delete at.parent[at.key]
  }
  return doc
}

export class MongoStore implements Store {
  /**
   * FerretDB pushes a query down to SQLite only when its filter is exactly `{_id}`; any other
   * filter scans and decodes the whole collection. On FerretDB, compare-and-set is therefore done
   * as read-by-_id, check, update-by-_id (its findAndModify is not isolated anyway; flowkit keeps
   * one writer per task); on MongoDB it stays one atomic findOneAndUpdate.
   */
  #ferret = false
  /** Decoded graphs by task id: a graph never changes after creation, so reads can skip it. */
  readonly #graphs = new Map<string, GraphSpec>()

  readonly #url: string
  readonly #dbName: string
  readonly #prefix: string
  readonly #logger: Logger | undefined
  readonly #clientOptions: MongoClientOptions
  #client: MongoClient | undefined
  #collections: Collections | undefined
  #initializing: Promise<Collections> | undefined
  #closed = false

  /** A store on the server named by FLOWKIT_MONGO_URL, with other options as given. */
  static fromEnv(options: Omit<MongoStoreOptions, 'url' | 'uri'> = {}, env: NodeJS.ProcessEnv = process.env): MongoStore {
    const url = env['FLOWKIT_MONGO_URL']
    if (!url) throw new FlowkitError(ErrorCode.Config, 'MongoStore: FLOWKIT_MONGO_URL is not set')
    return new MongoStore({ ...options, url })
  }

  constructor(options: MongoStoreOptions) {
    const url = options?.url ?? options?.uri
    if (typeof url !== 'string' || url === '') {
      throw new FlowkitError(ErrorCode.Config, 'MongoStore: url is required')
    }
    this.#url = url
    this.#dbName = options.dbName ?? dbNameFromUrl(url) ?? 'flowkit'
    this.#prefix = options.collectionPrefix ?? ''
    this.#logger = options.logger
    this.#clientOptions = { appName: 'flowkit', ...options.clientOptions, ignoreUndefined: true }
  }

  /** The database name in use (for tests and operators). */
  get dbName(): string {
    return this.#dbName
  }

  /** The full name of a collection (prefix included). */
  collectionName(key: CollectionKey): string {
    return this.#prefix + MONGO_COLLECTIONS[key]
  }

  // ---- lifecycle

  #open(): void {
    if (this.#closed) throw new FlowkitError(ErrorCode.Closed, 'store is closed')
  }

  #fail(err: unknown, op: string): FlowkitError {
    if (this.#closed && !(err instanceof FlowkitError && err.code !== ErrorCode.Closed)) {
      return new FlowkitError(ErrorCode.Closed, 'store is closed', { cause: err })
    }
    return mapMongoError(err, op)
  }

  async init(): Promise<void> {
    await this.#ready()
  }

  #ready(): Promise<Collections> {
    this.#open()
    if (this.#collections) return Promise.resolve(this.#collections)
    if (!this.#initializing) {
      this.#initializing = this.#connect().finally(() => {
        this.#initializing = undefined
      })
    }
    return this.#initializing
  }

  async #connect(): Promise<Collections> {
    let client: MongoClient
    try {
      client = new MongoClient(this.#url, this.#clientOptions)
    } catch (err) {
      throw new FlowkitError(ErrorCode.Config, `MongoStore: invalid connection settings: ${safeMessage(err)}`, { cause: err })
    }
    this.#client = client
    try {
      await client.connect()
      this.#open()
      const db = client.db(this.#dbName)
      const info = await db.command({ buildInfo: 1 }).catch(() => ({}) as Document)
      this.#ferret = info['ferretdbVersion'] !== undefined || info['ferretdb'] !== undefined
      const collections = await this.#ensureSchema(db)
      this.#open()
      this.#collections = collections
      this.#logger?.info('store.mongo.ready', { db: this.#dbName, collection_prefix: this.#prefix })
      return collections
    } catch (err) {
      if (this.#client === client) this.#client = undefined
      await client.close().catch(() => undefined)
      const mapped = this.#fail(err, 'init')
      if (mapped.code !== ErrorCode.Closed) {
        this.#logger?.warn('store.mongo.init_failed', { db: this.#dbName, code: mapped.code, error: mapped.message })
      }
      throw mapped
    }
  }

  async #ensureSchema(db: Db): Promise<Collections> {
    const existing = new Set(
      (await db.listCollections({}, { nameOnly: true }).toArray()).map((c) => (c as { name: string }).name),
    )
    const keys = Object.keys(MONGO_COLLECTIONS) as CollectionKey[]
    const entries = await Promise.all(
      keys.map(async (key): Promise<[CollectionKey, Collection<Row>]> => {
        const name = this.collectionName(key)
        if (!existing.has(name)) {
          try {
            await db.createCollection(name)
          } catch (err) {
            if ((err as { code?: unknown }).code !== NAMESPACE_EXISTS) throw err
          }
        }
        const col = db.collection(name)
        for (const spec of INDEXES[key]) await this.#ensureIndex(col, spec)
        return [key, col]
      }),
    )
    return Object.fromEntries(entries) as Collections
  }

  /** Creates an index; an equivalent one under another name (e.g. made by a Python worker) is accepted. */
  async #ensureIndex(col: Collection<Row>, spec: IndexSpec): Promise<void> {
    try {
      await col.createIndex(spec.key, { name: spec.name, ...(spec.unique ? { unique: true } : {}) })
    } catch (err) {
      const code = (err as { code?: unknown }).code
      if (typeof code !== 'number' || !INDEX_CONFLICT_CODES.has(code)) throw err
      const indexes = await col.listIndexes().toArray()
      const same = indexes.find((ix) => sameKey(ix['key'], spec.key) && Boolean(ix['unique']) === Boolean(spec.unique))
      if (!same) throw err
      this.#logger?.debug('store.mongo.index_exists', { collection: col.collectionName, index: spec.name, existing: same['name'] })
    }
  }

  /**
   * The driver collection behind `key` (connecting first): an escape hatch for operators and tests
   * (inspecting the stored layout, migrations). Writes through it bypass the store's rules.
   */
  async rawCollection(key: CollectionKey): Promise<Collection<Document>> {
    return (await this.#ready())[key] as Collection<Document>
  }

  async close(): Promise<void> {
    this.#closed = true
    this.#collections = undefined
    const client = this.#client
    this.#client = undefined
    if (client) await client.close().catch(() => undefined)
  }

  /** Runs `fn` on the collections, mapping driver errors. */
  async #run<T>(op: string, fn: (c: Collections) => Promise<T>): Promise<T> {
    const collections = await this.#ready()
    try {
      return await fn(collections)
    } catch (err) {
      throw this.#fail(err, op)
    }
  }

  // ---- tasks and nodes

  async createTask(task: TaskDoc): Promise<void> {
    this.#open()
    for (const nodeId of Object.keys(task.nodes)) assertNodeId(nodeId)
    const doc = encodeTask(task)
    await this.#run('createTask', async (c) => {
      try {
        await c.tasks.insertOne(doc)
      } catch (err) {
        if (isDuplicateKeyError(err)) {
          throw new FlowkitError(ErrorCode.DuplicateKey, `task ${task.id} already exists`, {
            cause: err,
            details: { task_id: task.id },
          })
        }
        throw err
      }
    })
  }

  /**
   * FerretDB compare-and-set: read by _id, check the guard, update by _id (both pushed down to
   * SQLite), and return the read document with the update applied. Null when the task is missing
   * or the guard fails.
   */
  async #casById(c: Collections, taskId: string, guard: (doc: Document) => boolean, update: Document): Promise<TaskDoc | null> {
    const id = taskId as never
    const projection = this.#taskProjection(taskId)
    const current = await c.tasks.findOne({ _id: id }, projection ? { projection } : {})
    if (!current || !guard(current)) return null
    const res = await c.tasks.updateOne({ _id: id }, update)
    if (res.matchedCount === 0) return null
    return this.#decodeTask(applyUpdate(current, update))
  }

  /** Projection that leaves the graph out when this store already holds it decoded. */
  #taskProjection(taskId: string): Document | undefined {
    return this.#graphs.has(taskId) ? { graph: 0, [`graph${JSON_SUFFIX}`]: 0 } : undefined
  }

  /** Decodes a task document, taking the graph from the cache (or caching the one it carries). */
  #decodeTask(doc: Document): TaskDoc {
    const id = doc['id'] as string
    if (this.#graphs.has(id)) {
      // Already decoded once: skip parsing the (immutable) graph again.
      delete doc['graph']
      delete doc[`graph${JSON_SUFFIX}`]
    }
    const task = decodeTask(doc)
    if (doc['graph'] !== undefined || doc[`graph${JSON_SUFFIX}`] !== undefined) {
      const graph = deepFreeze(task.graph)
      this.#graphs.set(id, graph)
      if (this.#graphs.size > GRAPH_CACHE_SIZE) {
        const oldest = this.#graphs.keys().next().value
        if (oldest !== undefined) this.#graphs.delete(oldest)
      }
      task.graph = graph
    } else {
      const cached = this.#graphs.get(id)
      if (cached === undefined) throw new FlowkitError(ErrorCode.StoreError, `task ${id}: graph left out of a read but not cached`)
      task.graph = cached
    }
    return task
  }

  async getTask(taskId: string): Promise<TaskDoc | null> {
    this.#open()
    return this.#run('getTask', async (c) => {
      const projection = this.#taskProjection(taskId)
      const doc = await c.tasks.findOne({ _id: taskId as never }, projection ? { projection } : {})
      return doc && isFlowkitTaskDoc(doc) ? this.#decodeTask(doc) : null
    })
  }

  async getRunView(taskId: string, nodeId: string): Promise<RunView | null> {
    this.#open()
    assertNodeId(nodeId)
    return this.#run('getRunView', async (c) => {
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
    })
  }

  async listTasks(filter: { statuses?: readonly TaskStatus[]; limit?: number } = {}): Promise<TaskDoc[]> {
    this.#open()
    const limit = limitOf(filter.limit)
    const statuses = filter.statuses
    if (limit === 0 || statuses?.length === 0) {
      return []
    }
    return this.#run('listTasks', async (c) => {
      // Only task documents in flowkit's layout (a Python coordinator may share the collection).
      const query: Document = statuses === undefined ? { nodes: { $exists: true } } : { status: { $in: [...statuses] }, nodes: { $exists: true } }
      let cursor = c.tasks.find(query).sort({ created_at_ms: 1, id: 1 })
      if (limit !== null) cursor = cursor.limit(limit)
      return (await cursor.toArray()).map((d) => this.#decodeTask(d))
    })
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
    assertPatchKeys(patch, (k) => NODE_PATCH_KEYS.has(k), 'node')
    const path = `nodes.${nodeId}`
    const set: Record<string, unknown> = {}
    const unset: Record<string, ''> = {}
    for (const [k, v] of Object.entries(patch)) setField(set, unset, `${path}.${k}`, sanitize(v))
    set['updated_at_ms'] = num(now)
    const statuses = guard.status === undefined ? undefined : typeof guard.status === 'string' ? [guard.status] : [...guard.status]
    const query: Document = { _id: taskId, [path]: { $exists: true } }
    if (statuses !== undefined) query[`${path}.status`] = { $in: statuses }
    if (guard.epoch !== undefined) {
      // NaN equals nothing (and FerretDB drops the connection on a NaN)
      if (!Number.isFinite(guard.epoch)) {
          return null
      }
      query[`${path}.attempt_epoch`] = guard.epoch
    }
    return this.#run('transitionNode', async (c) => {
      if (this.#ferret) {
        return this.#casById(c, taskId, (doc) => {
          const nodes = doc['nodes'] as Record<string, Record<string, unknown>> | undefined
          const node = nodes !== null && typeof nodes === 'object' && Object.hasOwn(nodes, nodeId) ? nodes[nodeId] : undefined
          if (node === undefined || node === null) return false
          if (statuses !== undefined && !(statuses as readonly string[]).includes(node['status'] as string)) return false
          return guard.epoch === undefined || node['attempt_epoch'] === guard.epoch
        }, updateOf(set, unset))
      }
      // No projection here: FerretDB does not implement one on findAndModify.
      const doc = await c.tasks.findOneAndUpdate(query, updateOf(set, unset), { returnDocument: 'after' })
      return doc ? this.#decodeTask(doc) : null
    })
  }

  async updateTask(
    taskId: string,
    guard: { status?: readonly TaskStatus[] },
    patch: TaskPatch,
    now: number,
  ): Promise<TaskDoc | null> {
    this.#open()
    assertPatchKeys(patch, (k) => Object.hasOwn(TASK_PATCH_PATHS, k), 'task')
    const set: Record<string, unknown> = {}
    const unset: Record<string, ''> = {}
    for (const [k, v] of Object.entries(patch)) setField(set, unset, TASK_PATCH_PATHS[k as keyof TaskPatch], sanitize(v))
    set['updated_at_ms'] = num(now)
    const query: Document = { _id: taskId, nodes: { $exists: true } }
    if (guard.status !== undefined) query['status'] = { $in: [...guard.status] }
    return this.#run('updateTask', async (c) => {
      if (this.#ferret) {
        return this.#casById(c, taskId, (doc) => isFlowkitTaskDoc(doc) && (guard.status === undefined || guard.status.includes(doc['status'] as TaskStatus)), updateOf(set, unset))
      }
      // No projection here: FerretDB does not implement one on findAndModify.
      const doc = await c.tasks.findOneAndUpdate(query, updateOf(set, unset), { returnDocument: 'after' })
      return doc ? this.#decodeTask(doc) : null
    })
  }

  // ---- event ledger

  async hasEvent(key: string): Promise<boolean> {
    this.#open()
    return this.#run('hasEvent', async (c) => (await c.events.findOne({ _id: key }, { projection: { _id: 1 } })) !== null)
  }

  async recordEventOnce(
    key: string,
    info: { task_id: string; node_id: string; kind: string },
    now: number,
  ): Promise<boolean> {
    this.#open()
    const doc = { _id: key, task_id: info.task_id, node_id: info.node_id, kind: info.kind, at_ms: num(now) }
    return this.#run('recordEventOnce', (c) => this.#insertOnce(c.events, doc))
  }

  /** Unique insert: true when inserted, false when the key exists. */
  async #insertOnce(col: Collection<Row>, doc: Document): Promise<boolean> {
    try {
      await col.insertOne(doc)
      return true
    } catch (err) {
      if (isDuplicateKeyError(err)) return false
      throw err
    }
  }

  /** Runs an upsert; a duplicate key (two first upserts raced) retries it once. */
  async #upsertRetry<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn()
    } catch (err) {
      if (!isDuplicateKeyError(err)) throw err
      return fn()
    }
  }

  // ---- batch metrics

  async upsertBatchMetrics(row: BatchMetricsWrite, now: number): Promise<Record<string, unknown> | null> {
    this.#open()
    const query = { _id: metricsKey(row.task_id, row.node_id, row.batch_uid) as never }
    const set: Record<string, unknown> = { attempt_epoch: num(row.attempt_epoch), updated_at_ms: num(now) }
    const unset: Record<string, ''> = {}
    setField(set, unset, 'metrics', sanitize(row.metrics ?? {}))
    const update = updateOf(set, unset, { $setOnInsert: { task_id: row.task_id, node_id: row.node_id, batch_uid: row.batch_uid } })
    return this.#run('upsertBatchMetrics', async (c) => {
      const prev = await this.#upsertRetry(() =>
        c.metrics.findOneAndUpdate(query, update, { upsert: true, returnDocument: 'before' }),
      )
      if (!prev) return null
      const metrics = getField(prev, 'metrics')
      return metrics !== null && typeof metrics === 'object' ? (metrics as Record<string, unknown>) : {}
    })
  }

  async purgeBefore(cutoff: number): Promise<{ events: number; outbox: number }> {
    this.#open()
    const at = num(cutoff)
    return this.#run('purgeBefore', async (c) => {
      const ev = await c.events.deleteMany({ at_ms: { $lt: at } })
      const ob = await c.outboxSent.deleteMany({ sent_at_ms: { $lt: at } })
      return { events: ev.deletedCount, outbox: ob.deletedCount }
    })
  }

  async listBatchMetrics(taskId: string, nodeId: string): Promise<{ batch_uid: string; metrics: Record<string, unknown> }[]> {
    this.#open()
    return this.#run('listBatchMetrics', async (c) => {
      const rows = await c.metrics.find({ task_id: taskId, node_id: nodeId }).toArray()
      return rows.map((row) => {
        const metrics = getField(row, 'metrics')
        return { batch_uid: String(row['batch_uid']), metrics: metrics !== null && typeof metrics === 'object' ? (metrics as Record<string, unknown>) : {} }
      })
    })
  }

  async getBatchMetrics(taskId: string, nodeId: string, batchUid: string): Promise<Record<string, unknown> | null> {
    this.#open()
    return this.#run('getBatchMetrics', async (c) => {
      const row = await c.metrics.findOne({ _id: metricsKey(taskId, nodeId, batchUid) as never })
      if (!row) return null
      const metrics = getField(row, 'metrics')
      return metrics !== null && typeof metrics === 'object' ? (metrics as Record<string, unknown>) : {}
    })
  }

  // ---- artifacts

  async upsertArtifact(artifact: ArtifactWrite, now: number): Promise<boolean> {
    this.#open()
    const epoch = num(artifact.attempt_epoch)
    const key = artifactKey(artifact.task_id, artifact.node_id, artifact.batch_uid ?? null) as never
    const query: Document = { _id: key, attempt_epoch: { $lte: epoch } }
    const set: Record<string, unknown> = {
      status: artifact.status,
      attempt_epoch: epoch,
      worker_id: artifact.worker_id ?? null,
      updated_at: num(now),
    }
    const unset: Record<string, ''> = {}
    setField(set, unset, 'meta', sanitize(artifact.meta ?? {}))
    const update = updateOf(set, unset, {
      $setOnInsert: {
        created_at: num(now),
        task_id: artifact.task_id,
        node_id: artifact.node_id,
        batch_uid: artifact.batch_uid ?? null,
        ins: new ObjectId(), // insertion order, the last tiebreak of listArtifacts
      },
    })
    return this.#run('upsertArtifact', async (c) => {
      try {
        if (this.#ferret) {
          // By _id only (pushed down); the epoch fence is checked on the document read.
          const current = await c.artifacts.findOne({ _id: key })
          const held = current?.['attempt_epoch']
          if (typeof held === 'number' && held > (epoch ?? 0)) return false
          await this.#upsertRetry(() => c.artifacts.updateOne({ _id: key }, update, { upsert: true }))
          return true
        }
        // When a higher epoch holds the key, the filter misses and the insert hits the unique _id.
        await this.#upsertRetry(() => c.artifacts.updateOne(query, update, { upsert: true }))
        return true
      } catch (err) {
        if (!isDuplicateKeyError(err)) throw err
        // Either our own document holds a higher epoch (fenced), or a Python worker's document
        // (its own _id) holds this (task, node, batch_uid): take that one over within the fence.
        const res = await c.artifacts.updateOne(
          { task_id: artifact.task_id, node_id: artifact.node_id, batch_uid: artifact.batch_uid ?? null, attempt_epoch: { $lte: epoch } },
          update,
        )
        return res.matchedCount > 0
      }
    })
  }

  async listArtifacts(taskId: string, query: ArtifactQuery = {}): Promise<ArtifactDoc[]> {
    this.#open()
    const filter: Document = { task_id: taskId }
    if (query.nodeId !== undefined) filter['node_id'] = query.nodeId
    if (query.status !== undefined) filter['status'] = query.status
    if (query.createdAfter !== undefined) {
      // Ours store epoch ms, a Python worker's a BSON date: range queries do not cross types.
      filter['$or'] = [{ created_at: { $gte: query.createdAfter } }, { created_at: { $gte: new Date(query.createdAfter) } }]
    }
    return this.#run('listArtifacts', async (c) => {
      const rows = (await c.artifacts.find(filter).toArray()).map((doc) => ({ doc: decodeArtifact(doc), id: idOrder(doc['ins'] ?? doc['_id']) }))
      // MongoDB sorts null first: the order (complete artifact after partials) is applied here.
      rows.sort(
        (a, b) =>
          a.doc.created_at - b.doc.created_at ||
          compareBatchUid(a.doc.batch_uid, b.doc.batch_uid) ||
          (a.id < b.id ? -1 : a.id > b.id ? 1 : 0),
      )
      return rows.map((r) => r.doc)
    })
  }

  async getArtifact(taskId: string, nodeId: string, batchUid: string | null): Promise<ArtifactDoc | null> {
    this.#open()
    return this.#run('getArtifact', async (c) => {
      const own = await c.artifacts.findOne({ _id: artifactKey(taskId, nodeId, batchUid ?? null) as never })
      if (own) return decodeArtifact(own)
      // One a Python worker wrote (its own _id): found by its fields.
      const doc = await c.artifacts.findOne(
        { task_id: taskId, node_id: nodeId, batch_uid: batchUid ?? null },
        { sort: { attempt_epoch: -1, _id: 1 } },
      )
      return doc ? decodeArtifact(doc) : null
    })
  }

  // ---- stream progress

  async claimStreamBatch(claim: StreamClaim, now: number): Promise<boolean> {
    this.#open()
    // The epoch is part of the stored batch_uid too: a Python worker sharing this database creates
    // a unique index on (task_id, consumer_node, from_node, batch_uid) without the epoch, and a
    // retried consumer's claims must not collide with its earlier attempt's.
    const doc = {
      task_id: claim.task_id,
      consumer_node: claim.consumer_node,
      from_node: claim.from_node,
      batch_uid: `${claim.batch_uid}#e${claim.consumer_epoch}`,
      source_batch_uid: claim.batch_uid,
      consumer_epoch: num(claim.consumer_epoch),
      claimed_at_ms: num(now),
    }
    return this.#run('claimStreamBatch', (c) => this.#insertOnce(c.streamProgress, doc))
  }

  // ---- outbox

  async outboxEnqueue(row: OutboxEnqueue, now: number): Promise<boolean> {
    this.#open()
    const key = row.key ?? null
    const id = outboxId(row.topic, key, row.dedup_id)
    const at = num(now)
    const doc: Document = { _id: id, id, topic: row.topic, key, dedup_id: row.dedup_id, status: 'pending', attempts: 0 }
    putField(doc, 'value', sanitize(row.value))
    Object.assign(doc, { next_attempt_at_ms: at, last_error: null, created_at_ms: at, updated_at_ms: at, sent_at_ms: null })
    return this.#run('outboxEnqueue', async (c) => {
      // Sent rows live in their own collection (see outboxMarkSent): the dedup covers both.
      if (await c.outboxSent.findOne({ _id: id as never }, { projection: { _id: 1 } })) return false
      return this.#insertOnce(c.outbox, doc)
    })
  }

  async outboxClaimDue(now: number, limit: number, claimUntil: number): Promise<OutboxRow[]> {
    this.#open()
    const n = limitOf(limit)
    if (n === 0 || !Number.isFinite(now)) {
      return []
    }
    const until = num(claimUntil)
    const at = num(now)
    return this.#run('outboxClaimDue', async (c) => {
      const claimed: OutboxRow[] = []
      const claimedIds: string[] = []
      // Each row is claimed by a compare-and-set on its due time; a row another dispatcher took
      // in between is skipped, and a few more rounds fill the batch up.
      for (let round = 0; round < 4 && (n === null || claimed.length < n); round++) {
        const query: Document = { status: 'pending', next_attempt_at_ms: { $lte: at } }
        if (claimedIds.length > 0) query['_id'] = { $nin: claimedIds }
        let cursor = c.outbox.find(query).sort({ next_attempt_at_ms: 1, created_at_ms: 1, _id: 1 })
        if (n !== null) cursor = cursor.limit(n - claimed.length)
        const candidates = await cursor.toArray()
        if (candidates.length === 0) break
        const won = await Promise.all(
          candidates.map((cand) =>
            c.outbox.findOneAndUpdate(
              { _id: cand['_id'], status: 'pending', next_attempt_at_ms: cand['next_attempt_at_ms'] },
              { $set: { next_attempt_at_ms: until, updated_at_ms: at } },
              { returnDocument: 'after' },
            ),
          ),
        )
        let lost = 0
        for (const doc of won) {
          if (doc) {
            claimed.push(decodeFields(doc) as unknown as OutboxRow)
            claimedIds.push(String(doc['_id']))
          } else {
            lost++
          }
        }
        if (lost === 0) break
      }
      return claimed
    })
  }

  async outboxMarkSent(id: string, now: number): Promise<void> {
    this.#open()
    const at = num(now)
    // A sent row moves to `outbox_sent`, so `outbox` only holds pending and dead-lettered rows and
    // claiming due rows stays cheap however many were sent (FerretDB scans on such queries). It is
    // written there before it leaves `outbox`: at any moment it is in one of the two.
    await this.#run('outboxMarkSent', async (c) => {
      const doc = await c.outbox.findOne({ _id: id as never })
      if (!doc || doc['status'] !== 'pending') return
      await this.#insertOnce(c.outboxSent, { ...doc, status: 'sent', sent_at_ms: at, updated_at_ms: at })
      await c.outbox.deleteOne({ _id: id as never, status: 'pending' })
    })
  }

  async outboxMarkRetry(id: string, attempts: number, nextAttemptAt: number, error: string, now: number): Promise<void> {
    this.#open()
    const set: Record<string, unknown> = { attempts: num(attempts), next_attempt_at_ms: num(nextAttemptAt), updated_at_ms: num(now) }
    const unset: Record<string, ''> = {}
    setField(set, unset, 'last_error', sanitize(error))
    await this.#run('outboxMarkRetry', (c) => c.outbox.updateOne({ _id: id, status: 'pending' }, updateOf(set, unset)))
  }

  async outboxMarkFailed(id: string, attempts: number, error: string, now: number): Promise<void> {
    this.#open()
    const set: Record<string, unknown> = { status: 'failed', attempts: num(attempts), updated_at_ms: num(now) }
    const unset: Record<string, ''> = {}
    setField(set, unset, 'last_error', sanitize(error))
    await this.#run('outboxMarkFailed', (c) => c.outbox.updateOne({ _id: id, status: 'pending' }, updateOf(set, unset)))
  }

  async outboxList(filter: { status?: OutboxStatus; limit?: number } = {}): Promise<OutboxRow[]> {
    this.#open()
    const limit = limitOf(filter.limit)
    if (limit === 0) {
      return []
    }
    return this.#run('outboxList', async (c) => {
      const read = async (col: Collection<Row>, query: Document): Promise<Document[]> => {
        let cursor = col.find(query).sort({ created_at_ms: 1, _id: 1 })
        if (limit !== null) cursor = cursor.limit(limit)
        return cursor.toArray()
      }
      const status = filter.status
      const docs =
        status === 'sent'
          ? await read(c.outboxSent, {})
          : status !== undefined
            ? await read(c.outbox, { status })
            : [...(await read(c.outbox, {})), ...(await read(c.outboxSent, {}))]
      docs.sort(
        (a, b) =>
          Number(a['created_at_ms']) - Number(b['created_at_ms']) || (String(a['_id']) < String(b['_id']) ? -1 : String(a['_id']) > String(b['_id']) ? 1 : 0),
      )
      const rows = docs.map((doc) => decodeFields(doc) as unknown as OutboxRow)
      return limit === null ? rows : rows.slice(0, limit)
    })
  }

  async outboxRequeue(id: string, now: number): Promise<boolean> {
    this.#open()
    const at = num(now)
    return this.#run('outboxRequeue', async (c) => {
      const res = await c.outbox.updateOne(
        { _id: id, status: 'failed' },
        { $set: { status: 'pending', attempts: 0, next_attempt_at_ms: at, updated_at_ms: at } },
      )
      return res.matchedCount === 1
    })
  }

  // ---- workers

  async upsertWorker(info: WorkerInfo): Promise<void> {
    this.#open()
    const doc = { _id: info.worker_id, ...encodeFields(info) }
    await this.#run('upsertWorker', (c) =>
      this.#upsertRetry(() => c.workers.replaceOne({ _id: info.worker_id }, doc, { upsert: true })),
    )
  }

  async listWorkers(): Promise<WorkerInfo[]> {
    this.#open()
    return this.#run('listWorkers', async (c) =>
      (await c.workers.find({}).sort({ _id: 1 }).toArray()).map((doc) => decodeFields(doc) as unknown as WorkerInfo),
    )
  }

  async saveWorkerState(state: WorkerStateDoc): Promise<void> {
    this.#open()
    const doc: Document = { _id: state.worker_id, ...encodeFields({ worker_id: state.worker_id, active_runs: state.active_runs, updated_at_ms: state.updated_at_ms }) }
    // Python layout beside ours: the first active run (or null) and a BSON date.
    const first = state.active_runs?.[0]
    // The Python worker's layout of its active run, for a fleet that reuses worker ids across languages.
    putField(doc, 'active_run', sanitize(first ? { ...first, cancel_token: null, state: 'running', checkpoint: {} } : null))
    const updatedAt = num(state.updated_at_ms)
    doc['updated_at'] = updatedAt === null ? null : new Date(updatedAt)
    await this.#run('saveWorkerState', (c) =>
      this.#upsertRetry(() => c.workerState.replaceOne({ _id: state.worker_id }, doc, { upsert: true })),
    )
  }

  async getWorkerState(workerId: string): Promise<WorkerStateDoc | null> {
    this.#open()
    return this.#run('getWorkerState', async (c) => {
      const doc = await c.workerState.findOne({ _id: workerId })
      return doc ? decodeWorkerState(doc) : null
    })
  }
}
