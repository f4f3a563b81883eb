/**
 * MongoStore under faults of its connection, on the server of FLOWKIT_MONGO_URL reached through a
 * TCP proxy (test/helpers/mongo-store.ts ToggleProxy): a server that stops answering, connections
 * cut under reads and bulk writes, a wedged monitor, close() with calls in flight. Each failure is
 * a retryable STORE_TIMEOUT / STORE_UNAVAILABLE (or CLOSED), and the store recovers.
 */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { inspect } from 'node:util'
import type { MongoStore, MongoStoreOptions } from '../../src/adapters/mongo/index.ts'
import { ErrorCode, isFlowkitError } from '../../src/errors.ts'
import { MemoryLogger } from '../../src/log.ts'
import { makeTaskDoc } from '../helpers/fixtures.ts'
import { T0, ToggleProxy, answersAgain, entry, rejectsWith, useMongoTestDb } from '../helpers/mongo-store.ts'
import { mongoUrl, realSkip } from '../helpers/real.ts'

const skip = realSkip('mongo')
const url = mongoUrl()

describe('MongoStore on a real server whose connections fail', { skip }, () => {
  const { newStore } = useMongoTestDb(url!)

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

