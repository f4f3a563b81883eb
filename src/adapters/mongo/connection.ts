/**
 * The connection behind MongoStore (store.ts): options, connecting once (concurrent callers share
 * the attempt), FerretDB detection, the schema (created, or only opened when read-only), closing,
 * and running a verb on the collections with driver errors mapped to FlowkitError (errors.ts) and
 * write verbs refused on a read-only store.
 *
 * A wedged client is replaced. The driver (mongodb 7.x) can wedge for good when the server closes
 * every connection at once (a restart): a command written to a socket that Node has already
 * destroyed, but whose 'close' event has not run yet, waits for a 'drain' that never comes. When
 * that command is the server monitor's heartbeat, the monitor stays "checking" forever, the server
 * stays Unknown, and every later call fails its server selection, 30 s at a time, for the life of
 * the process (seen in the reliability suite's store-restart scenario: one worker in four to six
 * runs never recovered); when it is an operation, that call never settles (seen too: a worker's
 * artifact write, and every artifact write queued behind it, stalled until a deadline). So a call
 * that fails its server selection, or gets no answer within `operationTimeoutMs`, closes the
 * client and fails the calls still on it; the next call connects a fresh one (fresh monitor,
 * fresh pool; the schema is not created again). Calls in flight when the server is seen dropping
 * connections (the pool cleared, a pooled connection found dead, a failed heartbeat or a network
 * error), or started within 30 s after, get 10 s. Every such failure is
 * a retryable STORE_UNAVAILABLE or STORE_TIMEOUT, as before.
 */
import { type Collection, type Document, MongoClient, type MongoClientOptions, MongoNetworkError, MongoServerSelectionError } from 'mongodb'
import { ErrorCode, FlowkitError } from '../../errors.ts'
import type { Logger } from '../../log.ts'
import { mapMongoError, safeMessage } from './errors.ts'
import { type Collections, MONGO_COLLECTIONS, type MongoCollectionKey, ensureSchema, openSchema } from './schema.ts'
import { dbNameFromUrl } from './url.ts'

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
  /**
   * Read only: no collection or index is created (a mistyped database name stays absent) and
   * every write verb is refused. For inspection tools (the CLI's status, ls, workers).
   */
  readOnly?: boolean
  /**
   * A store call that has not settled after this many ms fails with a retryable STORE_TIMEOUT and
   * the client is replaced (a wedged driver connection never settles it); while the server is
   * dropping connections (within 30 s of a sign of it) a call gets 10 s.
   * Default 120000; 0 turns these deadlines off (the driver's own socketTimeoutMS/timeoutMS still
   * apply).
   */
  operationTimeoutMs?: number
}

const DEFAULT_OPERATION_TIMEOUT_MS = 120_000

/**
 * After a sign that the server dropped the client's connections (see #disrupted), calls in flight
 * then or started within DISRUPTION_WINDOW_MS get SUSPECT_MS to answer, not operationTimeoutMs.
 */
const DISRUPTION_WINDOW_MS = 30_000
const SUSPECT_MS = 10_000

/** A call in flight on `client`; `abandon` fails it at once with `err`, `suspect` shortens its deadline. */
interface Guard {
  client: MongoClient
  abandon(err: FlowkitError): void
  suspect(): void
}

/** A driver error that says the client cannot reach the server (and may never again: see above). */
function selectionFailed(err: unknown): boolean {
  let e: unknown = err
  for (let depth = 0; depth < 4 && e !== null && typeof e === 'object'; depth++) {
    if (e instanceof MongoServerSelectionError) return true
    e = (e as { cause?: unknown }).cause
  }
  return false
}

/** The verbs a read-only store serves. */
const READ_VERBS: ReadonlySet<string> = new Set(['getTask', 'listTasks', 'getRunView', 'listTaskIds', 'listTaskStatuses', 'readJournal', 'listBatchMetrics', 'listArtifacts', 'getArtifact', 'outboxList', 'outboxCount', 'listWorkers', 'getCheckpoint', 'getWorkerState'])

