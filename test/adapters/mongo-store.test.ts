/**
 * MongoStore specifics beyond the port contract (that lives in test/conformance/store.suite.ts):
 * error mapping and credential hygiene, checks made before any query, the stored layout (plain
 * fields Python workers read, user JSON kept safe for FerretDB), and documents written by Python
 * workers. The first group needs no server; the rest runs against FLOWKIT_MONGO_URL.
 */
import assert from 'node:assert/strict'
import { randomBytes, randomUUID } from 'node:crypto'
import { createServer, type Server, type Socket, connect as netConnect } from 'node:net'
import { after, before, describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { inspect } from 'node:util'
import { MongoBulkWriteError, MongoNetworkError } from 'mongodb'
import { MONGO_COLLECTIONS, MongoStore, dropMongoDatabase, mongoServerInfo } from '../../src/adapters/mongo/index.ts'
import { mapMongoError } from '../../src/adapters/mongo/errors.ts'
import type { MongoStoreOptions } from '../../src/adapters/mongo/index.ts'
import { ErrorCode, isFlowkitError } from '../../src/errors.ts'
import type { ErrorCode as ErrorCodeT } from '../../src/errors.ts'
import { MemoryLogger } from '../../src/log.ts'
import type { JournalEntry, WorkerStateDoc } from '../../src/ports/store.ts'
import { journalKey } from '../../src/ports/store-rules.ts'
import { makeNodeState, makeTaskDoc } from '../helpers/fixtures.ts'
import { mongoUrl, realSkip } from '../helpers/real.ts'

const T0 = 1_700_000_000_000
const note = (msg: string) => process.stderr.write(`# ${msg}\n`)
/** Nothing listens on port 1 of the loopback interface: connections are refused at once. */
const CLOSED_PORT_URL = 'mongodb://flowuser:s3cr3t-pw@127.0.0.1:1/'

function rejectsWith(code: ErrorCodeT): (err: unknown) => boolean {
  return (err) => {
    assert.ok(isFlowkitError(err, code), `expected FlowkitError ${code}, got ${inspect(err)}`)
    return true
  }
}

function entry(taskId: string, seq: number, overrides: Partial<JournalEntry> = {}): JournalEntry {
  return { task_id: taskId, seq, at_ms: T0 + seq, writer: 'c1', events: [], nodes: [], ...overrides }
}

function unreachableStore(t: TestContext, extra: Partial<MongoStoreOptions> = {}): MongoStore {
  const store = new MongoStore({ url: CLOSED_PORT_URL, clientOptions: { serverSelectionTimeoutMS: 10_000 }, ...extra })
  t.after(() => store.close())
  return store
}

// ---------------------------------------------------------------------------------------------
describe('MongoStore without a server', () => {
  it('a socket failure anywhere in the cause chain is STORE_UNAVAILABLE (retryable), whatever wraps it', () => {
    const socket = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:27017'), { code: 'ECONNREFUSED' })
    const wrapped = new Error('upsertArtifacts failed', { cause: socket })
    for (const err of [socket, wrapped, new Error('socket hang up')]) {
      const mapped = mapMongoError(err, 'upsertArtifacts')
      assert.equal(mapped.code, ErrorCode.StoreUnavailable)
      assert.equal(mapped.retryable, true)
    }
    assert.equal(mapMongoError(new Error('document too large'), 'x').retryable, false)
  })

  it('a lost connection that a bulk write (insertMany) wraps in a MongoBulkWriteError is STORE_UNAVAILABLE (retryable); a write error is not', () => {
    const result = {} as never // the write's partial result (not read)
    // What the driver throws when every connection drops at once: the first failure clears the
    // pool, the others are stale for it (no ResetPool label) and come wrapped, class and cause lost.
    for (const net of [new MongoNetworkError('connection 7 to 127.0.0.1:27017 closed'), new MongoNetworkError('connection 3 to 10.0.0.5:27017 timed out', { beforeHandshake: false })]) {
      const wrapped = new MongoBulkWriteError(net, result)
      assert.ok(!(wrapped instanceof MongoNetworkError))
      const mapped = mapMongoError(wrapped, 'upsertArtifacts')
      assert.equal(mapped.code, ErrorCode.StoreUnavailable, wrapped.message)
      assert.equal(mapped.retryable, true)
    }
    const duplicate = new MongoBulkWriteError({ message: 'E11000 duplicate key', code: 11000, writeErrors: [] } as never, result)
    assert.equal(mapMongoError(duplicate, 'x').code, ErrorCode.DuplicateKey)
    const invalid = new MongoBulkWriteError({ message: 'Document failed validation', code: 121, writeErrors: [] } as never, result)
    assert.equal(mapMongoError(invalid, 'x').retryable, false)
  })

  it('a closed port fails with STORE_UNAVAILABLE (retryable) within serverSelectionTimeoutMS; no credentials anywhere', async (t) => {
    const logger = new MemoryLogger()
    const store = new MongoStore({ url: CLOSED_PORT_URL, logger, clientOptions: { serverSelectionTimeoutMS: 300 } })
    t.after(() => store.close())
    const started = performance.now()
    let caught: unknown
    await assert.rejects(
      store.getTask('t'),
      (err) => {
        caught = err
        return rejectsWith(ErrorCode.StoreUnavailable)(err)
      },
    )
    assert.ok(performance.now() - started < 5000, 'fails fast')
    assert.equal((caught as { retryable: boolean }).retryable, true)
    for (const text of [(caught as Error).message, inspect(caught, { depth: 20 }), JSON.stringify(logger.records)]) {
      assert.ok(!text.includes('s3cr3t-pw'), `no password in ${text.slice(0, 300)}`)
      assert.ok(!text.includes('flowuser'), `no user name in ${text.slice(0, 300)}`)
    }
    // init failed: a later call tries again (and fails the same way) instead of caching the failure
    await assert.rejects(store.init(), rejectsWith(ErrorCode.StoreUnavailable))
  })

  it('invalid node ids and journal keys are rejected with INVALID_KEY before any query', async (t) => {
    const store = unreachableStore(t)
    const started = performance.now()
    for (const bad of ['a.b', '$set', 'nodes.extract', '', 'x'.repeat(129), 'é']) {
      const task = makeTaskDoc()
      task.nodes[bad] = makeNodeState(bad, 'extractor')
      await assert.rejects(store.createTask(task), rejectsWith(ErrorCode.InvalidKey), bad)
      await assert.rejects(store.writeSnapshot({ ...task, v: 1 }, T0), rejectsWith(ErrorCode.InvalidKey), bad)
      await assert.rejects(store.appendJournal([entry('t', 1, { nodes: [makeNodeState(bad, 'x')] })]), rejectsWith(ErrorCode.InvalidKey), bad)
      await assert.rejects(store.getRunView('t', bad), rejectsWith(ErrorCode.InvalidKey), bad)
      await assert.rejects(
        store.insertBatchMetrics([{ task_id: 't', node_id: bad, batch_uid: 'b', attempt_epoch: 1, metrics: {} }], T0),
        rejectsWith(ErrorCode.InvalidKey),
        bad,
      )
    }
    for (const seq of [0, -1, 1.5, Number.NaN, 2 ** 60]) {
      await assert.rejects(store.appendJournal([entry('t', seq)]), rejectsWith(ErrorCode.InvalidKey), String(seq))
    }
    // the server is unreachable with a 10 s selection timeout: reaching it would take that long
    assert.ok(performance.now() - started < 2000, 'no query was attempted')
  })

  it('close before init: every call rejects with CLOSED, without connecting', async (t) => {
    const store = unreachableStore(t)
    await store.close()
    await assert.rejects(store.init(), rejectsWith(ErrorCode.Closed))
    await assert.rejects(store.getTask('t'), rejectsWith(ErrorCode.Closed))
    await assert.rejects(store.listWorkers(), rejectsWith(ErrorCode.Closed))
    await store.close()
  })

  it('options: url is required; dbName defaults to the URL path, else flowkit', () => {
    assert.throws(() => new MongoStore({ url: '' }), (err) => isFlowkitError(err, ErrorCode.Config))
    assert.equal(new MongoStore({ url: 'mongodb://u:p@h:1/orders?authSource=admin' }).dbName, 'orders')
    assert.equal(new MongoStore({ url: 'mongodb://h1:1,h2:2/?replicaSet=rs' }).dbName, 'flowkit')
    assert.equal(new MongoStore({ url: 'mongodb://h:1' }).dbName, 'flowkit')
    assert.equal(new MongoStore({ url: 'mongodb://h:1/x', dbName: 'y' }).dbName, 'y')
    assert.equal(new MongoStore({ url: 'mongodb://h:1', collectionPrefix: 'fk_' }).collectionName('tasks'), 'fk_tasks')
  })
})

// ---------------------------------------------------------------------------------------------

/** TCP proxy in front of the server: can stop forwarding (a hung server) or cut every connection. */
class ToggleProxy {
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
async function answersAgain(store: MongoStore, taskId: string): Promise<{ id?: string } | null> {
  const until = performance.now() + 20_000
  for (;;) {
    const got = await store.getTask(taskId).catch(() => null)
    if (got !== null || performance.now() >= until) return got
    await new Promise((r) => setTimeout(r, 100))
  }
}

const skip = realSkip('mongo')
const url = mongoUrl()

describe('MongoStore on a real server', { skip }, () => {
  const dbName = `flowkit_test_${randomBytes(6).toString('hex')}`
  let ferretdb = false
  const open: MongoStore[] = []

  function newStore(options: Partial<MongoStoreOptions> = {}): MongoStore {
    const store = new MongoStore({ url: url!, dbName, clientOptions: { serverSelectionTimeoutMS: 10_000 }, ...options })
    open.push(store)
    return store
  }

  before(async () => {
    ferretdb = (await mongoServerInfo(url!)).ferretdb
  })
  after(async () => {
    await Promise.all(open.map((s) => s.close()))
    await dropMongoDatabase(url!, dbName)
  })

  it('a read-only store reads what a writer wrote and refuses every write verb', async () => {
    const writer = newStore()
    const task = makeTaskDoc()
    await writer.createTask(task)
    const reader = newStore({ readOnly: true })
    assert.equal((await reader.getTask(task.id))?.id, task.id)
    await assert.rejects(reader.createTask(makeTaskDoc()), (err: unknown) => isFlowkitError(err, ErrorCode.Config) && /read-only/.test((err as Error).message))
    await assert.rejects(reader.appendJournal([entry(task.id, 1)]), /read-only/)
  })

  it('createTask of an existing id: STORE_DUPLICATE_KEY with the task id, not retryable', async () => {
    const store = newStore()
    const task = makeTaskDoc()
    await store.createTask(task)
    await assert.rejects(store.createTask(task), (err) => {
      assert.ok(isFlowkitError(err, ErrorCode.DuplicateKey))
      assert.equal(err.retryable, false)
      assert.equal(err.details['task_id'], task.id)
      return true
    })
  })

  it('collections carry the protocol names (plus an optional prefix) and unique indexes', async () => {
    const prefix = `p${randomBytes(3).toString('hex')}_`
    const store = newStore({ collectionPrefix: prefix })
    await store.init()
    const expected = ['tasks', 'journal', 'artifacts', 'stream_progress', 'worker_state', 'metrics_raw', 'outbox', 'outbox_sent', 'workers', 'attempt_claims', 'checkpoints']
    assert.deepEqual(Object.values(MONGO_COLLECTIONS).sort(), [...expected].sort())
    const tasks = await store.rawCollection('tasks')
    const names = (await tasks.db.listCollections({}, { nameOnly: true }).toArray()).map((c) => c.name)
    for (const name of expected) assert.ok(names.includes(prefix + name), `${prefix + name} exists`)
    const uniqueKeys = async (key: Parameters<MongoStore['rawCollection']>[0]) =>
      (await (await store.rawCollection(key)).listIndexes().toArray()).filter((ix) => ix['unique']).map((ix) => Object.keys(ix['key']).join(','))
    assert.deepEqual(await uniqueKeys('tasks'), ['id'])
    assert.deepEqual(await uniqueKeys('artifacts'), ['task_id,node_id,batch_uid'])
    assert.deepEqual(await uniqueKeys('metrics'), [], 'keyed by _id: one row per (task, node, batch_uid, epoch)')
    assert.deepEqual(await uniqueKeys('journal'), [], 'keyed by _id: (task_id, seq)')
    assert.deepEqual(await uniqueKeys('streamProgress'), ['task_id,consumer_node,from_node,batch_uid,consumer_epoch'])
  })

  it('init accepts an equivalent unique index made under another name (e.g. by a Python worker)', async () => {
    const prefix = `q${randomBytes(3).toString('hex')}_`
    const first = newStore({ collectionPrefix: prefix })
    const artifacts = await first.rawCollection('artifacts')
    await artifacts.dropIndex('flowkit_artifacts_key')
    await artifacts.createIndex({ task_id: 1, node_id: 1, batch_uid: 1 }, { unique: true, name: 'python_artifact_key' })
    const second = newStore({ collectionPrefix: prefix })
    await second.init()
    assert.equal(await second.upsertArtifact({ task_id: 't', node_id: 'n', batch_uid: null, status: 'complete', meta: {}, attempt_epoch: 1, worker_id: null }, T0), true)
  })

  it('task layout: plain id, status and coordinator.cancelled; nodes as a map; unsafe user JSON as *_json text', async () => {
    const store = newStore()
    const task = makeTaskDoc({ params: { flat: 1, list: ['a'] }, result: null })
    await store.createTask(task)
    const raw = await store.rawCollection('tasks')
    let doc = (await raw.findOne({ id: task.id }))!
    assert.equal(doc['status'], 'queued')
    assert.equal(doc['coordinator']['cancelled'], false)
    assert.deepEqual(doc['params'], { flat: 1, list: ['a'] }, 'BSON-safe params stay a readable object')
    assert.equal(typeof doc['graph_json'], 'string', 'graph edges are nested arrays: stored as JSON text')
    assert.equal(doc['graph'], undefined)
    assert.equal(doc['nodes']['extract']['status'], 'queued')
    assert.equal(doc['nodes']['transform']['attempt_epoch'], 0)

    assert.equal(doc['v'], 0, 'a new task is its snapshot at version 0')

    // a journal entry: insert-only, keyed by (task_id, seq), the entry as JSON text
    const e = entry(task.id, 1, { task: { cancelled: true, cancel_reason: 'user', vars: { 'a.b': [[1]] }, result: { ok: [1] } } })
    assert.deepEqual(await store.appendJournal([e]), [true])
    const journal = await store.rawCollection('journal')
    const row = (await journal.findOne({ _id: journalKey(task.id, 1) as never }))!
    assert.deepEqual({ ...row, body: JSON.parse(row['body']) }, { _id: journalKey(task.id, 1), task_id: task.id, seq: 1, at_ms: T0 + 1, writer: 'c1', body: e })
    doc = (await raw.findOne({ id: task.id }))!
    assert.equal(doc['coordinator']['cancelled'], false, 'the snapshot is not rewritten by an append')

    const merged = (await store.getTask(task.id))!
    assert.equal(await store.writeSnapshot({ ...merged, v: 1 }, T0 + 5), true)
    doc = (await raw.findOne({ id: task.id }))!
    assert.equal(doc['v'], 1)
    assert.equal(doc['updated_at_ms'], T0 + 5)
    assert.equal(doc['coordinator']['cancelled'], true, 'Python workers read coordinator.cancelled')
    assert.equal(doc['coordinator']['vars_json'], '{"a.b":[[1]]}')
    assert.equal(doc['coordinator']['vars'], undefined)
    assert.deepEqual(doc['result'], { ok: [1] })
    assert.equal(typeof doc['graph_json'], 'string', 'the graph is not rewritten')

    // a field switching between the two forms never keeps both
    const stats = (s: Record<string, unknown>) => {
      const t = structuredClone(merged)
      t.nodes['extract']!.stats = s
      return t
    }
    await store.writeSnapshot({ ...stats({ m: [[1, 2]] }), result: [[1]], v: 2 }, T0 + 6)
    doc = (await raw.findOne({ id: task.id }))!
    assert.equal(doc['nodes']['extract']['stats_json'], '{"m":[[1,2]]}')
    assert.equal(doc['nodes']['extract']['stats'], undefined)
    assert.equal(doc['result_json'], '[[1]]')
    assert.equal(doc['result'], undefined)
    await store.writeSnapshot({ ...stats({ m: 3 }), result: { ok: 2 }, v: 3 }, T0 + 7)
    doc = (await raw.findOne({ id: task.id }))!
    assert.deepEqual(doc['nodes']['extract']['stats'], { m: 3 })
    assert.equal(doc['nodes']['extract']['stats_json'], undefined)
    assert.deepEqual(doc['result'], { ok: 2 })
    assert.equal(doc['result_json'], undefined)
    const got = await store.getTask(task.id)
    assert.deepEqual(got?.nodes['extract']?.stats, { m: 3 })
    assert.deepEqual(got?.coordinator.vars, { 'a.b': [[1]] })
  })

  it('user JSON the server would refuse or alter round-trips: lone surrogates, "__proto__" keys, odd keys, deep nesting', async () => {
    const store = newStore()
    let deep: Record<string, unknown> = { leaf: [1] }
    for (let i = 0; i < 120; i++) deep = { d: deep }
    const params = JSON.parse(
      '{"__proto__": {"polluted": true}, "": 1, "nul\\u0000key": 2, "lone": "a\\ud800b", "ok": "x\\u0000y"}',
    ) as Record<string, unknown>
    params['deep'] = deep
    const task = makeTaskDoc({ params })
    await store.createTask(task)
    const got = (await store.getTask(task.id))!
    assert.deepEqual(got.params, task.params)
    assert.ok(Object.hasOwn(got.params, '__proto__'))
    assert.equal(({} as Record<string, unknown>)['polluted'], undefined)
    assert.equal(Object.getPrototypeOf(got.params), Object.prototype)
    // the store's own string fields with a lone surrogate are kept too, in the journal and the snapshot
    const node = { ...task.nodes['extract']!, end_reason: 'bad \udc00 text' }
    await store.appendJournal([entry(task.id, 1, { nodes: [node], events: ['lone \ud800'] })])
    assert.equal((await store.getTask(task.id))?.nodes['extract']?.end_reason, 'bad \udc00 text')
    assert.deepEqual((await store.readJournal([task.id]))[0]?.events, ['lone \ud800'])
    await store.writeSnapshot({ ...(await store.getTask(task.id))!, v: 1 }, T0)
    assert.equal((await store.getRunView(task.id, 'extract'))?.node?.end_reason, 'bad \udc00 text')
  })

  it('listings asked for at once (merged into one query on FerretDB) each get what they get alone', async () => {
    const store = newStore()
    const raw = await store.rawCollection('artifacts')
    const tasks = [`t-${randomUUID()}`, `t-${randomUUID()}`, `t-${randomUUID()}`]
    const writes = tasks.flatMap((task, ti) =>
      ['a', 'b'].flatMap((node) => [
        ...[0, 1, 2].map((i) => ({ task_id: task, node_id: node, batch_uid: `s${i}`, status: 'partial' as const, meta: { i, ti }, attempt_epoch: 1, worker_id: 'w1' })),
        { task_id: task, node_id: node, batch_uid: null, status: 'complete' as const, meta: {}, attempt_epoch: 1, worker_id: 'w1' },
      ]),
    )
    for (const [i, w] of writes.entries()) await store.upsertArtifact(w, T0 + i * 10)
    // A Python worker's partial: a BSON date, its own _id.
    await raw.insertOne({ task_id: tasks[0], node_id: 'a', batch_uid: 'py', status: 'partial', meta: {}, attempt_epoch: 1, worker_id: 'py', created_at: new Date(T0 + 25), updated_at: new Date(T0 + 25) })
    const listings: [string, Parameters<MongoStore['listArtifacts']>[1]][] = [
      [tasks[0] as string, { nodeId: 'a' }],
      [tasks[0] as string, { nodeId: 'a', createdAfter: T0 + 20 }],
      [tasks[0] as string, {}],
      [tasks[1] as string, { nodeId: 'b', status: 'complete' }],
      [tasks[1] as string, { nodeId: 'b', createdAfter: T0 + 75 }],
      [tasks[2] as string, { nodeId: 'a', status: 'partial', createdAfter: 0 }],
      [tasks[2] as string, { nodeId: 'zz' }],
      [`t-${randomUUID()}`, {}],
    ]
    const alone = []
    for (const [task, q] of listings) alone.push(await store.listArtifacts(task, q))
    assert.deepEqual(alone[1]?.map((a) => a.batch_uid), ['s2', 'py', null])
    assert.equal(alone[2]?.length, 9)
    for (let round = 0; round < 3; round++) {
      const together = await Promise.all(listings.map(([task, q]) => store.listArtifacts(task, q)))
      assert.deepEqual(together, alone)
    }
  })

  it('artifact lookups asked for at once (a Python worker\'s merged into one query on FerretDB) each get what they get alone', async () => {
    const store = newStore()
    const raw = await store.rawCollection('artifacts')
    const task = `t-${randomUUID()}`
    await store.upsertArtifact({ task_id: task, node_id: 'ours', batch_uid: 's0', status: 'partial', meta: { n: 1 }, attempt_epoch: 2, worker_id: 'w1' }, T0)
    await store.upsertArtifact({ task_id: task, node_id: 'ours', batch_uid: null, status: 'complete', meta: {}, attempt_epoch: 2, worker_id: 'w1' }, T0 + 1)
    // A Python worker's: its own _id, a complete artifact without batch_uid, BSON dates.
    const py = { attempt_epoch: 3, worker_id: 'py', created_at: new Date(T0 + 2), updated_at: new Date(T0 + 2) }
    await raw.insertOne({ task_id: task, node_id: 'py', status: 'complete', meta: { total: 4 }, ...py })
    await raw.insertOne({ task_id: task, node_id: 'py', batch_uid: 'p1', status: 'partial', meta: { k: 'v' }, ...py })
    await raw.insertOne({ task_id: `${task}-other`, node_id: 'py', status: 'complete', meta: { other: true }, ...py })
    const refs: [string, string, string | null][] = [
      [task, 'ours', 's0'],
      [task, 'ours', null],
      [task, 'py', null],
      [task, 'py', 'p1'],
      [task, 'py', 'p2'],
      [task, 'none', null],
      [`${task}-other`, 'py', null],
      [`${task}-other`, 'py', 'p1'],
    ]
    const alone = []
    for (const [t, n, b] of refs) alone.push(await store.getArtifact(t, n, b))
    assert.deepEqual(alone.map((a) => (a === null ? null : [a.node_id, a.batch_uid, a.attempt_epoch])), [
      ['ours', 's0', 2],
      ['ours', null, 2],
      ['py', null, 3],
      ['py', 'p1', 3],
      null,
      null,
      ['py', null, 3],
      null,
    ])
    assert.deepEqual(alone[2]?.meta, { total: 4 })
    for (let round = 0; round < 3; round++) {
      assert.deepEqual(await Promise.all(refs.map(([t, n, b]) => store.getArtifact(t, n, b))), alone)
    }
  })

  it('artifact meta stays a readable BSON object when it can, else meta_json; a Python complete artifact reads batch_uid null', async () => {
    const store = newStore()
    const raw = await store.rawCollection('artifacts')
    const task = `t-${randomUUID()}`
    await store.upsertArtifact({ task_id: task, node_id: 'extract', batch_uid: 'b1', status: 'partial', meta: { rows: 3, files: ['a'] }, attempt_epoch: 1, worker_id: 'w1' }, T0)
    let doc = (await raw.findOne({ task_id: task, batch_uid: 'b1' }))!
    assert.deepEqual(doc['meta'], { rows: 3, files: ['a'] })
    assert.equal(doc['meta_json'], undefined)
    await store.upsertArtifact({ task_id: task, node_id: 'extract', batch_uid: 'b1', status: 'partial', meta: { shape: [[1, 2]] }, attempt_epoch: 1, worker_id: 'w1' }, T0 + 1)
    doc = (await raw.findOne({ task_id: task, batch_uid: 'b1' }))!
    assert.equal(doc['meta'], undefined)
    assert.equal(doc['meta_json'], '{"shape":[[1,2]]}')
    assert.deepEqual((await store.getArtifact(task, 'extract', 'b1'))?.meta, { shape: [[1, 2]] })

    // what a Python worker writes for a node's complete artifact: no batch_uid, dates
    await raw.insertOne({
      task_id: task,
      node_id: 'py',
      status: 'complete',
      meta: { total: 7 },
      attempt_epoch: 1,
      worker_id: 'py-worker',
      created_at: new Date(T0 + 5),
      updated_at: new Date(T0 + 6),
    })
    await store.upsertArtifact({ task_id: task, node_id: 'py', batch_uid: 'p1', status: 'partial', meta: {}, attempt_epoch: 1, worker_id: 'py-worker' }, T0 + 5)
    const complete = await store.getArtifact(task, 'py', null)
    assert.deepEqual(complete, {
      task_id: task,
      node_id: 'py',
      batch_uid: null,
      status: 'complete',
      meta: { total: 7 },
      attempt_epoch: 1,
      worker_id: 'py-worker',
      final_metrics: { total: 7 },
      created_at: T0 + 5,
      updated_at: T0 + 6,
    })
    assert.deepEqual(
      (await store.listArtifacts(task, { nodeId: 'py' })).map((a) => a.batch_uid),
      ['p1', null],
      'the complete artifact sorts after the partials',
    )
    // a retry on our side (higher epoch) wins: what getArtifact returns is ours
    assert.equal(await store.upsertArtifact({ task_id: task, node_id: 'py', batch_uid: null, status: 'complete', meta: { total: 8 }, attempt_epoch: 2, worker_id: 'ts' }, T0 + 9), true)
    const taken = await store.getArtifact(task, 'py', null)
    assert.deepEqual([taken?.attempt_epoch, taken?.meta, taken?.final_metrics], [2, { total: 8 }, undefined], 'our complete artifact without finalize metrics has none')
    if (!ferretdb) {
      // MongoDB's unique index sees the Python document (missing batch_uid = null): it is taken over
      assert.equal(taken?.created_at, T0 + 5)
      assert.equal(await raw.countDocuments({ task_id: task, node_id: 'py', status: 'complete' }), 1)
      // still without batch_uid: the seed finds a complete artifact by the field's absence
      assert.equal(await raw.countDocuments({ task_id: task, node_id: 'py', batch_uid: { $exists: false } }), 1)
    }
    if (!ferretdb) {
      // MongoDB indexes the missing batch_uid as null: an older epoch is refused by the unique index.
      // (FerretDB 1.x does not: see the report on stores written by both languages.)
      assert.equal(await store.upsertArtifact({ task_id: task, node_id: 'py', batch_uid: null, status: 'failed', meta: {}, attempt_epoch: 1, worker_id: 'x' }, T0 + 10), false)
    }
  })

  it('init drops the unique (task, node, batch_uid) metrics index of earlier versions: every attempt of a batch gets its row', async () => {
    const prefix = `m${randomBytes(3).toString('hex')}_`
    const first = newStore({ collectionPrefix: prefix })
    const metrics = await first.rawCollection('metrics')
    await metrics.createIndex({ task_id: 1, node_id: 1, batch_uid: 1 }, { unique: true, name: 'flowkit_metrics_key' })
    const second = newStore({ collectionPrefix: prefix })
    await second.init()
    assert.ok(!(await metrics.listIndexes().toArray()).some((ix) => ix['name'] === 'flowkit_metrics_key'))
    const row = { task_id: `t-${randomUUID()}`, node_id: 'n', batch_uid: 'b1', metrics: {} }
    await second.insertBatchMetrics([{ ...row, attempt_epoch: 1 }, { ...row, attempt_epoch: 2 }], T0)
    assert.equal(await metrics.countDocuments({ task_id: row.task_id }), 2)
    assert.deepEqual((await second.listBatchMetrics(row.task_id)).map((r) => r.attempt_epoch), [2])
  })

  it('a task read applies every journal entry after its snapshot, however many (FerretDB reads them by _id, in rounds)', async () => {
    const store = newStore()
    const task = makeTaskDoc({ status: 'running' })
    task.nodes['a'] = makeNodeState('a', 'step', { status: 'queued' })
    await store.createTask(task)
    await store.appendJournal(Array.from({ length: 3 }, (_, i) => entry(task.id, i + 1)))
    assert.ok(await store.writeSnapshot({ ...task, v: 3 }, T0))
    // 100 entries after the snapshot: the last one finishes node a with its stats.
    await store.appendJournal(
      Array.from({ length: 100 }, (_, i) => entry(task.id, i + 4, { nodes: [makeNodeState('a', 'step', { status: i === 99 ? 'finished' : 'running', stats: { n: i + 4 } })] })),
    )
    const doc = await store.getTask(task.id)
    assert.equal(doc?.nodes['a']?.status, 'finished')
    assert.deepEqual(doc?.nodes['a']?.stats, { n: 103 })
    assert.deepEqual((await store.readJournal([task.id], 90)).map((e) => e.seq), Array.from({ length: 13 }, (_, i) => i + 91))
    assert.deepEqual(await store.readJournal([task.id], 103), [])
    assert.equal((await store.readJournal([task.id, `${task.id}-none`], 1)).length, 102)
  })

  it('a task read again goes on from the state read before: new entries, a snapshot past it with its entries deleted, a changed copy, a purge', async () => {
    const writer = newStore()
    const reader = newStore()
    const task = makeTaskDoc({ status: 'running' })
    task.nodes['a'] = makeNodeState('a', 'step', { status: 'running' })
    task.nodes['z'] = makeNodeState('z', 'step', { status: 'running' })
    await writer.createTask(task)
    const step = (seq: number): JournalEntry => {
      const nodes = [makeNodeState('a', 'step', { status: 'running', stats: { n: seq } })]
      if (seq === 1) nodes.push(makeNodeState('z', 'step', { status: 'finished', stats: { n: 1 } }))
      return entry(task.id, seq, { nodes, batches: [['a', `b${seq}`, 1, { count: 1 }]] })
    }
    const fresh = async () => newStore().getTask(task.id)
    // 20 entries ahead of the snapshot: the reader keeps what it merged.
    await writer.appendJournal(Array.from({ length: 20 }, (_, i) => step(i + 1)))
    const first = await reader.getTask(task.id)
    assert.deepEqual(first?.nodes['a']?.stats, { n: 20 })
    // What a caller does to its copy stays in its copy.
    ;(first?.nodes['z']?.stats as Record<string, number>)['n'] = -1
    ;(first?.coordinator as { cancelled: boolean }).cancelled = true
    ;(first as { status: string }).status = 'failed'
    await writer.appendJournal(Array.from({ length: 5 }, (_, i) => step(i + 21)))
    const second = await reader.getTask(task.id)
    assert.equal(second?.status, 'running')
    assert.equal(second?.coordinator.cancelled, false)
    assert.deepEqual(second?.nodes['z']?.stats, { n: 1 })
    assert.deepEqual(second?.nodes['a']?.stats, { n: 25 })
    assert.deepEqual(second, await fresh())
    // A snapshot at 30, then retention deletes every entry it covers: the reader's state of 25 cannot go on.
    await writer.appendJournal(Array.from({ length: 5 }, (_, i) => step(i + 26)))
    const at30 = await fresh()
    assert.deepEqual(at30?.nodes['a']?.stats, { n: 30 })
    assert.ok(await writer.writeSnapshot({ ...(at30 as NonNullable<typeof at30>), v: 30 }, T0 + 30))
    await (await writer.rawCollection('journal')).deleteMany({ task_id: task.id })
    const third = await reader.getTask(task.id)
    assert.deepEqual(third?.nodes['a']?.stats, { n: 30 })
    assert.deepEqual(third, await fresh())
    // Purged: gone for the reader too.
    await (await writer.rawCollection('tasks')).deleteOne({ _id: task.id as never })
    assert.equal(await reader.getTask(task.id), null)
  })

  it('appendJournal: one insertMany; a conflict is answered from the stored writer, other entries stored', async () => {
    const store = newStore()
    const task = `t-${randomUUID()}`
    await store.appendJournal([entry(task, 2, { writer: 'other' })])
    const batch = Array.from({ length: 50 }, (_, i) => entry(i === 1 ? task : `${task}-${i}`, i === 1 ? 2 : 1))
    const started = performance.now()
    const res = await store.appendJournal(batch)
    const ms = performance.now() - started
    assert.deepEqual(res, batch.map((_, i) => i !== 1))
    assert.deepEqual(await store.appendJournal([batch[0]!, batch[1]!]), [true, false], 'a retry: true for ours, false for theirs')
    assert.equal((await store.readJournal([task]))[0]?.writer, 'other')
    // a fenced writer's whole batch conflicts (read back in one query)
    assert.deepEqual(await store.appendJournal(batch.map((e) => ({ ...e, writer: 'late' }))), batch.map(() => false))
    assert.deepEqual(await store.appendJournal(batch), batch.map((_, i) => i !== 1), 'and our retry is still ours')
    note(`appendJournal of 50 entries with one conflict: ${ms.toFixed(1)} ms`)
  })

  it('worker_state also carries the Python fields active_run (first run or null) and updated_at (a Date)', async () => {
    const store = newStore()
    const raw = await store.rawCollection('workerState')
    const id = `w-${randomUUID()}`
    const run = { task_id: 't1', node_id: 'extract', step_type: 'extractor', attempt_epoch: 2, lease_id: 'l1', started_at_ms: T0 }
    const state: WorkerStateDoc = { worker_id: id, active_runs: [run, { ...run, node_id: 'transform' }], updated_at_ms: T0 + 1 }
    await store.saveWorkerState(state)
    let doc = (await raw.findOne({ _id: id as never }))!
    assert.deepEqual(doc['active_run'], { ...run, cancel_token: null, state: 'running', checkpoint: {} }, 'the Python layout of an active run')
    assert.ok(doc['updated_at'] instanceof Date)
    assert.equal((doc['updated_at'] as Date).getTime(), T0 + 1)
    assert.equal(doc['active_runs'].length, 2)
    assert.deepEqual(await store.getWorkerState(id), state)

    await store.saveWorkerState({ worker_id: id, active_runs: [], updated_at_ms: T0 + 2 })
    doc = (await raw.findOne({ _id: id as never }))!
    assert.equal(doc['active_run'], null)
    assert.equal((doc['updated_at'] as Date).getTime(), T0 + 2)

    // a document in the Python layout only
    const py = `py-${randomUUID()}`
    await raw.insertOne({ _id: py as never, active_run: run, updated_at: new Date(T0 + 3) })
    assert.deepEqual(await store.getWorkerState(py), { worker_id: py, active_runs: [run], updated_at_ms: T0 + 3 })
  })

  it('a task document written by a Python coordinator is not ours: invisible to the engine, readable by workers', async () => {
    const store = newStore()
    await store.init()
    const raw = await store.rawCollection('tasks')
    const id = `py-task-${randomUUID()}`
    await raw.insertOne({ id, status: 'running', graph: { nodes: [{ node_id: 'n', type: 'echo', status: 'running', attempt_epoch: 1 }] }, coordinator: { cancelled: true } })
    assert.equal(await store.getTask(id), null)
    assert.equal((await store.listTasks()).some((t) => t.id === id), false)
    assert.equal(await store.writeSnapshot({ ...makeTaskDoc({ id }), v: 1 }, T0), false, 'never written by our coordinator')
    assert.deepEqual(await store.getRunView(id, 'n'), { cancelled: true, vars: {}, node: null })
  })

  it('stream claims per consumer attempt coexist with the unique index a Python worker creates', async () => {
    const store = newStore()
    await store.init()
    const raw = await store.rawCollection('streamProgress')
    await raw.createIndex({ task_id: 1, consumer_node: 1, from_node: 1, batch_uid: 1 }, { unique: true, name: 'uniq_stream_claim_batch' })
    const task = `t-${randomUUID()}`
    const claim = { task_id: task, consumer_node: 'c', from_node: 'up', batch_uid: 'b1' }
    assert.equal(await store.claimStreamBatch({ ...claim, consumer_epoch: 1 }, T0), true)
    assert.equal(await store.claimStreamBatch({ ...claim, consumer_epoch: 1 }, T0), false)
    assert.equal(await store.claimStreamBatch({ ...claim, consumer_epoch: 2 }, T0), true, 'a retried consumer reads its input again')
  })

  /** A store that reaches the server through a ToggleProxy; null when the URL is not a single host. */
  async function proxiedStore(
    t: TestContext,
    clientOptions: MongoStoreOptions['clientOptions'],
    extra: Partial<MongoStoreOptions> = {},
  ): Promise<{ store: MongoStore; proxy: ToggleProxy } | null> {
    const m = /^mongodb:\/\/(?:[^@/]*@)?([^/?,]+)(?=[/?]|$)/.exec(url!)
    if (!m?.[1]) {
      t.skip('FLOWKIT_MONGO_URL is not a single-host mongodb:// URL')
      return null
    }
    const hostPort = m[1]
    const colon = hostPort.lastIndexOf(':')
    const proxy = new ToggleProxy(colon < 0 ? hostPort : hostPort.slice(0, colon), colon < 0 ? 27017 : Number(hostPort.slice(colon + 1)))
    const proxyPort = await proxy.listen()
    t.after(() => proxy.shutdown())
    let proxied = url!.replace(hostPort, `127.0.0.1:${proxyPort}`)
    if (!/directConnection=/.test(proxied)) proxied += `${proxied.includes('?') ? '&' : proxied.endsWith('/') ? '?' : '/?'}directConnection=true`
    return { store: newStore({ url: proxied, clientOptions, ...extra }), proxy }
  }

  it('a server that stops answering gives STORE_TIMEOUT; lost connections give STORE_UNAVAILABLE (both retryable)', async (t) => {
    const setup = await proxiedStore(t, { serverSelectionTimeoutMS: 1000, socketTimeoutMS: 400, retryReads: false, retryWrites: false })
    if (!setup) return
    const { store, proxy } = setup
    const task = makeTaskDoc()
    await store.createTask(task)
    proxy.blackhole = true
    await assert.rejects(store.getTask(task.id), (err) => {
      assert.ok(isFlowkitError(err, ErrorCode.StoreTimeout), inspect(err))
      assert.equal(err.retryable, true)
      return true
    })
    proxy.blackhole = false
    await proxy.shutdown()
    await assert.rejects(store.getTask(task.id), (err) => {
      assert.ok(isFlowkitError(err, ErrorCode.StoreUnavailable), inspect(err))
      assert.equal(err.retryable, true)
      return true
    })
  })

  it('a call that never gets an answer fails with STORE_TIMEOUT after operationTimeoutMs, and the next call runs on a fresh client', async (t) => {
    const logger = new MemoryLogger()
    // No driver timeout at all: without the store's own deadline the call would wait forever.
    const setup = await proxiedStore(t, { serverMonitoringMode: 'poll', socketTimeoutMS: 0, retryReads: false }, { operationTimeoutMs: 1000, logger })
    if (!setup) return
    const { store, proxy } = setup
    const task = makeTaskDoc()
    await store.createTask(task)
    proxy.blackhole = true // its answer is dropped: the connection stays open and silent
    const started = performance.now()
    await assert.rejects(store.getTask(task.id), (err) => {
      assert.ok(isFlowkitError(err, ErrorCode.StoreTimeout), inspect(err))
      assert.equal(err.retryable, true)
      return true
    })
    assert.ok(performance.now() - started < 10_000, 'the deadline, not a driver timeout, ended the call')
    proxy.blackhole = false
    assert.equal((await store.getTask(task.id))?.id, task.id)
    assert.ok(logger.events().includes('store.mongo.client_replaced'), 'the wedged client was replaced')
  })

  it('when a client is replaced, the calls still running on it fail at once (STORE_UNAVAILABLE), not at their own deadline', async (t) => {
    const setup = await proxiedStore(t, { serverMonitoringMode: 'poll', socketTimeoutMS: 0, retryReads: false }, { operationTimeoutMs: 3000 })
    if (!setup) return
    const { store, proxy } = setup
    const task = makeTaskDoc()
    await store.createTask(task)
    proxy.blackhole = true
    const first = store.getTask(task.id)
    await new Promise((r) => setTimeout(r, 1500)) // the second call's deadline is 1.5 s after the first's
    const started = performance.now()
    const second = store.getTask(task.id)
    await assert.rejects(first, rejectsWith(ErrorCode.StoreTimeout)) // its deadline: the client is replaced
    await assert.rejects(second, (err) => {
      assert.ok(isFlowkitError(err, ErrorCode.StoreUnavailable), inspect(err))
      assert.equal(err.retryable, true)
      return true
    })
    const took = performance.now() - started
    assert.ok(took < 2500, `the second call failed with the replacement, before its own deadline (${Math.round(took)} ms)`)
    proxy.blackhole = false
    assert.equal((await answersAgain(store, task.id))?.id, task.id)
  })

  it('a call still waiting when the server drops connections gets 10 s, not operationTimeoutMs', async (t) => {
    const setup = await proxiedStore(
      t,
      { serverMonitoringMode: 'poll', heartbeatFrequencyMS: 500, socketTimeoutMS: 0, retryReads: false },
      { operationTimeoutMs: 60_000 },
    )
    if (!setup) return
    const { store, proxy } = setup
    const task = makeTaskDoc()
    await store.createTask(task)
    proxy.blackhole = true
    const started = performance.now()
    const call = store.getTask(task.id) // its connection stays open and silent
    // The monitor's connection drops and it cannot connect again, so the pool is cleared (what a
    // server restart does; the call's connection, left open, stands for one the driver wedged on).
    proxy.refuse = true
    proxy.cutFirst()
    await assert.rejects(call, (err) => {
      assert.ok(isFlowkitError(err, ErrorCode.StoreTimeout), inspect(err))
      assert.equal(err.retryable, true)
      return true
    })
    const took = performance.now() - started
    assert.ok(took >= 9000 && took < 40_000, `the call ended after the short deadline, not operationTimeoutMs (${Math.round(took)} ms)`)
    proxy.refuse = false
    proxy.blackhole = false
    assert.equal((await answersAgain(store, task.id))?.id, task.id)
  })

  it('a client whose server monitor is wedged is replaced: the store recovers once the server answers again', async (t) => {
    const logger = new MemoryLogger()
    // The monitor's handshake may wait 10 minutes (connectTimeoutMS): a monitor that connects
    // while the server is silent stays "checking" that long, and server selection fails meanwhile
    // (what a driver race does for good after a server restart; see connection.ts).
    const setup = await proxiedStore(
      t,
      { serverMonitoringMode: 'poll', serverSelectionTimeoutMS: 1000, connectTimeoutMS: 600_000, heartbeatFrequencyMS: 500, retryReads: false, retryWrites: false },
      { operationTimeoutMs: 0, logger },
    )
    if (!setup) return
    const { store, proxy } = setup
    const task = makeTaskDoc()
    await store.createTask(task)
    proxy.blackhole = true
    proxy.cut() // every connection drops; the monitor reconnects into silence
    // Calls fail at once (lost connections), then by server selection (1 s each) once the monitor
    // is stuck in its handshake.
    let selectionFailed = false
    const stuckBy = performance.now() + 15_000
    while (!selectionFailed && performance.now() < stuckBy) {
      const t0 = performance.now()
      await assert.rejects(store.getTask(task.id), rejectsWith(ErrorCode.StoreUnavailable))
      selectionFailed = performance.now() - t0 >= 900
    }
    assert.ok(selectionFailed, 'a call failed its server selection')
    proxy.blackhole = false
    assert.equal((await answersAgain(store, task.id))?.id, task.id, 'the store answers again well before the monitor handshake times out')
    assert.ok(logger.events().includes('store.mongo.client_replaced'), 'the wedged client was replaced')
  })

  it('every connection cut while bulk writes are in flight: each write succeeds or fails retryable (STORE_UNAVAILABLE / STORE_TIMEOUT)', async (t) => {
    const setup = await proxiedStore(t, { serverSelectionTimeoutMS: 5000, maxPoolSize: 8 })
    if (!setup) return
    const { store, proxy } = setup
    await store.init()
    const outcomes: string[] = []
    for (let round = 0; round < 4; round++) {
      const task = `t-${randomUUID()}`
      // Six artifact writes (one insertMany each) held in flight, then every connection drops.
      proxy.blackhole = true
      const calls = Array.from({ length: 6 }, (_, i) =>
        store
          .upsertArtifacts(Array.from({ length: 20 }, (_, j) => ({ task_id: task, node_id: `n${i}`, batch_uid: `b${j}`, status: 'partial' as const, meta: { pad: 'x'.repeat(500) }, attempt_epoch: 1, worker_id: 'w' })), T0)
          .then(() => 'ok', (err: unknown) => (isFlowkitError(err) ? `${err.code}${err.retryable ? '' : ' (not retryable)'}: ${err.message}` : String(err))),
      )
      await new Promise((r) => setTimeout(r, 150))
      proxy.cut()
      proxy.blackhole = false
      outcomes.push(...(await Promise.all(calls)))
    }
    const bad = outcomes.filter((o) => o !== 'ok' && !/^STORE_(UNAVAILABLE|TIMEOUT):/.test(o))
    assert.deepEqual(bad, [], `every cut write is retryable (${outcomes.length - outcomes.filter((o) => o === 'ok').length} of ${outcomes.length} failed)`)
    assert.ok(outcomes.some((o) => o !== 'ok'), 'the cut reached writes in flight')
  })

  it('close() while calls are in flight: they reject with CLOSED', async (t) => {
    const setup = await proxiedStore(t, { serverSelectionTimeoutMS: 5000 })
    if (!setup) return
    const { store, proxy } = setup
    await store.init()
    proxy.blackhole = true
    const pending = [store.getTask('x'), store.listWorkers(), store.appendJournal([entry(`t-${randomUUID()}`, 1)])]
    await store.close()
    for (const p of pending) await assert.rejects(p, rejectsWith(ErrorCode.Closed))
  })
})
