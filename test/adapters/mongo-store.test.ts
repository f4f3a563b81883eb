/**
 * MongoStore specifics beyond the port contract (that lives in test/conformance/store.suite.ts), on
 * the server of FLOWKIT_MONGO_URL: the stored layout (plain fields Python workers read, user JSON
 * kept safe for FerretDB), indexes, task reads through the journal, and documents written by Python
 * workers. Without a server: mongo-store-offline.test.ts; hung and cut connections:
 * mongo-store-faults.test.ts.
 */
import assert from 'node:assert/strict'
import { randomBytes, randomUUID } from 'node:crypto'
import { describe, it } from 'node:test'
import { MONGO_COLLECTIONS, type MongoStore } from '../../src/adapters/mongo/index.ts'
import { ErrorCode, isFlowkitError } from '../../src/errors.ts'
import type { WorkerStateDoc } from '../../src/ports/store.ts'
import { journalKey } from '../../src/ports/store-rules.ts'
import { makeTaskDoc } from '../helpers/fixtures.ts'
import { T0, entry, useMongoTestDb } from '../helpers/mongo-store.ts'
import { mongoUrl, realSkip } from '../helpers/real.ts'

const skip = realSkip('mongo')
const url = mongoUrl()

describe('MongoStore on a real server', { skip }, () => {
  const db = useMongoTestDb(url!)
  const newStore = db.newStore

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
    if (!db.ferretdb) {
      // MongoDB's unique index sees the Python document (missing batch_uid = null): it is taken over
      assert.equal(taken?.created_at, T0 + 5)
      assert.equal(await raw.countDocuments({ task_id: task, node_id: 'py', status: 'complete' }), 1)
      // still without batch_uid: the seed finds a complete artifact by the field's absence
      assert.equal(await raw.countDocuments({ task_id: task, node_id: 'py', batch_uid: { $exists: false } }), 1)
    }
    if (!db.ferretdb) {
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
})
