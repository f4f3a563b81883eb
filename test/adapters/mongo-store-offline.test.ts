/**
 * MongoStore without a server: error mapping and credential hygiene, checks made before any query,
 * closing before init, options. (Its behaviour on a real server: mongo-store.test.ts; under a hung or
 * cut connection: mongo-store-faults.test.ts.)
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { inspect } from 'node:util'
import { MongoBulkWriteError, MongoNetworkError } from 'mongodb'
import { MongoStore } from '../../src/adapters/mongo/index.ts'
import { mapMongoError } from '../../src/adapters/mongo/errors.ts'
import type { MongoStoreOptions } from '../../src/adapters/mongo/index.ts'
import { ErrorCode, isFlowkitError } from '../../src/errors.ts'
import { MemoryLogger } from '../../src/log.ts'
import { makeNodeState, makeTaskDoc } from '../helpers/fixtures.ts'
import { T0, entry, rejectsWith } from '../helpers/mongo-store.ts'

/** Nothing listens on port 1 of the loopback interface: connections are refused at once. */
const CLOSED_PORT_URL = 'mongodb://flowuser:s3cr3t-pw@127.0.0.1:1/'

function unreachableStore(t: TestContext, extra: Partial<MongoStoreOptions> = {}): MongoStore {
  const store = new MongoStore({ url: CLOSED_PORT_URL, clientOptions: { serverSelectionTimeoutMS: 10_000 }, ...extra })
  t.after(() => store.close())
  return store
}

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
