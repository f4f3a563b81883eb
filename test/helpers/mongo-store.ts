/**
 * Helpers of the MongoStore suites (test/adapters/mongo-store*.test.ts): error predicates, journal
 * entries, a store per test on a throw-away database of the real server, and a TCP proxy in front
 * of that server that can hang or cut its connections.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { createServer, type Server, type Socket, connect as netConnect } from 'node:net'
import { after, before } from 'node:test'
import { inspect } from 'node:util'
import { MongoStore, dropMongoDatabase, mongoServerInfo } from '../../src/adapters/mongo/index.ts'
import type { MongoStoreOptions } from '../../src/adapters/mongo/index.ts'
import { isFlowkitError } from '../../src/errors.ts'
import type { ErrorCode as ErrorCodeT } from '../../src/errors.ts'
import type { JournalEntry } from '../../src/ports/store.ts'

export const T0 = 1_700_000_000_000

/** An `assert.rejects` predicate: a FlowkitError of `code`. */
export function rejectsWith(code: ErrorCodeT): (err: unknown) => boolean {
  return (err) => {
    assert.ok(isFlowkitError(err, code), `expected FlowkitError ${code}, got ${inspect(err)}`)
    return true
  }
}

export function entry(taskId: string, seq: number, overrides: Partial<JournalEntry> = {}): JournalEntry {
  return { task_id: taskId, seq, at_ms: T0 + seq, writer: 'c1', events: [], nodes: [], ...overrides }
}

/** Stores of one test database on `url`, dropped after the suite. Call inside a `describe`. */
export interface MongoTestDb {
  /** A new store on the suite's database (closed after the suite). */
  newStore(options?: Partial<MongoStoreOptions>): MongoStore
  /** Whether the server is FerretDB (known once the suite's `before` ran). */
  readonly ferretdb: boolean
}

export function useMongoTestDb(url: string): MongoTestDb {
  const dbName = `flowkit_test_${randomBytes(6).toString('hex')}`
  const open: MongoStore[] = []
  let ferretdb = false
  before(async () => {
    ferretdb = (await mongoServerInfo(url)).ferretdb
  })
  after(async () => {
    await Promise.all(open.map((s) => s.close()))
    await dropMongoDatabase(url, dbName)
  })
  return {
    newStore(options = {}) {
      const store = new MongoStore({ url, dbName, clientOptions: { serverSelectionTimeoutMS: 10_000 }, ...options })
      open.push(store)
      return store
    },
    get ferretdb() {
      return ferretdb
    },
  }
}

/** TCP proxy in front of the server: can stop forwarding (a hung server) or cut every connection. */
export class ToggleProxy {
  blackhole = false
  /** New connections are closed at once (a server that is down). */
  refuse = false
  readonly #server: Server
  readonly #sockets = new Set<Socket>()
  /** The first client connection accepted (a driver's monitor connects first). */
  #first: Socket | null = null
  constructor(host: string, port: number) {
    this.#server = createServer((client) => {
      if (this.refuse) {
        client.destroy()
        return
      }
      this.#first ??= client
      const upstream = netConnect(port, host)
      for (const s of [client, upstream]) {
        this.#sockets.add(s)
        s.on('error', () => undefined)
        s.on('close', () => {
          this.#sockets.delete(s)
          client.destroy()
          upstream.destroy()
        })
      }
      client.on('data', (d) => {
        if (!this.blackhole) upstream.write(d)
      })
      upstream.on('data', (d) => {
        if (!this.blackhole) client.write(d)
      })
    })
  }
  listen(): Promise<number> {
    return new Promise((resolve) => this.#server.listen(0, '127.0.0.1', () => resolve((this.#server.address() as { port: number }).port)))
  }
  /** Cuts the first connection accepted (the proxy still accepts new ones). */
  cutFirst(): void {
    this.#first?.destroy()
  }
  /** Cuts every open connection (the proxy still accepts new ones). */
  cut(): void {
    for (const s of this.#sockets) s.destroy()
  }
  /** Stops accepting and cuts every open connection. */
  async shutdown(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()))
    for (const s of this.#sockets) s.destroy()
    await closed
  }
}

/** The task, once the store answers getTask again (calls retried every 100 ms for up to 20 s); null if it never does. */
export async function answersAgain(store: MongoStore, taskId: string): Promise<{ id?: string } | null> {
  const until = performance.now() + 20_000
  for (;;) {
    const got = await store.getTask(taskId).catch(() => null)
    if (got !== null || performance.now() >= until) return got
    await new Promise((r) => setTimeout(r, 100))
  }
}
