/**
 * Store conformance suite: the semantics every Store adapter (memory, MongoDB, FerretDB) must
 * have, exercised through the Store port only.
 *
 * Usage (in a `*.test.ts` file):
 *   runStoreConformance('memory', async () => ({ store: new MemoryStore() }))
 *
 * The factory is called once per test; the suite calls `store.init()` first and `store.close()`
 * at the end (close must be idempotent), then `cleanup()`. Tests use random task ids, keys and
 * topics, so they can share one real database with each other and with leftovers of earlier
 * runs. Outbox claim tests first "drain" due rows left by other tests (they are claimed until a
 * far future time), so they assume nobody else dispatches from the same outbox concurrently.
 *
 * Concurrency cases that rest on unique-index inserts (journal entries, claims, outbox rows, task
 * ids) run on every backend. Compare-and-set races (two updates of one document) run only with
 * `atomicConcurrency` (default true): turn it off for a backend whose single-document updates are
 * not isolated (FerretDB 1.x).
 */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { describe, it } from 'node:test'
import { ErrorCode, isFlowkitError } from '../../src/errors.ts'
import type { ErrorCode as ErrorCodeT } from '../../src/errors.ts'
import { applyJournal } from '../../src/model/journal.ts'
import type {
  ArtifactDoc,
  ArtifactWrite,
  JournalEntry,
  OutboxRow,
  OutboxStatus,
  Store,
  StreamClaim,
  TaskChanges,
  TaskDoc,
  TaskStatus,
  VersionedTask,
  WorkerInfo,
  WorkerStateDoc,
} from '../../src/ports/store.ts'
import { outboxId } from '../../src/util/ids.ts'
import { makeNodeState, makeTaskDoc } from '../helpers/fixtures.ts'

export type StoreFactory = () => Promise<{ store: Store; cleanup?: () => Promise<void> }>

export interface StoreConformanceOptions {
  /** Run the compare-and-set race cases (default true). */
  atomicConcurrency?: boolean
}

/** Concurrent callers in the race cases. */
const N = 16
/** Outbox rows left by other tests are claimed until this time, out of every test's way. */
const FAR = 8_000_000_000_000_000
const T0 = 1_700_000_000_000

function uid(prefix: string): string {
  return `${prefix}-${randomUUID()}`
}

/** Code point order (= MongoDB's binary order of UTF-8 strings). */
function cmpStr(a: string, b: string): number {
  const ca = [...a].map((c) => c.codePointAt(0)!)
  const cb = [...b].map((c) => c.codePointAt(0)!)
  for (let i = 0; i < Math.min(ca.length, cb.length); i++) {
    if (ca[i] !== cb[i]) return ca[i]! - cb[i]!
  }
  return ca.length - cb.length
}

function rejectsWith(code: ErrorCodeT): (err: unknown) => boolean {
  return (err) => {
    assert.ok(isFlowkitError(err, code), `expected FlowkitError ${code}, got ${String(err)}`)
    return true
  }
}

async function drainOutbox(store: Store): Promise<void> {
  for (;;) {
    const rows = await store.outboxClaimDue(FAR - 1, 1000, FAR)
    if (rows.length === 0) return
  }
}

async function outboxRow(store: Store, id: string): Promise<OutboxRow | undefined> {
  return (await store.outboxList()).find((r) => r.id === id)
}

function artifact(overrides: Partial<ArtifactWrite> & Pick<ArtifactWrite, 'task_id'>): ArtifactWrite {
  return {
    node_id: 'extract',
    batch_uid: 'b1',
    status: 'partial',
    meta: { rows: 10 },
    attempt_epoch: 1,
    worker_id: 'w1',
    ...overrides,
  }
}

/** A journal entry of `taskId` at `seq` (written by `c1` at T0 + seq unless overridden). */
function entry(taskId: string, seq: number, overrides: Partial<JournalEntry> = {}): JournalEntry {
  return { task_id: taskId, seq, at_ms: T0 + seq, writer: 'c1', events: [`e${seq}`], nodes: [], ...overrides }
}

function withoutV(t: VersionedTask): TaskDoc {
  const { v: _v, ...rest } = t
  return rest
}

function workerInfo(workerId: string, overrides: Partial<WorkerInfo> = {}): WorkerInfo {
  return {
    worker_id: workerId,
    roles: ['extractor', 'processor'],
    capacity: 2,
    version: '0.1.0',
    status: 'online',
    last_seen_ms: T0,
    ...overrides,
  }
}

