/**
 * The connection behind MongoStore (store.ts): options, connecting once (concurrent callers share
 * the attempt), FerretDB detection, the schema (created, or only opened when read-only), closing,
 * and running a verb on the collections with driver errors mapped to FlowkitError (errors.ts) and
 * write verbs refused on a read-only store.
 */
import { type Collection, type Document, MongoClient, type MongoClientOptions } from 'mongodb'
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
}

/** The verbs a read-only store serves. */
const READ_VERBS: ReadonlySet<string> = new Set(['getTask', 'listTasks', 'getRunView', 'listTaskIds', 'readJournal', 'listBatchMetrics', 'listArtifacts', 'getArtifact', 'outboxList', 'listWorkers', 'getCheckpoint', 'getWorkerState'])

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
  readonly #readOnly: boolean

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
      const collections = this.#readOnly ? openSchema(db, this.#prefix) : await ensureSchema(db, this.#prefix, this.#logger)
      this.open()
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
    this.#collections = undefined
    const client = this.#client
    this.#client = undefined
    if (client) await client.close().catch(() => undefined)
  }

  /** Runs `fn` on the collections, mapping driver errors. Arguments are checked before a call. */
  async run<T>(op: string, fn: (c: Collections) => Promise<T>): Promise<T> {
    if (this.#readOnly && !READ_VERBS.has(op)) throw new FlowkitError(ErrorCode.Config, `MongoStore: ${op} refused: the store was opened read-only`)
    const collections = await this.ready()
    try {
      return await fn(collections)
    } catch (err) {
      throw this.#fail(err, op)
    }
  }
}