/** One MongoStore's client and collections. */
export class MongoConnection {
  /** FerretDB (detected at connect): its single-document updates are not isolated. */
  #ferret = false
  readonly #url: string
  readonly #dbName: string
  readonly #prefix: string
  readonly #logger: Logger | undefined
  readonly #clientOptions: MongoClientOptions
  #client: MongoClient | undefined
  #collections: Collections | undefined
  #initializing: Promise<Collections> | undefined
  #closed = false
  /** The schema was created (or opened) once: a replacement client only opens it. */
  #schemaReady = false
  readonly #readOnly: boolean
  readonly #operationTimeoutMs: number
  /** Clients replaced since the store was opened. */
  #replaced = 0
  /** The calls in flight, each with the client it runs on. */
  readonly #guards = new Set<Guard>()
  /** Until when (performance.now()) calls are suspect after the last sign of dropped connections. */
  #disruptedUntil = 0

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
    this.#readOnly = options.readOnly === true
    const timeout = options.operationTimeoutMs ?? DEFAULT_OPERATION_TIMEOUT_MS
    if (!Number.isFinite(timeout) || timeout < 0) {
      throw new FlowkitError(ErrorCode.Config, `MongoStore: operationTimeoutMs must be a number of ms >= 0, got ${String(options.operationTimeoutMs)}`)
    }
    this.#operationTimeoutMs = timeout
  }

  /** The database name in use (for tests and operators). */
  get dbName(): string {
    return this.#dbName
  }

  /** The full name of a collection (prefix included). */
  collectionName(key: MongoCollectionKey): string {
    return this.#prefix + MONGO_COLLECTIONS[key]
  }

  /** FerretDB (known once connected). */
  get ferret(): boolean {
    return this.#ferret
  }

  /** Throws `closed` once the store is closed. */
  open(): void {
    if (this.#closed) throw new FlowkitError(ErrorCode.Closed, 'store is closed')
  }

  #fail(err: unknown, op: string): FlowkitError {
    if (this.#closed && !(err instanceof FlowkitError && err.code !== ErrorCode.Closed)) {
      return new FlowkitError(ErrorCode.Closed, 'store is closed', { cause: err })
    }
    return mapMongoError(err, op)
  }

  /** The collections, connecting first (once; concurrent callers share the attempt). */
  ready(): Promise<Collections> {
    this.open()
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
      const c = client
      // Signs that the server dropped connections: the pool cleared, a pooled connection found
      // dead at checkout, a failed heartbeat (and, in run(), a call's network error).
      const disrupted = (): void => this.#disrupted(c)
      client.on('connectionPoolCleared', disrupted)
      client.on('serverHeartbeatFailed', disrupted)
      client.on('connectionClosed', (e: { reason?: string }) => {
        if (e.reason === 'error') disrupted()
      })
    } catch (err) {
      throw new FlowkitError(ErrorCode.Config, `MongoStore: invalid connection settings: ${safeMessage(err)}`, { cause: err })
    }
    this.#client = client
    try {
      await client.connect()
      this.open()
      const db = client.db(this.#dbName)
      const info = await db.command({ buildInfo: 1 }).catch(() => ({}) as Document)
      this.#ferret = info['ferretdbVersion'] !== undefined || info['ferretdb'] !== undefined
      const collections = this.#readOnly || this.#schemaReady ? openSchema(db, this.#prefix) : await ensureSchema(db, this.#prefix, this.#logger)
      this.open()
      this.#collections = collections
      this.#schemaReady = true
      if (this.#replaced === 0) this.#logger?.info('store.mongo.ready', { db: this.#dbName, collection_prefix: this.#prefix })
      else this.#logger?.info('store.mongo.reconnected', { db: this.#dbName, clients_replaced: this.#replaced })
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

  /**
   * The driver collection behind `key` (connecting first): an escape hatch for operators and tests
   * (inspecting the stored layout, migrations). Writes through it bypass the store's rules.
   */
  async rawCollection(key: MongoCollectionKey): Promise<Collection<Document>> {
    return (await this.ready())[key] as Collection<Document>
  }

  /** Closes the client; every later call fails with `closed`. */
  async close(): Promise<void> {
    this.#closed = true
    const closed = new FlowkitError(ErrorCode.Closed, 'store is closed')
    for (const g of [...this.#guards]) g.abandon(closed)
    this.#collections = undefined
    const client = this.#client
    this.#client = undefined
    if (client) await client.close().catch(() => undefined)
  }

  /** Runs `fn` on the collections, mapping driver errors. Arguments are checked before a call. */
  async run<T>(op: string, fn: (c: Collections) => Promise<T>): Promise<T> {
    if (this.#readOnly && !READ_VERBS.has(op)) throw new FlowkitError(ErrorCode.Config, `MongoStore: ${op} refused: the store was opened read-only`)
    const collections = await this.ready()
    const client = this.#client
    try {
      return await this.#guard(fn(collections), op, client)
    } catch (err) {
      if (client !== undefined && err instanceof MongoNetworkError) this.#disrupted(client)
      if (selectionFailed(err)) this.#replace(client, `server selection failed: ${safeMessage(err)}`)
      throw this.#fail(err, op)
    }
  }

  /**
   * `call`, unless it has not settled after operationTimeoutMs (a retryable STORE_TIMEOUT, and the
   * client is replaced), or after SUSPECT_MS when the server was seen dropping connections while
   * it ran or shortly before it started (a retryable STORE_TIMEOUT: a call written to a connection the
   * server had just closed never settles), or its client is replaced first (a retryable
   * STORE_UNAVAILABLE). A late outcome of `call` is dropped.
   */
  #guard<T>(call: Promise<T>, op: string, client: MongoClient | undefined): Promise<T> {
    if (client === undefined || this.#operationTimeoutMs === 0) return call
    return new Promise<T>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined
      let deadline = 0
      const settle = (): void => {
        clearTimeout(timer)
        this.#guards.delete(guard)
      }
      const fail = (err: FlowkitError): void => {
        settle()
        call.catch(() => undefined)
        reject(err)
      }
      const arm = (ms: number, replace: boolean): void => {
        clearTimeout(timer)
        deadline = performance.now() + ms
        timer = setTimeout(() => {
          const what = replace ? 'operationTimeoutMs' : 'after the server dropped connections'
          this.#logger?.warn('store.mongo.call_abandoned', { db: this.#dbName, op, waited_ms: ms, why: what })
          fail(new FlowkitError(ErrorCode.StoreTimeout, `mongo store ${op}: no answer in ${ms} ms (${what})`, { retryable: true, details: { op } }))
          if (replace) this.#replace(client, `${op} got no answer in ${ms} ms`)
        }, ms)
        timer.unref()
      }
      const guard: Guard = {
        client,
        abandon: fail,
        suspect: () => {
          if (deadline - performance.now() > SUSPECT_MS) arm(SUSPECT_MS, false)
        },
      }
      this.#guards.add(guard)
      if (performance.now() < this.#disruptedUntil && SUSPECT_MS < this.#operationTimeoutMs) arm(SUSPECT_MS, false)
      else arm(this.#operationTimeoutMs, true)
      call.then(
        (v) => {
          settle()
          resolve(v)
        },
        (err: unknown) => {
          settle()
          reject(err)
        },
      )
    })
  }

  /** A sign that the server dropped `client`'s connections: calls on it, now and for 30 s, are suspect. */
  #disrupted(client: MongoClient): void {
    if (this.#client !== client) return
    this.#disruptedUntil = performance.now() + DISRUPTION_WINDOW_MS
    for (const g of this.#guards) if (g.client === client) g.suspect()
  }

  /** Closes `client` (in the background) when it is still the current one; the next call connects anew. */
  #replace(client: MongoClient | undefined, reason: string): void {
    if (client === undefined || this.#client !== client || this.#closed) return
    this.#client = undefined
    this.#collections = undefined
    this.#replaced++
    this.#logger?.warn('store.mongo.client_replaced', { db: this.#dbName, reason, clients_replaced: this.#replaced })
    const err = new FlowkitError(ErrorCode.StoreUnavailable, `mongo store: the client was replaced while this call was in flight (${reason})`, { retryable: true })
    for (const g of [...this.#guards]) if (g.client === client) g.abandon(err)
    void client.close().catch(() => undefined)
  }
}