export function runStoreConformance(name: string, factory: StoreFactory, options: StoreConformanceOptions = {}): void {
  const atomicConcurrency = options.atomicConcurrency ?? true

  async function withStore(fn: (store: Store) => Promise<void>): Promise<void> {
    const { store, cleanup } = await factory()
    try {
      await store.init()
      await fn(store)
    } finally {
      try {
        await store.close()
      } finally {
        await cleanup?.()
      }
    }
  }

  /** Creates a fixture task and returns it (as the caller built it). */
  async function seed(store: Store, overrides: Partial<TaskDoc> = {}): Promise<TaskDoc> {
    const task = makeTaskDoc(overrides)
    await store.createTask(task)
    return task
  }

  describe(`Store conformance: ${name}`, () => {
    // ------------------------------------------------------------------ lifecycle
    describe('lifecycle', () => {
      it('init is idempotent', () =>
        withStore(async (store) => {
          await store.init()
          await store.init()
          const t = await seed(store)
          assert.deepEqual(await store.getTask(t.id), t)
        }))

      it('after close every verb rejects with CLOSED; close is idempotent', async () => {
        const { store, cleanup } = await factory()
        try {
          await store.init()
          const t = await seed(store)
          await store.close()
          await store.close()
          const closed = rejectsWith(ErrorCode.Closed)
          const claim: StreamClaim = { task_id: t.id, consumer_node: 'transform', from_node: 'extract', batch_uid: 'b', consumer_epoch: 1 }
          const calls: Array<[string, () => Promise<unknown>]> = [
            ['init', () => store.init()],
            ['createTask', () => store.createTask(makeTaskDoc())],
            ['getTask', () => store.getTask(t.id)],
            ['listTasks', () => store.listTasks()],
            ['getRunView', () => store.getRunView(t.id, 'extract')],
            ['appendJournal', () => store.appendJournal([entry(t.id, 1)])],
            ['readJournal', () => store.readJournal([t.id])],
            ['writeSnapshot', () => store.writeSnapshot({ ...t, v: 1 }, T0)],
            [
              'insertBatchMetrics',
              () => store.insertBatchMetrics([{ task_id: t.id, node_id: 'extract', batch_uid: 'b', attempt_epoch: 1, metrics: {} }], T0),
            ],
            ['listBatchMetrics', () => store.listBatchMetrics(t.id)],
            ['purgeBefore', () => store.purgeBefore(1)],
            ['purgeTasks', () => store.purgeTasks(1, 10)],
            ['upsertArtifact', () => store.upsertArtifact(artifact({ task_id: t.id }), T0)],
            ['listArtifacts', () => store.listArtifacts(t.id)],
            ['getArtifact', () => store.getArtifact(t.id, 'extract', null)],
            ['claimStreamBatch', () => store.claimStreamBatch(claim, T0)],
            ['outboxEnqueue', () => store.outboxEnqueue({ topic: 't', key: null, value: 'v', dedup_id: 'd' }, T0)],
            ['outboxClaimDue', () => store.outboxClaimDue(T0, 10, T0 + 1)],
            ['outboxMarkSent', () => store.outboxMarkSent('x', T0)],
            ['outboxMarkRetry', () => store.outboxMarkRetry('x', 1, T0, 'e', T0)],
            ['outboxMarkFailed', () => store.outboxMarkFailed('x', 1, 'e', T0)],
            ['outboxList', () => store.outboxList()],
            ['outboxCount', () => store.outboxCount('failed')],
            ['outboxRequeue', () => store.outboxRequeue('x', T0)],
            ['upsertWorker', () => store.upsertWorker(workerInfo('w'))],
            ['listWorkers', () => store.listWorkers()],
            ['saveWorkerState', () => store.saveWorkerState({ worker_id: 'w', active_runs: [], updated_at_ms: T0 })],
            ['getWorkerState', () => store.getWorkerState('w')],
          ]
          for (const [verb, call] of calls) {
            await assert.rejects(call(), closed, `${verb} after close`)
          }
        } finally {
          await store.close()
          await cleanup?.()
        }
      })
    })

    // ------------------------------------------------------------------ keys from callers
    describe('keys from callers', () => {
      it('a read given an object (an operator such as { $ne: null }) or a number as a key rejects with INVALID_KEY, naming the key', () =>
        withStore(async (store) => {
          const t = await seed(store)
          const op = { $ne: null } as unknown as string
          const invalid = (field: string) => (err: unknown) => isFlowkitError(err, ErrorCode.InvalidKey) && (err as Error).message.includes(field)
          const calls: Array<[string, string, () => Promise<unknown>]> = [
            ['getTask', 'taskId', () => store.getTask(op)],
            ['getRunView', 'taskId', () => store.getRunView(op, 'extract')],
            ['listTasks', 'statuses', () => store.listTasks({ statuses: [op as TaskStatus] })],
            ['listTaskIds', 'statuses', () => store.listTaskIds(op as unknown as TaskStatus[])],
            ['listTaskStatuses', 'statuses', () => store.listTaskStatuses([7 as unknown as TaskStatus])],
            ['readJournal', 'taskIds', () => store.readJournal([t.id, op])],
            ['listBatchMetrics', 'taskId', () => store.listBatchMetrics(op)],
            ['listBatchMetrics', 'nodeId', () => store.listBatchMetrics(t.id, op)],
            ['listArtifacts', 'taskId', () => store.listArtifacts(op)],
            ['listArtifacts', 'nodeId', () => store.listArtifacts(t.id, { nodeId: op })],
            ['listArtifacts', 'status', () => store.listArtifacts(t.id, { status: op as ArtifactDoc['status'] })],
            ['getArtifact', 'nodeId', () => store.getArtifact(t.id, op, null)],
            ['getArtifact', 'batchUid', () => store.getArtifact(t.id, 'extract', op)],
            ['getCheckpoint', 'taskId', () => store.getCheckpoint(op, 'extract')],
            ['outboxList', 'id', () => store.outboxList({ id: op })],
            ['outboxCount', 'status', () => store.outboxCount(op as OutboxStatus)],
            ['outboxRequeue', 'id', () => store.outboxRequeue(op, T0)],
            ['getWorkerState', 'workerId', () => store.getWorkerState(op)],
          ]
          for (const [verb, field, call] of calls) await assert.rejects(call(), invalid(field), `${verb} with an object as ${field}`)
          // Strings (and an absent optional key) still read.
          assert.equal((await store.getTask(t.id))?.id, t.id)
          assert.deepEqual(await store.listArtifacts(t.id, { nodeId: 'extract' }), [])
        }))
    })

    // ------------------------------------------------------------------ tasks
    describe('tasks', () => {
      it('createTask then getTask round-trips the document exactly', () =>
        withStore(async (store) => {
          const t = makeTaskDoc({
            params: {
              s: 'héllo ✓ 😀',
              n: 42,
              f: 1.25,
              big: 2 ** 40,
              neg: -7,
              b: false,
              nil: null,
              arr: [1, 'two', { three: 3 }, null],
              nested: { a: { b: { c: [true] } } },
              empty: {},
              emptyArr: [],
            },
            coordinator: { vars: { counter: 3, cfg: { mode: 'fast' } }, cancelled: false, cancel_reason: null },
            result: { ok: true },
            created_by: 'c-4b0e2a',
          })
          t.nodes['extract'] = makeNodeState('extract', 'extractor', {
            status: 'running',
            attempt_epoch: 2,
            lease: { worker_id: 'w1', lease_id: 'l1', deadline_ts_ms: T0 + 5000 },
            stats: { rows: 10, bytes: 2048.5 },
            last_error: { reason_code: 'boom', error: 'it broke', permanent: false, at_ms: T0, attempt_epoch: 1 },
            failures: 1,
            next_retry_at_ms: T0 + 1,
            dispatched_at_ms: T0 + 2,
            accepted_at_ms: T0 + 3,
            last_event_at_ms: T0 + 4,
            has_output: true,
          })
          await store.createTask(t)
          assert.deepEqual(await store.getTask(t.id), t)
        }))

      it('user JSON in params and result round-trips (nested arrays, keys with "." or a leading "$")', () =>
        withStore(async (store) => {
          const t = makeTaskDoc({
            params: { matrix: [[1, 2], [3, [4, 5]]], 'a.b': 1, $ref: '#/x', deep: { 'x.y': { $z: [[]] } } },
            result: [[{ 'k.v': 1 }]],
          })
          await store.createTask(t)
          assert.deepEqual(await store.getTask(t.id), t)
        }))

      it('undefined is stored like BSON with ignoreUndefined: object fields dropped, array elements null', () =>
        withStore(async (store) => {
          const t = makeTaskDoc({ params: { gone: undefined, keep: 1, arr: [1, undefined, 3], deep: { x: undefined } } })
          await store.createTask(t)
          assert.deepEqual((await store.getTask(t.id))?.params, { keep: 1, arr: [1, null, 3], deep: {} })
          const node = makeNodeState('extract', 'extractor', { stats: { a: undefined, b: [undefined] } })
          await store.appendJournal([entry(t.id, 1, { nodes: [node] })])
          assert.deepEqual((await store.getTask(t.id))?.nodes['extract']?.stats, { b: [null] })
          const meta = { a: undefined, b: 1 }
          await store.upsertArtifact(artifact({ task_id: t.id, meta }), T0)
          assert.deepEqual((await store.getArtifact(t.id, 'extract', 'b1'))?.meta, { b: 1 })
        }))

      // FerretDB refuses NaN (it drops the connection) and ±Infinity, and BSON int32 has no -0:
      // user JSON is stored as JSON would carry it, on every backend.
      it('numbers JSON cannot represent are stored like JSON: NaN and ±Infinity as null, -0 as 0', () =>
        withStore(async (store) => {
          const odd = () => ({ nan: Number.NaN, inf: Number.POSITIVE_INFINITY, ninf: Number.NEGATIVE_INFINITY, negz: -0, arr: [Number.NaN, -0, 1.5] })
          const asJson = { nan: null, inf: null, ninf: null, negz: 0, arr: [null, 0, 1.5] }
          const t = makeTaskDoc({ params: odd(), result: odd() })
          await store.createTask(t)
          const got = await store.getTask(t.id)
          assert.deepEqual(got?.params, asJson)
          assert.deepEqual(got?.result, asJson)
          await store.appendJournal([entry(t.id, 1, { nodes: [makeNodeState('extract', 'extractor', { stats: odd() })], task: { vars: odd() }, at_ms: T0 })])
          const merged = await store.getTask(t.id)
          assert.deepEqual(merged?.nodes['extract']?.stats, asJson)
          assert.deepEqual(merged?.coordinator.vars, asJson)
          await store.upsertArtifact(artifact({ task_id: t.id, meta: odd() }), T0)
          assert.deepEqual((await store.getArtifact(t.id, 'extract', 'b1'))?.meta, asJson)
          await store.insertBatchMetrics([{ task_id: t.id, node_id: 'extract', batch_uid: 'b1', attempt_epoch: 1, metrics: odd() }], T0)
          assert.deepEqual((await store.listBatchMetrics(t.id))[0]?.metrics, asJson)
          await store.writeSnapshot({ ...merged!, result: odd(), v: 1 }, T0 + 1)
          const snap = await store.getTask(t.id)
          assert.deepEqual(snap, { ...merged!, result: asJson, updated_at_ms: T0 + 1 })
        }))

      it('getTask of an unknown id is null', () =>
        withStore(async (store) => {
          assert.equal(await store.getTask(uid('missing')), null)
        }))

      it('createTask with an existing id rejects with STORE_DUPLICATE_KEY and keeps the original', () =>
        withStore(async (store) => {
          const t = await seed(store, { params: { v: 1 } })
          await assert.rejects(store.createTask({ ...makeTaskDoc({ params: { v: 2 } }), id: t.id }), rejectsWith(ErrorCode.DuplicateKey))
          assert.deepEqual(await store.getTask(t.id), t)
        }))

      it('createTask rejects node ids that are not valid document keys with INVALID_KEY', () =>
        withStore(async (store) => {
          for (const bad of ['a.b', '$x', 'a b', 'é', 'x'.repeat(129)]) {
            const t = makeTaskDoc()
            t.nodes[bad] = makeNodeState(bad, 'extractor')
            await assert.rejects(store.createTask(t), rejectsWith(ErrorCode.InvalidKey), bad)
            assert.equal(await store.getTask(t.id), null, `nothing stored for ${bad}`)
          }
        }))

      it('listArtifacts with createdAfter returns only artifacts created at or after that time', () =>
        withStore(async (store) => {
          const task = `t-${randomUUID()}`
          const w = (uid: string) => ({ task_id: task, node_id: 'n', batch_uid: uid, status: 'partial' as const, meta: { uid }, attempt_epoch: 1, worker_id: 'w' })
          await store.upsertArtifact(w('a'), 1000)
          await store.upsertArtifact(w('b'), 2000)
          await store.upsertArtifact(w('c'), 3000)
          assert.deepEqual((await store.listArtifacts(task, { nodeId: 'n', createdAfter: 2000 })).map((a) => a.batch_uid), ['b', 'c'])
          assert.deepEqual((await store.listArtifacts(task, { createdAfter: 3001 })).map((a) => a.batch_uid), [])
          assert.equal((await store.listArtifacts(task, { nodeId: 'n' })).length, 3)
        }))

      it('purgeBefore deletes old journal entries and old sent outbox rows only', () =>
        withStore(async (store) => {
          const k = uid('purge')
          // far in the past, so rows of concurrent tests (written at realistic times) are untouched
          await store.appendJournal([entry(k, 1, { at_ms: 1_000 }), entry(`${k}-b`, 1, { at_ms: 1_000 })])
          await store.appendJournal([entry(k, 2, { at_ms: 9_000 })])
          await store.outboxEnqueue({ topic: 't', key: k, value: 'v', dedup_id: `${k}-sent` }, 1_000)
          await store.outboxEnqueue({ topic: 't', key: k, value: 'v', dedup_id: `${k}-pending` }, 1_000)
          await store.outboxEnqueue({ topic: 't', key: k, value: 'v', dedup_id: `${k}-failed` }, 1_000, { attempts: 3, error: 'x' })
          const sentId = outboxId('t', k, `${k}-sent`)
          await store.outboxMarkSent(sentId, 2_000)
          const res = await store.purgeBefore(5_000)
          assert.ok(res.journal >= 2 && res.outbox >= 1, JSON.stringify(res))
          assert.deepEqual((await store.readJournal([k, `${k}-b`])).map((e) => e.seq), [2])
          const left = (await store.outboxList({ limit: 100_000 })).filter((r) => r.key === k).map((r) => r.dedup_id).sort()
          assert.deepEqual(left, [`${k}-failed`, `${k}-pending`], 'pending and dead-lettered rows are kept')
        }))

      it('purgeBefore deletes the workers last heard before the cutoff, with their run state; later ones stay', () =>
        withStore(async (store) => {
          const k = uid('purge-w')
          // Heard long ago (before any other test's workers, all at realistic times), and recently.
          await store.upsertWorker(workerInfo(`${k}-gone`, { status: 'offline', last_seen_ms: 1_000 }))
          await store.upsertWorker(workerInfo(`${k}-silent`, { status: 'online', last_seen_ms: 2_000 }))
          await store.upsertWorker(workerInfo(`${k}-live`, { last_seen_ms: 9_000 }))
          for (const id of ['gone', 'silent', 'live']) await store.saveWorkerState({ worker_id: `${k}-${id}`, active_runs: [], updated_at_ms: 1_000 })
          const res = await store.purgeBefore(5_000)
          assert.ok(res.workers >= 2, JSON.stringify(res))
          const left = (await store.listWorkers()).filter((w) => w.worker_id.startsWith(k)).map((w) => w.worker_id)
          assert.deepEqual(left, [`${k}-live`])
          assert.equal(await store.getWorkerState(`${k}-gone`), null)
          assert.equal(await store.getWorkerState(`${k}-silent`), null)
          assert.equal((await store.getWorkerState(`${k}-live`))?.worker_id, `${k}-live`, 'a worker heard after the cutoff keeps its run state')
        }))

      it('purgeTasks deletes ended tasks before the cutoff with everything stored for them, oldest first, up to the limit', () =>
        withStore(async (store) => {
          const k = uid('purge-task')
          // Ended far in the past (1–3 ms after the epoch), so no other test's task qualifies.
          const tasks: Array<[string, TaskStatus, number | null]> = [
            ['old-b', 'failed', 2],
            ['old-a', 'finished', 1],
            ['old-c', 'cancelled', 3],
            ['recent', 'finished', 9_000],
            ['active', 'running', null],
            ['no-end', 'finished', null],
          ]
          const ids = new Map(tasks.map(([name]) => [name, `${k}-${name}`]))
          const id = (name: string): string => ids.get(name) as string
          for (const [name, status, finished] of tasks) {
            await store.createTask(makeTaskDoc({ id: id(name), status, finished_at_ms: finished }))
            await store.appendJournal([entry(id(name), 1)])
            await store.upsertArtifacts([artifact({ task_id: id(name) }), artifact({ task_id: id(name), batch_uid: null, status: 'complete' })], T0)
            await store.insertBatchMetrics([{ task_id: id(name), node_id: 'extract', batch_uid: 'b1', attempt_epoch: 1, metrics: { rows: 1 } }], T0)
            await store.claimStreamBatch({ task_id: id(name), consumer_node: 'transform', from_node: 'extract', batch_uid: 'b1', consumer_epoch: 1 }, T0)
            await store.claimAttempt({ task_id: id(name), node_id: 'extract', attempt_epoch: 1, worker_id: 'w1' }, T0)
            await store.saveCheckpoint({ task_id: id(name), node_id: 'extract', attempt_epoch: 1, state: { at: 5 } }, T0)
            // a dead letter of the task (a command parked after its last send failed)
            await store.outboxEnqueue({ topic: 'flowkit.cmd.a', key: `${id(name)}:extract`, value: '{}', dedup_id: `${id(name)}-start`, task_id: id(name) }, T0, { attempts: 3, error: 'down' })
          }
          const deadLetters = async (t: string): Promise<number> => (await store.outboxList({ status: 'failed' })).filter((r) => r.task_id === t).length
          const gone = async (name: string): Promise<boolean> => {
            const t = id(name)
            const left = [
              await store.getTask(t),
              ...(await store.readJournal([t])),
              ...(await store.listArtifacts(t)),
              ...(await store.listBatchMetrics(t)),
              await store.getCheckpoint(t, 'extract'),
              ...(await deadLetters(t) > 0 ? ['dead letter'] : []),
            ].filter((x) => x !== null)
            // A claim of a purged task can be made again; one still held is refused (false).
            const claimable = await store.claimStreamBatch({ task_id: t, consumer_node: 'transform', from_node: 'extract', batch_uid: 'b1', consumer_epoch: 1 }, T0)
            const attempt = await store.claimAttempt({ task_id: t, node_id: 'extract', attempt_epoch: 1, worker_id: 'w2' }, T0)
            assert.equal(left.length === 0, claimable && attempt, `${name}: rows and claims disagree`)
            return left.length === 0
          }
          assert.deepEqual(await store.purgeTasks(5_000, 0), [])
          assert.deepEqual(await store.purgeTasks(5_000, 2), [id('old-a'), id('old-b')])
          assert.ok(await gone('old-a'))
          assert.ok(await gone('old-b'))
          assert.ok(!(await gone('old-c')), 'beyond the limit: kept for the next purge')
          assert.deepEqual(await store.purgeTasks(5_000, 100), [id('old-c')])
          assert.ok(await gone('old-c'))
          for (const kept of ['recent', 'active', 'no-end']) assert.ok(!(await gone(kept)), `${kept} is kept`)
          assert.deepEqual(await store.purgeTasks(5_000, 100), [])
        }))

      it('getRunView returns the cancel flag, the variables and one node (null for an unknown task or node)', () =>
        withStore(async (store) => {
          const t = makeTaskDoc()
          t.coordinator.vars = { routing: { sla: 'gold' }, list: [1, [2, 3]] }
          await store.createTask(t)
          const v = await store.getRunView(t.id, 'transform')
          assert.deepEqual(v, { cancelled: false, vars: t.coordinator.vars, node: t.nodes['transform'] })
          assert.deepEqual(await store.getRunView(t.id, 'nope'), { cancelled: false, vars: t.coordinator.vars, node: null })
          assert.equal(await store.getRunView(`${t.id}-missing`, 'transform'), null)
          await store.writeSnapshot({ ...t, coordinator: { ...t.coordinator, cancelled: true }, v: 1 }, 5)
          assert.equal((await store.getRunView(t.id, 'transform'))?.cancelled, true)
          await assert.rejects(store.getRunView(t.id, 'a.b'), { code: 'INVALID_KEY' })
        }))

      it('documents are copied in and out (no shared references)', () =>
        withStore(async (store) => {
          const t = makeTaskDoc({ params: { list: [1, 2], obj: { k: 'v' } } })
          const original = structuredClone(t)
          await store.createTask(t)
          // mutate the caller's input after the write
          ;(t.params['list'] as number[]).push(3)
          t.nodes['extract']!.status = 'failed'
          t.coordinator.vars['x'] = 1
          assert.deepEqual(await store.getTask(t.id), original)
          // mutate what a read returned
          const got = (await store.getTask(t.id))!
          ;(got.params['obj'] as Record<string, unknown>)['k'] = 'changed'
          got.nodes['transform']!.lease.worker_id = 'w9'
          try {
            got.graph.nodes.pop()
          } catch {
            // a store may hand out the immutable graph frozen: then mutating it throws
          }
          assert.deepEqual(await store.getTask(t.id), original)
          // and what listTasks returned
          const listed = (await store.listTasks()).find((x) => x.id === t.id)!
          listed.status = 'failed'
          listed.nodes['extract']!.stats['rows'] = 1
          assert.deepEqual(await store.getTask(t.id), original)
        }))

      it('listTasks filters by status and returns oldest first (created_at_ms, then id by code point)', () =>
        withStore(async (store) => {
          const p = uid('lt')
          // ids chosen so that code point order differs from UTF-16 order for the last pair
          const a = await seed(store, { id: `${p}-b`, created_at_ms: 1000, status: 'running' })
          const b = await seed(store, { id: `${p}-a`, created_at_ms: 1000, status: 'running' })
          const c = await seed(store, { id: `${p}-c`, created_at_ms: 999, status: 'cancelling' })
          const d = await seed(store, { id: `${p}-\u{1F600}`, created_at_ms: 2000, status: 'running' })
          const e = await seed(store, { id: `${p}-\uFFFD`, created_at_ms: 2000, status: 'running' })
          const q = await seed(store, { id: `${p}-q`, created_at_ms: 500, status: 'queued' })

          const mine = (rows: TaskDoc[]) => rows.filter((r) => r.id.startsWith(p)).map((r) => r.id)
          const sorted = (rows: TaskDoc[]) =>
            rows.every((r, i) => i === 0 || rows[i - 1]!.created_at_ms < r.created_at_ms || (rows[i - 1]!.created_at_ms === r.created_at_ms && cmpStr(rows[i - 1]!.id, r.id) < 0))

          const active = await store.listTasks({ statuses: ['running', 'cancelling'] })
          assert.ok(active.every((r) => r.status === 'running' || r.status === 'cancelling'))
          assert.ok(sorted(active), 'sorted by created_at_ms then id')
          assert.deepEqual(mine(active), [c.id, b.id, a.id, e.id, d.id])

          const all = await store.listTasks()
          assert.ok(sorted(all))
          assert.deepEqual(mine(all), [q.id, c.id, b.id, a.id, e.id, d.id])

          const running = await store.listTasks({ statuses: ['running'] })
          assert.deepEqual(mine(running), [b.id, a.id, e.id, d.id])
        }))

      it('listTasks limit returns the oldest rows; an empty statuses list or limit 0 returns nothing', () =>
        withStore(async (store) => {
          const p = uid('lim')
          for (let i = 0; i < 3; i++) await seed(store, { id: `${p}-${i}`, created_at_ms: 10 + i, status: 'cancelling' })
          const full = await store.listTasks({ statuses: ['cancelling'] })
          assert.ok(full.length >= 3)
          assert.deepEqual(await store.listTasks({ statuses: ['cancelling'], limit: 2 }), full.slice(0, 2))
          assert.deepEqual(await store.listTasks({ statuses: ['cancelling'], limit: 1 }), full.slice(0, 1))
          assert.deepEqual(await store.listTasks({ statuses: [] }), [])
          assert.deepEqual(await store.listTasks({ statuses: ['cancelling'], limit: 0 }), [])
        }))
    })

    // ------------------------------------------------------------------ journal
    describe('journal', () => {
      it('createTask stores the snapshot at version 0; getTask applies the journal after it', () =>
        withStore(async (store) => {
          const t = await seed(store)
          assert.deepEqual(await store.readJournal([t.id]), [])
          const running = makeNodeState('extract', 'extractor', { status: 'running', attempt_epoch: 1, lease: { worker_id: 'w1', lease_id: 'l1' } })
          assert.deepEqual(await store.appendJournal([entry(t.id, 1, { nodes: [running], task: { status: 'running' } })]), [true])
          const expected: TaskDoc = { ...structuredClone(t), status: 'running', updated_at_ms: T0 + 1 }
          expected.nodes['extract'] = running
          assert.deepEqual(await store.getTask(t.id), expected)
          const done = makeNodeState('extract', 'extractor', { status: 'finished', attempt_epoch: 1, finished_at_ms: T0 + 2, stats: { rows: 3 } })
          const changes: TaskChanges = {
            status: 'cancelling',
            error: 'boom',
            result: { out: [[1, 2]] },
            finished_at_ms: T0 + 2,
            vars: { a: 1, 'x.y': { $z: [[]] } },
            cancelled: true,
            cancel_reason: 'user',
          }
          assert.deepEqual(await store.appendJournal([entry(t.id, 2, { nodes: [done], task: changes })]), [true])
          const got = await store.getTask(t.id)
          assert.deepEqual(got, {
            ...expected,
            status: 'cancelling',
            error: 'boom',
            result: { out: [[1, 2]] },
            finished_at_ms: T0 + 2,
            coordinator: { vars: { a: 1, 'x.y': { $z: [[]] } }, cancelled: true, cancel_reason: 'user' },
            nodes: { ...expected.nodes, extract: done },
            updated_at_ms: T0 + 2,
          })
          assert.deepEqual(got, withoutV(applyJournal({ ...t, v: 0 }, await store.readJournal([t.id]))))
          assert.deepEqual((await store.listTasks()).find((x) => x.id === t.id), got)
        }))

      it('an entry is stored once: the same seq by the same writer is true (a retry), by another writer false', () =>
        withStore(async (store) => {
          const t = await seed(store)
          const first = entry(t.id, 1, { writer: 'c1', events: ['first'] })
          assert.deepEqual(await store.appendJournal([first]), [true])
          assert.deepEqual(await store.appendJournal([{ ...first, events: ['retried'] }]), [true], 'our own retried write')
          assert.deepEqual(await store.appendJournal([entry(t.id, 1, { writer: 'c2', events: ['other'], task: { status: 'failed' } })]), [false])
          assert.deepEqual(await store.readJournal([t.id]), [first], 'the first entry is kept')
          assert.equal((await store.getTask(t.id))?.status, 'queued')
          assert.deepEqual(await store.appendJournal([entry(t.id, 2, { writer: 'c2' })]), [true], 'the next seq is free for anyone')
        }))

      it('several tasks in one call: a conflict on one leaves the others stored', () =>
        withStore(async (store) => {
          const [a, b, c] = [await seed(store), await seed(store), await seed(store)]
          await store.appendJournal([entry(b.id, 1, { writer: 'other' })])
          const batch = [entry(a.id, 1), entry(b.id, 1, { events: ['mine'] }), entry(c.id, 1), entry(a.id, 2)]
          assert.deepEqual(await store.appendJournal(batch), [true, false, true, true])
          assert.deepEqual(await store.readJournal([a.id, b.id, c.id]), [batch[0], batch[3], entry(b.id, 1, { writer: 'other' }), batch[2]])
          assert.deepEqual(await store.appendJournal([]), [])
        }))

      it('readJournal: by task (in the order asked), then seq; only entries after afterSeq', () =>
        withStore(async (store) => {
          const a = uid('ja')
          const b = uid('jb')
          await store.appendJournal([entry(a, 3), entry(b, 2)])
          await store.appendJournal([entry(a, 1), entry(b, 1)])
          await store.appendJournal([entry(a, 2)])
          const seqs = (rows: JournalEntry[]) => rows.map((e) => `${e.task_id === a ? 'a' : 'b'}${e.seq}`)
          assert.deepEqual(seqs(await store.readJournal([b, a])), ['b1', 'b2', 'a1', 'a2', 'a3'])
          assert.deepEqual(seqs(await store.readJournal([a, b], 1)), ['a2', 'a3', 'b2'])
          assert.deepEqual(seqs(await store.readJournal([a], 3)), [])
          assert.deepEqual(await store.readJournal([uid('none')]), [])
          assert.deepEqual(await store.readJournal([]), [])
        }))

      it('entries round-trip as JSON carries them: user JSON, commands, task changes; undefined dropped, NaN null', () =>
        withStore(async (store) => {
          const task = uid('jt')
          const node = makeNodeState('extract', 'extractor', { stats: { m: [[1, 2]], 'a.b': 1, $c: 'é 😀', gone: undefined, nan: Number.NaN, negz: -0 } })
          const e = entry(task, 1, {
            nodes: [node],
            task: { vars: { list: [1, undefined, 3] }, result: [[{ 'k.v': 1 }]] },
            commands: [{ topic: 'cmd.x.v1', key: null, dedup_id: 'd1', kind: 'TASK_START' }],
            events: ['BATCH_OK extract b1', 'line with \u0000 nul'],
          })
          await store.appendJournal([e])
          const [got] = await store.readJournal([task])
          assert.deepEqual(got, JSON.parse(JSON.stringify(e)))
          assert.deepEqual(got?.nodes[0]?.stats, { m: [[1, 2]], 'a.b': 1, $c: 'é 😀', nan: null, negz: 0 })
          assert.deepEqual(got?.task?.vars, { list: [1, null, 3] })
        }))

      it('entries are copied in and out', () =>
        withStore(async (store) => {
          const task = uid('jc')
          const e = entry(task, 1, { nodes: [makeNodeState('extract', 'extractor', { stats: { list: [1] } })] })
          const original = structuredClone(e)
          await store.appendJournal([e])
          ;(e.nodes[0]!.stats['list'] as number[]).push(2)
          e.events.push('mutated')
          const [got] = await store.readJournal([task])
          assert.deepEqual(got, original)
          got!.events.push('mutated')
          assert.deepEqual(await store.readJournal([task]), [original])
        }))

      it('appendJournal rejects invalid node ids with INVALID_KEY and stores none of the entries', () =>
        withStore(async (store) => {
          const task = uid('jk')
          for (const bad of ['a.b', '$set', '', 'x'.repeat(129), 'é', 'nodes.extract']) {
            const ok = entry(task, 1)
            const wrong = entry(uid('jk'), 1, { nodes: [makeNodeState(bad, 'extractor')] })
            await assert.rejects(store.appendJournal([ok, wrong]), rejectsWith(ErrorCode.InvalidKey), bad)
          }
          assert.deepEqual(await store.readJournal([task]), [])
        }))

      it('writeSnapshot rewrites the snapshot only at a newer version; getTask reads it plus later entries', () =>
        withStore(async (store) => {
          const t = await seed(store, { params: { p: 1 } })
          const running = makeNodeState('extract', 'extractor', { status: 'running', attempt_epoch: 1 })
          await store.appendJournal([entry(t.id, 1, { nodes: [running], task: { status: 'running' } })])
          await store.appendJournal([entry(t.id, 2, { task: { vars: { k: 'v' }, cancelled: true } })])
          const current = (await store.getTask(t.id))!
          // graph and params are immutable: a snapshot does not rewrite them
          const snap: VersionedTask = { ...structuredClone(current), params: { p: 'ignored' }, v: 2 }
          assert.equal(await store.writeSnapshot(snap, T0 + 50), true)
          const written = { ...current, updated_at_ms: T0 + 50 }
          assert.deepEqual(await store.getTask(t.id), written)
          // an older or equal version changes nothing
          for (const v of [2, 1, 0]) {
            assert.equal(await store.writeSnapshot({ ...structuredClone(current), status: 'failed', v }, T0 + 60), false, `v ${v}`)
          }
          assert.deepEqual(await store.getTask(t.id), written)
          // entries after the snapshot's version are applied on top of it
          const done = makeNodeState('extract', 'extractor', { status: 'finished', attempt_epoch: 1 })
          await store.appendJournal([entry(t.id, 3, { nodes: [done], at_ms: T0 + 70 })])
          assert.deepEqual(await store.getTask(t.id), { ...written, nodes: { ...written.nodes, extract: done }, updated_at_ms: T0 + 70 })
          assert.equal(await store.writeSnapshot({ ...makeTaskDoc(), v: 5 }, T0), false, 'unknown task')
          const bad = { ...structuredClone(current), v: 9 }
          bad.nodes['a.b'] = makeNodeState('a.b', 'x')
          await assert.rejects(store.writeSnapshot(bad, T0), rejectsWith(ErrorCode.InvalidKey))
        }))

      it('getRunView reads the snapshot only (the journal after it is not applied)', () =>
        withStore(async (store) => {
          const t = await seed(store)
          const running = makeNodeState('transform', 'processor', { status: 'running', attempt_epoch: 1 })
          await store.appendJournal([entry(t.id, 1, { nodes: [running], task: { cancelled: true, vars: { a: 1 } } })])
          assert.deepEqual(await store.getRunView(t.id, 'transform'), { cancelled: false, vars: {}, node: t.nodes['transform'] })
          await store.writeSnapshot({ ...(await store.getTask(t.id))!, v: 1 }, T0 + 5)
          assert.deepEqual(await store.getRunView(t.id, 'transform'), { cancelled: true, vars: { a: 1 }, node: running })
        }))

      it('listTasks filters by the status after the journal is applied', () =>
        withStore(async (store) => {
          const p = uid('lj')
          const a = await seed(store, { id: `${p}-a`, status: 'running', created_at_ms: 100 })
          await seed(store, { id: `${p}-b`, status: 'running', created_at_ms: 101 })
          const c = await seed(store, { id: `${p}-c`, status: 'queued', created_at_ms: 102 })
          await store.appendJournal([entry(a.id, 1, { task: { status: 'finished', finished_at_ms: T0 } }), entry(c.id, 1, { task: { status: 'running' } })])
          const mine = (rows: TaskDoc[]) => rows.filter((r) => r.id.startsWith(p)).map((r) => `${r.id.slice(-1)}:${r.status}`)
          assert.deepEqual(mine(await store.listTasks({ statuses: ['finished'] })), ['a:finished'])
          assert.deepEqual(mine(await store.listTasks({ statuses: ['running'] })), ['b:running', 'c:running'])
          assert.deepEqual(mine(await store.listTasks({ statuses: ['queued'] })), [])
          assert.deepEqual(mine(await store.listTasks()), ['a:finished', 'b:running', 'c:running'])
          assert.deepEqual(mine(await store.listTasks({ statuses: ['finished', 'running'] })), ['a:finished', 'b:running', 'c:running'])
          const limited = await store.listTasks({ statuses: ['finished'], limit: 1 })
          assert.ok(limited.length === 1 && limited[0]!.status === 'finished')
        }))
    })

    // ------------------------------------------------------------------ batch metrics
    describe('batch metrics', () => {
      it('insert-only rows per (task, node, batch_uid, epoch): a row whose key exists is kept; the newest epoch per batch counts', () =>
        withStore(async (store) => {
          const task = uid('t')
          const row = (node: string, batch: string, epoch: number, metrics: Record<string, unknown>) => ({ task_id: task, node_id: node, batch_uid: batch, attempt_epoch: epoch, metrics })
          assert.deepEqual(await store.listBatchMetrics(task), [])
          await store.insertBatchMetrics([row('n', 'b1', 1, { count: 2, tag: 'x' }), row('n', 'b2', 1, { count: 1 })], 1)
          await store.insertBatchMetrics([row('n', 'b1', 1, { count: 99 }), row('other', 'b1', 1, { count: 9 })], 2)
          assert.deepEqual(await store.listBatchMetrics(task, 'n'), [
            { node_id: 'n', batch_uid: 'b1', attempt_epoch: 1, metrics: { count: 2, tag: 'x' } },
            { node_id: 'n', batch_uid: 'b2', attempt_epoch: 1, metrics: { count: 1 } },
          ])
          await store.insertBatchMetrics([row('n', 'b1', 3, { count: 3 })], 3)
          await store.insertBatchMetrics([row('n', 'b1', 2, { count: 30 })], 4)
          assert.deepEqual(await store.listBatchMetrics(task), [
            { node_id: 'n', batch_uid: 'b1', attempt_epoch: 3, metrics: { count: 3 } },
            { node_id: 'n', batch_uid: 'b2', attempt_epoch: 1, metrics: { count: 1 } },
            { node_id: 'other', batch_uid: 'b1', attempt_epoch: 1, metrics: { count: 9 } },
          ])
          assert.deepEqual(await store.listBatchMetrics(task, 'nope'), [])
          assert.deepEqual(await store.listBatchMetrics(uid('t')), [])
          await store.insertBatchMetrics([], 5)
        }))

      it('metrics are copied in and stored as JSON carries them', () =>
        withStore(async (store) => {
          const task = uid('t')
          const metrics: Record<string, unknown> = { rows: 1, list: [1], m: [[1]], 'a.b': 2, nan: Number.NaN, gone: undefined }
          await store.insertBatchMetrics([{ task_id: task, node_id: 'extract', batch_uid: 'b1', attempt_epoch: 1, metrics }], T0)
          metrics['rows'] = 99
          ;(metrics['list'] as number[]).push(2)
          const [got] = await store.listBatchMetrics(task)
          assert.deepEqual(got?.metrics, { rows: 1, list: [1], m: [[1]], 'a.b': 2, nan: null })
          got!.metrics['rows'] = 5
          assert.deepEqual((await store.listBatchMetrics(task))[0]?.metrics['rows'], 1)
        }))

      it('insertBatchMetrics rejects invalid node ids with INVALID_KEY and stores none of the rows', () =>
        withStore(async (store) => {
          const task = uid('t')
          const ok = { task_id: task, node_id: 'extract', batch_uid: 'b1', attempt_epoch: 1, metrics: {} }
          await assert.rejects(store.insertBatchMetrics([ok, { ...ok, node_id: 'a.b' }], T0), rejectsWith(ErrorCode.InvalidKey))
          assert.deepEqual(await store.listBatchMetrics(task), [])
        }))
    })

    // ------------------------------------------------------------------ artifacts
    describe('artifacts', () => {
      it('inserts with created_at = updated_at = now; getArtifact finds it by (task, node, batch_uid)', () =>
        withStore(async (store) => {
          const task = uid('t')
          assert.equal(await store.upsertArtifact(artifact({ task_id: task }), T0), true)
          const expected: ArtifactDoc = {
            task_id: task,
            node_id: 'extract',
            batch_uid: 'b1',
            status: 'partial',
            meta: { rows: 10 },
            attempt_epoch: 1,
            worker_id: 'w1',
            created_at: T0,
            updated_at: T0,
          }
          assert.deepEqual(await store.getArtifact(task, 'extract', 'b1'), expected)
          assert.equal(await store.getArtifact(task, 'extract', 'b2'), null)
          assert.equal(await store.getArtifact(task, 'extract', null), null)
          assert.equal(await store.getArtifact(task, 'transform', 'b1'), null)
          assert.equal(await store.getArtifact(uid('t'), 'extract', 'b1'), null)
        }))

      it('the complete artifact (batch_uid null) is its own row', () =>
        withStore(async (store) => {
          const task = uid('t')
          await store.upsertArtifact(artifact({ task_id: task }), T0)
          await store.upsertArtifact(artifact({ task_id: task, batch_uid: null, status: 'complete', meta: { total: 10 }, worker_id: null }), T0 + 1)
          const complete = await store.getArtifact(task, 'extract', null)
          assert.equal(complete?.batch_uid, null)
          assert.equal(complete?.status, 'complete')
          assert.equal(complete?.worker_id, null)
          assert.deepEqual(complete?.meta, { total: 10 })
          assert.equal((await store.getArtifact(task, 'extract', 'b1'))?.status, 'partial')
        }))

      it('a complete artifact keeps the finalize metrics it was written with (insert, update, bulk); a rewrite without them drops them', () =>
        withStore(async (store) => {
          const task = uid('t')
          const final = { total_rows: 3, 'odd.key': 1, $dollar: { nested: [1, 'x'] } }
          await store.upsertArtifacts([artifact({ task_id: task, batch_uid: null, status: 'complete', final_metrics: final })], T0)
          assert.deepEqual((await store.getArtifact(task, 'extract', null))?.final_metrics, final)
          assert.equal((await store.getArtifact(task, 'extract', 'b1'))?.final_metrics, undefined)
          await store.upsertArtifact(artifact({ task_id: task, batch_uid: null, status: 'complete', attempt_epoch: 2, final_metrics: { total_rows: 4 } }), T0 + 1)
          assert.deepEqual((await store.getArtifact(task, 'extract', null))?.final_metrics, { total_rows: 4 })
          await store.upsertArtifacts([artifact({ task_id: task, batch_uid: null, status: 'complete', attempt_epoch: 3 })], T0 + 2)
          const got = await store.getArtifact(task, 'extract', null)
          assert.equal(got?.attempt_epoch, 3)
          assert.equal(got?.final_metrics, undefined, 'a later attempt\'s artifact without finalize metrics does not carry the earlier ones')
          assert.deepEqual((await store.listArtifacts(task, { status: 'complete' }))[0]?.final_metrics, undefined)
        }))

      it('an update with an equal or higher epoch replaces it, keeping created_at', () =>
        withStore(async (store) => {
          const task = uid('t')
          await store.upsertArtifact(artifact({ task_id: task, attempt_epoch: 2 }), T0)
          assert.equal(await store.upsertArtifact(artifact({ task_id: task, attempt_epoch: 2, meta: { rows: 11 }, worker_id: 'w2' }), T0 + 5), true)
          let got = await store.getArtifact(task, 'extract', 'b1')
          assert.deepEqual(got, { ...got!, meta: { rows: 11 }, worker_id: 'w2', attempt_epoch: 2, created_at: T0, updated_at: T0 + 5 })
          assert.equal(
            await store.upsertArtifact(artifact({ task_id: task, attempt_epoch: 3, status: 'failed', meta: {}, worker_id: null }), T0 + 7),
            true,
          )
          got = await store.getArtifact(task, 'extract', 'b1')
          assert.deepEqual(got, {
            task_id: task,
            node_id: 'extract',
            batch_uid: 'b1',
            status: 'failed',
            meta: {},
            attempt_epoch: 3,
            worker_id: null,
            created_at: T0,
            updated_at: T0 + 7,
          })
        }))

      it('a write from an older epoch is refused (false) and changes nothing; fencing is per key', () =>
        withStore(async (store) => {
          const task = uid('t')
          await store.upsertArtifact(artifact({ task_id: task, attempt_epoch: 3 }), T0)
          await store.upsertArtifact(artifact({ task_id: task, batch_uid: null, status: 'complete', attempt_epoch: 3 }), T0)
          const before = await store.listArtifacts(task)
          assert.equal(await store.upsertArtifact(artifact({ task_id: task, attempt_epoch: 2, meta: { stale: true } }), T0 + 1), false)
          assert.equal(await store.upsertArtifact(artifact({ task_id: task, batch_uid: null, status: 'failed', attempt_epoch: 0 }), T0 + 1), false)
          assert.deepEqual(await store.listArtifacts(task), before)
          // other keys are not fenced by this one
          assert.equal(await store.upsertArtifact(artifact({ task_id: task, batch_uid: 'b2', attempt_epoch: 1 }), T0 + 2), true)
          assert.equal(await store.upsertArtifact(artifact({ task_id: task, node_id: 'transform', attempt_epoch: 0 }), T0 + 2), true)
        }))

      it('listArtifacts orders by created_at, then complete last, then insertion (a writer\'s order, not the batch uids\')', () =>
        withStore(async (store) => {
          const task = uid('t')
          const other = uid('t')
          const w = (node: string, batch: string | null, now: number) =>
            store.upsertArtifact(artifact({ task_id: task, node_id: node, batch_uid: batch, status: batch === null ? 'complete' : 'partial' }), now)
          await w('extract', null, 100)
          await w('extract', 'b2', 100)
          await w('extract', 'b10', 100)
          await w('extract', 'b-\u{1F600}', 100)
          await w('extract', 'b-\uFFFD', 100)
          await w('transform', 'b1', 100)
          await w('extract', 'b1', 100)
          await w('extract', 'a0', 200)
          await w('extract', 'z9', 50)
          await store.upsertArtifact(artifact({ task_id: other, batch_uid: 'a' }), 1)
          // an update keeps its place (created_at kept)
          await w('extract', 'b2', 300)
          // several in one call share a time: in the order given
          await store.upsertArtifacts(['f3', 'f2', 'f1'].map((b) => artifact({ task_id: task, node_id: 'load', batch_uid: b, status: 'partial' })), 400)
          const order = (await store.listArtifacts(task)).map((a) => `${a.node_id}/${a.batch_uid}`)
          assert.deepEqual(order, [
            'extract/z9',
            'extract/b2',
            'extract/b10',
            'extract/b-\u{1F600}',
            'extract/b-\uFFFD',
            'transform/b1',
            'extract/b1',
            'extract/null',
            'extract/a0',
            'load/f3',
            'load/f2',
            'load/f1',
          ])
          // and is still deterministic when asked again
          assert.deepEqual((await store.listArtifacts(task)).map((a) => `${a.node_id}/${a.batch_uid}`), order)
        }))

      it('listArtifacts filters by node and status', () =>
        withStore(async (store) => {
          const task = uid('t')
          await store.upsertArtifact(artifact({ task_id: task, batch_uid: 'b1' }), 1)
          await store.upsertArtifact(artifact({ task_id: task, batch_uid: 'b2' }), 2)
          await store.upsertArtifact(artifact({ task_id: task, batch_uid: null, status: 'complete' }), 3)
          await store.upsertArtifact(artifact({ task_id: task, node_id: 'transform', batch_uid: 'b1' }), 4)
          await store.upsertArtifact(artifact({ task_id: task, node_id: 'transform', batch_uid: 'b2', status: 'failed' }), 5)
          const keys = (rows: ArtifactDoc[]) => rows.map((a) => `${a.node_id}/${a.batch_uid}`)
          assert.deepEqual(keys(await store.listArtifacts(task, { nodeId: 'extract' })), ['extract/b1', 'extract/b2', 'extract/null'])
          assert.deepEqual(keys(await store.listArtifacts(task, { status: 'partial' })), ['extract/b1', 'extract/b2', 'transform/b1'])
          assert.deepEqual(keys(await store.listArtifacts(task, { nodeId: 'transform', status: 'failed' })), ['transform/b2'])
          assert.deepEqual(await store.listArtifacts(task, { nodeId: 'nope' }), [])
          assert.deepEqual(await store.listArtifacts(uid('t')), [])
        }))

      it('copies meta in and documents out', () =>
        withStore(async (store) => {
          const task = uid('t')
          const meta: Record<string, unknown> = { list: [1], obj: { a: 1 } }
          await store.upsertArtifact(artifact({ task_id: task, meta }), T0)
          ;(meta['list'] as number[]).push(2)
          const got = (await store.getArtifact(task, 'extract', 'b1'))!
          ;(got.meta['obj'] as Record<string, unknown>)['a'] = 2
          const listed = (await store.listArtifacts(task))[0]!
          listed.meta['list'] = 'x'
          listed.attempt_epoch = 99
          const again = await store.getArtifact(task, 'extract', 'b1')
          assert.deepEqual(again?.meta, { list: [1], obj: { a: 1 } })
          assert.equal(again?.attempt_epoch, 1)
        }))
    })

    // ------------------------------------------------------------------ stream claims
    describe('stream claims', () => {
      it('a (task, consumer, from, batch, consumer epoch) claim succeeds once; any other component is another claim', () =>
        withStore(async (store) => {
          const claim: StreamClaim = { task_id: uid('t'), consumer_node: 'transform', from_node: 'extract', batch_uid: 'b1', consumer_epoch: 1 }
          assert.equal(await store.claimStreamBatch(claim, T0), true)
          assert.equal(await store.claimStreamBatch(claim, T0 + 1), false)
          assert.equal(await store.claimStreamBatch({ ...claim }, T0 + 2), false)
          assert.equal(await store.claimStreamBatch({ ...claim, consumer_epoch: 2 }, T0), true)
          assert.equal(await store.claimStreamBatch({ ...claim, batch_uid: 'b2' }, T0), true)
          assert.equal(await store.claimStreamBatch({ ...claim, from_node: 'other' }, T0), true)
          assert.equal(await store.claimStreamBatch({ ...claim, consumer_node: 'other' }, T0), true)
          assert.equal(await store.claimStreamBatch({ ...claim, task_id: uid('t') }, T0), true)
          assert.equal(await store.claimStreamBatch({ ...claim, consumer_epoch: 2 }, T0), false)
        }))
    })

    // ------------------------------------------------------------------ batched writes
    describe('batched writes (one round trip for many)', () => {
      it('createTasks stores every new task and answers, per task in order, null or the duplicate-key error', () =>
        withStore(async (store) => {
          const a = makeTaskDoc()
          const b = makeTaskDoc()
          await store.createTask(b)
          const c = makeTaskDoc()
          const res = await store.createTasks([a, b, c])
          assert.equal(res[0], null)
          assert.ok(isFlowkitError(res[1]) && res[1].code === ErrorCode.DuplicateKey, 'the existing id is refused')
          assert.equal(res[2], null)
          assert.equal((await store.getTask(a.id))?.id, a.id)
          assert.equal((await store.getTask(c.id))?.id, c.id)
        }))

      it('listTaskIds answers the ids whose snapshot status is one of those asked', () =>
        withStore(async (store) => {
          const q = makeTaskDoc()
          const f = makeTaskDoc({ status: 'finished' })
          await store.createTasks([q, f])
          const queued = await store.listTaskIds(['queued'])
          assert.ok(queued.includes(q.id) && !queued.includes(f.id))
          assert.deepEqual(await store.listTaskIds([]), [])
        }))

      it('listTaskStatuses answers id and snapshot status of the tasks whose status is one of those asked', () =>
        withStore(async (store) => {
          const q = makeTaskDoc()
          const f = makeTaskDoc({ status: 'finished' })
          const c = makeTaskDoc({ status: 'cancelled' })
          await store.createTasks([q, f, c])
          const listed = await store.listTaskStatuses(['queued', 'finished'])
          const mine = listed.filter((x) => [q.id, f.id, c.id].includes(x.id)).sort((a, b) => a.status.localeCompare(b.status))
          assert.deepEqual(mine, [{ id: f.id, status: 'finished' }, { id: q.id, status: 'queued' }])
          assert.deepEqual(await store.listTaskStatuses([]), [])
        }))

      it('upsertArtifacts answers as upsertArtifact would, per artifact: new keys inserted, a rewrite within the fence applied, an older epoch refused', () =>
        withStore(async (store) => {
          const task = uid('ua')
          const art = (batch: string | null, epoch: number, meta: Record<string, unknown>) => ({
            task_id: task,
            node_id: 'extract',
            batch_uid: batch,
            status: (batch === null ? 'complete' : 'partial') as 'complete' | 'partial',
            meta,
            attempt_epoch: epoch,
            worker_id: 'w',
          })
          await store.upsertArtifact(art('b0', 2, { v: 0 }), T0)
          const res = await store.upsertArtifacts([art('b1', 1, { v: 1 }), art('b0', 1, { v: 'old' }), art('b2', 1, { v: 2 }), art('b2', 1, { v: 'again' }), art(null, 1, {})], T0 + 1)
          assert.deepEqual(res, [true, false, true, true, true])
          assert.deepEqual((await store.getArtifact(task, 'extract', 'b0'))?.meta, { v: 0 }, 'the older epoch was fenced')
          assert.deepEqual((await store.getArtifact(task, 'extract', 'b2'))?.meta, { v: 'again' }, 'the later write of one key wins')
          assert.equal((await store.listArtifacts(task)).length, 4)
        }))

      it('claimStreamBatches claims each new batch once, per claim in order', () =>
        withStore(async (store) => {
          const claim: StreamClaim = { task_id: uid('cb'), consumer_node: 'transform', from_node: 'extract', batch_uid: 'b1', consumer_epoch: 1 }
          assert.equal(await store.claimStreamBatch(claim, T0), true)
          assert.deepEqual(await store.claimStreamBatches([{ ...claim, batch_uid: 'b0' }, claim, { ...claim, batch_uid: 'b2' }], T0 + 1), [true, false, true])
          assert.deepEqual(await store.claimStreamBatches([{ ...claim, batch_uid: 'b2' }], T0 + 2), [false])
          assert.deepEqual(await store.claimStreamBatches([], T0 + 3), [])
        }))
    })

    // ------------------------------------------------------------------ attempt claims
    describe('attempt claims', () => {
      it('claimAttempt: one worker per attempt; the holder may claim again; another attempt is free', () =>
        withStore(async (store) => {
          const claim = { task_id: uid('ca'), node_id: 'extract', attempt_epoch: 1, worker_id: 'w1' }
          assert.equal(await store.claimAttempt(claim, T0), true)
          assert.equal(await store.claimAttempt(claim, T0 + 1), true, 'the holder again (a redelivered start)')
          assert.equal(await store.claimAttempt({ ...claim, worker_id: 'w2' }, T0 + 2), false, 'a second worker is refused')
          assert.equal(await store.claimAttempt({ ...claim, worker_id: 'w2', attempt_epoch: 2 }, T0 + 3), true)
          assert.equal(await store.claimAttempt({ ...claim, node_id: 'other' }, T0 + 4), true)
        }))

      it('attemptHolder: the worker id holding an attempt, null when unclaimed', () =>
        withStore(async (store) => {
          const task = uid('ah')
          assert.equal(await store.attemptHolder(task, 'n', 1), null)
          await store.claimAttempt({ task_id: task, node_id: 'n', attempt_epoch: 1, worker_id: 'w1#i1' }, T0)
          await store.claimAttempt({ task_id: task, node_id: 'n', attempt_epoch: 1, worker_id: 'w2#i2' }, T0 + 1)
          assert.equal(await store.attemptHolder(task, 'n', 1), 'w1#i1', 'the first claim holds')
          assert.equal(await store.attemptHolder(task, 'n', 2), null, 'another epoch is unclaimed')
          assert.equal(await store.attemptHolder(task, 'm', 1), null, 'another node is unclaimed')
        }))

      it('claimAttempt: concurrent claims of one attempt by many workers: exactly one wins', () =>
        withStore(async (store) => {
          const task = uid('cc')
          const res = await Promise.all(Array.from({ length: 8 }, (_, i) => store.claimAttempt({ task_id: task, node_id: 'n', attempt_epoch: 1, worker_id: `w${i}` }, T0)))
          assert.equal(res.filter(Boolean).length, 1)
        }))

      it('checkpoints: one per node, the newest attempt wins, any JSON state round-trips', () =>
        withStore(async (store) => {
          const task = uid('cp')
          assert.equal(await store.getCheckpoint(task, 'n'), null)
          const state = { offset: 40, keys: { $weird: 1, 'a.b': [1, null, 'x'] } }
          assert.equal(await store.saveCheckpoint({ task_id: task, node_id: 'n', attempt_epoch: 1, state }, T0), true)
          assert.deepEqual(await store.getCheckpoint(task, 'n'), { attempt_epoch: 1, state, saved_at_ms: T0 })
          assert.equal(await store.saveCheckpoint({ task_id: task, node_id: 'n', attempt_epoch: 2, state: { offset: 80 } }, T0 + 1), true)
          assert.equal(await store.saveCheckpoint({ task_id: task, node_id: 'n', attempt_epoch: 1, state: { offset: 99 } }, T0 + 2), false, 'an older attempt is fenced')
          assert.deepEqual((await store.getCheckpoint(task, 'n'))?.state, { offset: 80 })
          assert.equal(await store.saveCheckpoint({ task_id: task, node_id: 'n', attempt_epoch: 2, state: { offset: 90 } }, T0 + 3), true, 'the same attempt saves again')
          assert.deepEqual(await store.getCheckpoint(task, 'n'), { attempt_epoch: 2, state: { offset: 90 }, saved_at_ms: T0 + 3 })
          assert.equal(await store.getCheckpoint(task, 'other'), null)
        }))

      it('claimAttempts: several claims in one call, per claim in order, as claimAttempt would answer', () =>
        withStore(async (store) => {
          const task = uid('cm')
          const c = (node: string, worker: string, epoch = 1) => ({ task_id: task, node_id: node, attempt_epoch: epoch, worker_id: worker })
          assert.equal(await store.claimAttempt(c('a', 'w1'), T0), true)
          assert.deepEqual(await store.claimAttempts([c('a', 'w2'), c('b', 'w2'), c('a', 'w1'), c('a', 'w2', 2)], T0 + 1), [false, true, true, true])
          assert.deepEqual(await store.claimAttempts([c('b', 'w3'), c('c', 'w3')], T0 + 2), [false, true])
          assert.deepEqual(await store.claimAttempts([], T0 + 3), [])
        }))

      it('claimAttempt rejects an invalid node id', () =>
        withStore(async (store) => {
          await assert.rejects(store.claimAttempt({ task_id: uid('ci'), node_id: 'bad.node$id', attempt_epoch: 1, worker_id: 'w1' }, T0))
        }))
    })

    // ------------------------------------------------------------------ outbox
    describe('outbox', () => {
      it('enqueue inserts a pending row with a stable id; a duplicate (topic, key, dedup_id) is refused', () =>
        withStore(async (store) => {
          const topic = uid('topic')
          assert.equal(await store.outboxEnqueue({ topic, key: 'k', value: 'v1', dedup_id: 'd1' }, T0), true)
          assert.equal(await store.outboxEnqueue({ topic, key: 'k', value: 'v2', dedup_id: 'd1' }, T0 + 1), false)
          const id = outboxId(topic, 'k', 'd1')
          assert.deepEqual(await outboxRow(store, id), {
            id,
            topic,
            key: 'k',
            value: 'v1',
            dedup_id: 'd1',
            status: 'pending',
            attempts: 0,
            next_attempt_at_ms: T0,
            last_error: null,
            created_at_ms: T0,
            updated_at_ms: T0,
            sent_at_ms: null,
          })
          // every component of the key matters; a null key is not the string "null"
          assert.equal(await store.outboxEnqueue({ topic, key: null, value: 'v', dedup_id: 'd1' }, T0), true)
          assert.equal(await store.outboxEnqueue({ topic, key: 'null', value: 'v', dedup_id: 'd1' }, T0), true)
          assert.equal(await store.outboxEnqueue({ topic, key: null, value: 'v', dedup_id: 'd1' }, T0), false)
          assert.equal(await store.outboxEnqueue({ topic, key: 'k', value: 'v', dedup_id: 'd2' }, T0), true)
          assert.equal(await store.outboxEnqueue({ topic: `${topic}-2`, key: 'k', value: 'v', dedup_id: 'd1' }, T0), true)
          const mine = (await store.outboxList()).filter((r) => r.topic === topic)
          assert.equal(mine.length, 4)
          assert.equal((await outboxRow(store, outboxId(topic, null, 'd1')))?.key, null)
        }))

      it('a duplicate is refused whatever the state of the existing row (sent, failed)', () =>
        withStore(async (store) => {
          const topic = uid('topic')
          const a = { topic, key: 'k', value: 'v', dedup_id: 'sent' }
          const b = { topic, key: 'k', value: 'v', dedup_id: 'failed' }
          await store.outboxEnqueue(a, T0)
          await store.outboxEnqueue(b, T0)
          await store.outboxMarkSent(outboxId(topic, 'k', 'sent'), T0 + 1)
          await store.outboxMarkFailed(outboxId(topic, 'k', 'failed'), 5, 'x', T0 + 1)
          assert.equal(await store.outboxEnqueue(a, T0 + 2), false)
          assert.equal(await store.outboxEnqueue(b, T0 + 2), false)
          assert.equal((await outboxRow(store, outboxId(topic, 'k', 'sent')))?.status, 'sent')
        }))

      it('enqueue with `parked` inserts a dead letter directly: failed, never claimed, requeued by an operator', () =>
        withStore(async (store) => {
          await drainOutbox(store)
          const topic = uid('topic')
          const row = { topic, key: 'k', value: 'v', dedup_id: 'd' }
          assert.equal(await store.outboxEnqueue(row, T0, { attempts: 7, error: 'too big \udc00' }), true)
          const id = outboxId(topic, 'k', 'd')
          assert.deepEqual(await outboxRow(store, id), {
            id,
            topic,
            key: 'k',
            value: 'v',
            dedup_id: 'd',
            status: 'failed',
            attempts: 7,
            next_attempt_at_ms: T0,
            last_error: 'too big \udc00',
            created_at_ms: T0,
            updated_at_ms: T0,
            sent_at_ms: null,
          })
          assert.equal(await store.outboxEnqueue(row, T0 + 1), false, 'the dedup covers parked rows')
          assert.equal(await store.outboxEnqueue(row, T0 + 1, { attempts: 1, error: 'again' }), false)
          assert.deepEqual(await store.outboxClaimDue(T0 + 1_000_000, 10, T0 + 2_000_000), [])
          assert.ok((await store.outboxList({ status: 'failed' })).some((r) => r.id === id))
          assert.equal(await store.outboxRequeue(id, T0 + 5), true)
          assert.deepEqual((await store.outboxClaimDue(T0 + 5, 10, T0 + 100)).map((r) => r.id), [id])
        }))

      it('claimDue takes due pending rows oldest first up to limit and leases them until claimUntil', () =>
        withStore(async (store) => {
          await drainOutbox(store)
          const topic = uid('topic')
          const ids: string[] = []
          for (const [i, d] of ['A', 'B', 'C'].entries()) {
            await store.outboxEnqueue({ topic, key: null, value: d, dedup_id: d }, 1000 + i)
            ids.push(outboxId(topic, null, d))
          }
          const [A, B, C] = ids as [string, string, string]
          assert.deepEqual(await store.outboxClaimDue(999, 10, 5000), [], 'nothing due yet')
          assert.deepEqual(await store.outboxClaimDue(1002, 0, 5000), [], 'limit 0 claims nothing')

          const first = await store.outboxClaimDue(1002, 2, 5000)
          assert.deepEqual(first.map((r) => r.id), [A, B])
          for (const r of first) {
            assert.equal(r.next_attempt_at_ms, 5000)
            assert.equal(r.updated_at_ms, 1002)
            assert.equal(r.status, 'pending')
            assert.equal(r.attempts, 0)
          }
          assert.equal((await outboxRow(store, A))?.next_attempt_at_ms, 5000)
          // leased rows are not claimed again before claimUntil
          assert.deepEqual((await store.outboxClaimDue(1002, 10, 5000)).map((r) => r.id), [C])
          assert.deepEqual(await store.outboxClaimDue(4999, 10, 9000), [])
          // at claimUntil they are due again (ordered by next_attempt_at_ms, then creation)
          assert.deepEqual((await store.outboxClaimDue(5000, 10, 9000)).map((r) => r.id), [A, B, C])
          await store.outboxMarkRetry(A, 1, 9500, 'e', 5001)
          await store.outboxMarkRetry(B, 1, 9400, 'e', 5001)
          assert.deepEqual(await store.outboxClaimDue(8999, 10, 20_000), [])
          assert.deepEqual((await store.outboxClaimDue(9500, 10, 20_000)).map((r) => r.id), [C, B, A])
        }))

      it('markSent: status sent, sent_at_ms set; never claimed again', () =>
        withStore(async (store) => {
          await drainOutbox(store)
          const topic = uid('topic')
          await store.outboxEnqueue({ topic, key: 'k', value: 'v', dedup_id: 'd' }, T0)
          const id = outboxId(topic, 'k', 'd')
          const [claimed] = await store.outboxClaimDue(T0, 1, T0 + 100)
          assert.equal(claimed?.id, id)
          await store.outboxMarkSent(id, T0 + 5)
          const row = await outboxRow(store, id)
          assert.equal(row?.status, 'sent')
          assert.equal(row?.sent_at_ms, T0 + 5)
          assert.equal(row?.updated_at_ms, T0 + 5)
          assert.equal(row?.attempts, 0)
          assert.deepEqual(await store.outboxClaimDue(T0 + 1_000_000, 10, T0 + 2_000_000), [])
          assert.ok((await store.outboxList({ status: 'sent' })).some((r) => r.id === id))
          assert.ok(!(await store.outboxList({ status: 'pending' })).some((r) => r.id === id))
        }))

      it('markRetry keeps the row pending with attempts, error and the next due time', () =>
        withStore(async (store) => {
          await drainOutbox(store)
          const topic = uid('topic')
          await store.outboxEnqueue({ topic, key: 'k', value: 'v', dedup_id: 'd' }, T0)
          const id = outboxId(topic, 'k', 'd')
          await store.outboxClaimDue(T0, 1, T0 + 100)
          await store.outboxMarkRetry(id, 1, T0 + 50, 'broker down', T0 + 1)
          const row = await outboxRow(store, id)
          assert.deepEqual(
            { status: row?.status, attempts: row?.attempts, next: row?.next_attempt_at_ms, err: row?.last_error, upd: row?.updated_at_ms, sent: row?.sent_at_ms },
            { status: 'pending', attempts: 1, next: T0 + 50, err: 'broker down', upd: T0 + 1, sent: null },
          )
          assert.deepEqual(await store.outboxClaimDue(T0 + 49, 10, T0 + 100), [])
          const again = await store.outboxClaimDue(T0 + 50, 10, T0 + 100)
          assert.deepEqual(again.map((r) => [r.id, r.attempts, r.last_error]), [[id, 1, 'broker down']])
        }))

      it('markFailed dead-letters the row; requeue brings it back pending, due now, attempts reset', () =>
        withStore(async (store) => {
          await drainOutbox(store)
          const topic = uid('topic')
          await store.outboxEnqueue({ topic, key: 'k', value: 'v', dedup_id: 'd' }, T0)
          const id = outboxId(topic, 'k', 'd')
          await store.outboxClaimDue(T0, 1, T0 + 100)
          await store.outboxMarkFailed(id, 5, 'gave up', T0 + 2)
          let row = await outboxRow(store, id)
          assert.deepEqual([row?.status, row?.attempts, row?.last_error, row?.updated_at_ms], ['failed', 5, 'gave up', T0 + 2])
          assert.deepEqual(await store.outboxClaimDue(T0 + 1_000_000, 10, T0 + 2_000_000), [])
          assert.ok((await store.outboxList({ status: 'failed' })).some((r) => r.id === id))

          assert.equal(await store.outboxRequeue(id, T0 + 10), true)
          row = await outboxRow(store, id)
          assert.deepEqual(
            [row?.status, row?.attempts, row?.next_attempt_at_ms, row?.updated_at_ms, row?.last_error],
            ['pending', 0, T0 + 10, T0 + 10, 'gave up'],
          )
          assert.equal(await store.outboxRequeue(id, T0 + 11), false, 'a pending row is not requeued')
          assert.deepEqual((await store.outboxClaimDue(T0 + 10, 10, T0 + 100)).map((r) => r.id), [id])
        }))

      it('count by status: the rows list would return with that status (sent ones too), none read', () =>
        withStore(async (store) => {
          await drainOutbox(store)
          const statuses = ['pending', 'failed', 'sent'] as const
          const before = await Promise.all(statuses.map((s) => store.outboxCount(s)))
          const topic = uid('topic')
          for (const d of ['a', 'b', 'c', 'd']) await store.outboxEnqueue({ topic, key: 'k', value: `v-${d}`, dedup_id: d }, T0)
          const [a, b, c] = [outboxId(topic, 'k', 'a'), outboxId(topic, 'k', 'b'), outboxId(topic, 'k', 'c')]
          await store.outboxClaimDue(T0, 10, T0 + 100)
          await store.outboxMarkFailed(b, 5, 'gave up', T0 + 2)
          await store.outboxMarkFailed(c, 5, 'gave up', T0 + 2)
          await store.outboxMarkSent(a, T0 + 3)
          const after = await Promise.all(statuses.map((s) => store.outboxCount(s)))
          assert.deepEqual(after.map((n, i) => n - (before[i] as number)), [1, 2, 1], 'one pending, two dead letters, one sent')
          for (const s of statuses) assert.equal(await store.outboxCount(s), (await store.outboxList({ status: s })).length, `${s}: as listed`)
          assert.equal(await store.outboxCount('nope' as never), 0, 'an unknown status counts nothing')
        }))

      it('list by id: that row alone when it matches the status asked, none otherwise (an id is never a query)', () =>
        withStore(async (store) => {
          await drainOutbox(store)
          const topic = uid('topic')
          for (const d of ['a', 'b', 'c']) await store.outboxEnqueue({ topic, key: 'k', value: `v-${d}`, dedup_id: d }, T0)
          const [a, b] = [outboxId(topic, 'k', 'a'), outboxId(topic, 'k', 'b')]
          await store.outboxClaimDue(T0, 10, T0 + 100)
          await store.outboxMarkFailed(b, 5, 'gave up', T0 + 2)
          assert.deepEqual((await store.outboxList({ id: b })).map((r) => [r.id, r.status, r.value]), [[b, 'failed', 'v-b']])
          assert.deepEqual((await store.outboxList({ status: 'failed', id: b })).map((r) => r.id), [b])
          assert.deepEqual(await store.outboxList({ status: 'failed', id: a }), [], 'a pending row is not a dead letter')
          assert.deepEqual((await store.outboxList({ status: 'pending', id: a })).map((r) => r.id), [a])
          assert.deepEqual(await store.outboxList({ id: `${b}-nope` }), [])
          await assert.rejects(store.outboxList({ id: { $ne: null } as unknown as string }), rejectsWith(ErrorCode.InvalidKey), 'an operator object is refused')
          await store.outboxMarkSent(a, T0 + 3)
          assert.deepEqual((await store.outboxList({ id: a })).map((r) => [r.id, r.status]), [[a, 'sent']])
        }))

      it('requeue refuses rows that are not failed; mark* only act on pending rows', () =>
        withStore(async (store) => {
          await drainOutbox(store)
          const topic = uid('topic')
          await store.outboxEnqueue({ topic, key: 'k', value: 'v', dedup_id: 'sent' }, T0)
          await store.outboxEnqueue({ topic, key: 'k', value: 'v', dedup_id: 'failed' }, T0)
          const sent = outboxId(topic, 'k', 'sent')
          const failed = outboxId(topic, 'k', 'failed')
          await store.outboxMarkSent(sent, T0 + 1)
          await store.outboxMarkFailed(failed, 3, 'x', T0 + 1)
          const before = [await outboxRow(store, sent), await outboxRow(store, failed)]
          assert.equal(await store.outboxRequeue(sent, T0 + 2), false)
          assert.equal(await store.outboxRequeue(uid('nope'), T0 + 2), false)
          await store.outboxMarkRetry(sent, 1, T0 + 3, 'late', T0 + 3)
          await store.outboxMarkFailed(sent, 1, 'late', T0 + 3)
          await store.outboxMarkSent(failed, T0 + 3)
          await store.outboxMarkRetry(failed, 9, T0 + 3, 'late', T0 + 3)
          await store.outboxMarkSent(uid('nope'), T0 + 3)
          assert.deepEqual([await outboxRow(store, sent), await outboxRow(store, failed)], before)
        }))

      it('outboxList filters by status, orders by created_at_ms then id, honours limit', () =>
        withStore(async (store) => {
          const topic = uid('topic')
          await store.outboxEnqueue({ topic, key: null, value: 'v', dedup_id: 'late' }, T0 + 10)
          await store.outboxEnqueue({ topic, key: null, value: 'v', dedup_id: 'early' }, T0 + 1)
          await store.outboxEnqueue({ topic, key: null, value: 'v', dedup_id: 'same-1' }, T0 + 5)
          await store.outboxEnqueue({ topic, key: null, value: 'v', dedup_id: 'same-2' }, T0 + 5)
          const [s1, s2] = [outboxId(topic, null, 'same-1'), outboxId(topic, null, 'same-2')].sort(cmpStr)
          const all = await store.outboxList()
          assert.ok(all.every((r, i) => i === 0 || all[i - 1]!.created_at_ms < r.created_at_ms || (all[i - 1]!.created_at_ms === r.created_at_ms && cmpStr(all[i - 1]!.id, r.id) < 0)))
          assert.deepEqual(
            all.filter((r) => r.topic === topic).map((r) => r.id),
            [outboxId(topic, null, 'early'), s1, s2, outboxId(topic, null, 'late')],
          )
          const pending = await store.outboxList({ status: 'pending' })
          assert.ok(pending.every((r) => r.status === 'pending'))
          assert.deepEqual(await store.outboxList({ status: 'pending', limit: 2 }), pending.slice(0, 2))
          assert.deepEqual(await store.outboxList({ limit: 0 }), [])
        }))

      it('rows are copied out', () =>
        withStore(async (store) => {
          await drainOutbox(store)
          const topic = uid('topic')
          await store.outboxEnqueue({ topic, key: 'k', value: 'v', dedup_id: 'd' }, T0)
          const id = outboxId(topic, 'k', 'd')
          const listed = (await outboxRow(store, id))!
          listed.status = 'sent'
          listed.value = 'changed'
          const [claimed] = await store.outboxClaimDue(T0, 1, T0 + 1)
          claimed!.next_attempt_at_ms = 0
          const row = await outboxRow(store, id)
          assert.equal(row?.status, 'pending')
          assert.equal(row?.value, 'v')
          assert.equal(row?.next_attempt_at_ms, T0 + 1)
        }))
    })

    // ------------------------------------------------------------------ workers
    describe('workers', () => {
      it('upsertWorker inserts and replaces by worker_id; listWorkers is ordered by worker_id', () =>
        withStore(async (store) => {
          const p = uid('w')
          await store.upsertWorker(workerInfo(`${p}-b`))
          await store.upsertWorker(workerInfo(`${p}-a`, { roles: ['x'] }))
          await store.upsertWorker(workerInfo(`${p}-b`, { status: 'offline', last_seen_ms: T0 + 9, capacity: 4 }))
          const all = await store.listWorkers()
          assert.ok(all.every((w, i) => i === 0 || cmpStr(all[i - 1]!.worker_id, w.worker_id) < 0))
          const mine = all.filter((w) => w.worker_id.startsWith(p))
          assert.deepEqual(mine, [
            workerInfo(`${p}-a`, { roles: ['x'] }),
            workerInfo(`${p}-b`, { status: 'offline', last_seen_ms: T0 + 9, capacity: 4 }),
          ])
          mine[0]!.roles.push('mutated')
          assert.deepEqual((await store.listWorkers()).find((w) => w.worker_id === `${p}-a`)?.roles, ['x'])
        }))

      it('worker state is saved, replaced and read back by worker_id', () =>
        withStore(async (store) => {
          const id = uid('w')
          assert.equal(await store.getWorkerState(id), null)
          const state: WorkerStateDoc = {
            worker_id: id,
            active_runs: [{ task_id: uid('t'), node_id: 'extract', step_type: 'extractor', attempt_epoch: 1, lease_id: 'l1', started_at_ms: T0 }],
            updated_at_ms: T0,
          }
          await store.saveWorkerState(state)
          assert.deepEqual(await store.getWorkerState(id), state)
          state.active_runs[0]!.attempt_epoch = 7
          const got = (await store.getWorkerState(id))!
          assert.equal(got.active_runs[0]?.attempt_epoch, 1)
          got.active_runs.pop()
          assert.equal((await store.getWorkerState(id))?.active_runs.length, 1)
          await store.saveWorkerState({ worker_id: id, active_runs: [], updated_at_ms: T0 + 1 })
          assert.deepEqual(await store.getWorkerState(id), { worker_id: id, active_runs: [], updated_at_ms: T0 + 1 })
          assert.equal(await store.getWorkerState(uid('w')), null)
        }))

      it('worker state written by an older process instance than the stored one is refused (false, nothing written); a newer, the same or an unstamped one replaces it', () =>
        withStore(async (store) => {
          const id = uid('w')
          // Instance ids begin with their process's start time, base 36 (src/worker/instance.ts).
          const older = '00000000a-older'
          const newer = '00000000b-newer'
          const newest = '00000001z-newest'
          const run = { task_id: uid('t'), node_id: 'n', step_type: 's', attempt_epoch: 2, lease_id: 'l', started_at_ms: T0 }
          assert.equal(await store.saveWorkerState({ worker_id: id, active_runs: [], updated_at_ms: T0, instance: older }), true)
          assert.equal(await store.saveWorkerState({ worker_id: id, active_runs: [run], updated_at_ms: T0 + 1, instance: newer }), true, 'a successor replaces its predecessor')
          assert.equal(await store.saveWorkerState({ worker_id: id, active_runs: [], updated_at_ms: T0 + 2, instance: older }), false, 'the predecessor resumed is refused')
          assert.deepEqual(await store.getWorkerState(id), { worker_id: id, active_runs: [run], updated_at_ms: T0 + 1, instance: newer })
          assert.equal(await store.saveWorkerState({ worker_id: id, active_runs: [], updated_at_ms: T0 + 3, instance: newer }), true, 'the same instance again')
          assert.equal(await store.saveWorkerState({ worker_id: id, active_runs: [], updated_at_ms: T0 + 4, instance: '0b9f3c1e-6f2a-4c55' }), true, 'an instance without a stamp (an earlier flowkit) is not judged')
          assert.equal(await store.saveWorkerState({ worker_id: id, active_runs: [], updated_at_ms: T0 + 5 }), true, 'nor a writer without an instance (a Python worker)')
          assert.deepEqual(await store.getWorkerState(id), { worker_id: id, active_runs: [], updated_at_ms: T0 + 5 })
          assert.equal(await store.saveWorkerState({ worker_id: id, active_runs: [], updated_at_ms: T0 + 6, instance: older }), true, 'after an unstamped state, any instance writes')
          assert.equal(await store.saveWorkerState({ worker_id: id, active_runs: [run], updated_at_ms: T0 + 7, instance: newest }), true)
          const concurrent = await Promise.all([older, newer].map((instance) => store.saveWorkerState({ worker_id: id, active_runs: [], updated_at_ms: T0 + 8, instance })))
          assert.deepEqual(concurrent, [false, false], 'two stale writers at once: both refused')
          assert.equal((await store.getWorkerState(id))?.instance, newest)
        }))
    })

    // ------------------------------------------------------------------ concurrency (unique inserts: every backend)
    describe('concurrency: unique-key inserts', () => {
      it(`${N} concurrent appendJournal of one (task, seq) by different writers: exactly one true, its entry kept`, () =>
        withStore(async (store) => {
          const t = await seed(store)
          const results = await Promise.all(
            Array.from({ length: N }, (_, i) => store.appendJournal([entry(t.id, 1, { writer: `c${i}`, task: { vars: { winner: i } } })])),
          )
          const winners = results.flatMap((r, i) => (r[0] === true ? [i] : []))
          assert.equal(winners.length, 1)
          const stored = await store.readJournal([t.id])
          assert.deepEqual(stored.map((e) => e.writer), [`c${winners[0]}`])
          assert.deepEqual((await store.getTask(t.id))?.coordinator.vars, { winner: winners[0] })
        }))

      it(`${N} concurrent claimStreamBatch of one key: exactly one true`, () =>
        withStore(async (store) => {
          const claim: StreamClaim = { task_id: uid('t'), consumer_node: 'transform', from_node: 'extract', batch_uid: 'b1', consumer_epoch: 1 }
          const results = await Promise.all(Array.from({ length: N }, () => store.claimStreamBatch({ ...claim }, T0)))
          assert.equal(results.filter(Boolean).length, 1)
        }))

      it(`${N} concurrent outboxEnqueue of one (topic, key, dedup_id): exactly one true, one row`, () =>
        withStore(async (store) => {
          const topic = uid('topic')
          const results = await Promise.all(
            Array.from({ length: N }, (_, i) => store.outboxEnqueue({ topic, key: 'k', value: `v${i}`, dedup_id: 'd' }, T0)),
          )
          assert.equal(results.filter(Boolean).length, 1)
          assert.equal((await store.outboxList()).filter((r) => r.topic === topic).length, 1)
        }))

      it(`${N} concurrent createTask of one id: exactly one succeeds, the rest reject with STORE_DUPLICATE_KEY`, () =>
        withStore(async (store) => {
          const id = uid('task')
          const results = await Promise.allSettled(
            Array.from({ length: N }, (_, i) => store.createTask(makeTaskDoc({ id, params: { i } }))),
          )
          assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1)
          for (const r of results) {
            if (r.status === 'rejected') assert.ok(isFlowkitError(r.reason, ErrorCode.DuplicateKey), String(r.reason))
          }
          assert.ok(await store.getTask(id))
        }))

      it(`${N} concurrent insertBatchMetrics of one row: none throws, one row`, () =>
        withStore(async (store) => {
          const row = { task_id: uid('t'), node_id: 'extract', batch_uid: 'b1', attempt_epoch: 1 }
          await Promise.all(Array.from({ length: N }, (_, i) => store.insertBatchMetrics([{ ...row, metrics: { i } }], T0)))
          assert.equal((await store.listBatchMetrics(row.task_id)).length, 1)
        }))

      it(`${N} concurrent first upsertArtifact of one key and epoch: none throws, all true, one row`, () =>
        withStore(async (store) => {
          const task = uid('t')
          const results = await Promise.all(
            Array.from({ length: N }, (_, i) => store.upsertArtifact(artifact({ task_id: task, meta: { i } }), T0)),
          )
          assert.deepEqual(results, Array(N).fill(true))
          assert.equal((await store.listArtifacts(task)).length, 1)
        }))
    })

    // ------------------------------------------------------------------ concurrency (single-document CAS)
    describe('concurrency: compare-and-set races', { skip: atomicConcurrency ? false : 'backend updates are not isolated' }, () => {
      it('concurrent artifact writes of different epochs leave the highest epoch stored', () =>
        withStore(async (store) => {
          const task = uid('t')
          await Promise.all(
            Array.from({ length: N }, (_, i) => store.upsertArtifact(artifact({ task_id: task, attempt_epoch: (i * 7) % N, meta: { i } }), T0 + i)),
          )
          const got = await store.getArtifact(task, 'extract', 'b1')
          assert.equal(got?.attempt_epoch, N - 1)
        }))

      it('concurrent outboxClaimDue never hands one row to two dispatchers', () =>
        withStore(async (store) => {
          await drainOutbox(store)
          const topic = uid('topic')
          for (let i = 0; i < N; i++) await store.outboxEnqueue({ topic, key: null, value: 'v', dedup_id: `d${i}` }, T0)
          const batches = await Promise.all(Array.from({ length: 4 }, () => store.outboxClaimDue(T0, N, T0 + 1000)))
          const ids = batches.flat().map((r) => r.id)
          assert.equal(new Set(ids).size, ids.length, 'no row claimed twice')
          assert.equal(ids.length, N, 'every due row claimed once')
        }))
    })
  })
}
