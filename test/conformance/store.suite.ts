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
 * Concurrency cases that rest on unique-index inserts run on every backend. Compare-and-set
 * races (two updates of one document) run only with `atomicConcurrency` (default true): turn it
 * off for a backend whose single-document updates are not isolated (FerretDB 1.x).
 */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { describe, it } from 'node:test'
import { ErrorCode, isFlowkitError } from '../../src/errors.ts'
import type { ErrorCode as ErrorCodeT } from '../../src/errors.ts'
import type {
  ArtifactDoc,
  ArtifactWrite,
  NodePatch,
  OutboxRow,
  Store,
  StreamClaim,
  TaskDoc,
  TaskPatch,
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
            ['transitionNode', () => store.transitionNode(t.id, 'extract', {}, { status: 'running' }, T0)],
            ['updateTask', () => store.updateTask(t.id, {}, { status: 'running' }, T0)],
            ['hasEvent', () => store.hasEvent('k')],
            ['recordEventOnce', () => store.recordEventOnce('k', { task_id: t.id, node_id: 'extract', kind: 'x' }, T0)],
            [
              'upsertBatchMetrics',
              () => store.upsertBatchMetrics({ task_id: t.id, node_id: 'extract', batch_uid: 'b', attempt_epoch: 1, metrics: {} }, T0),
            ],
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
          const got = await store.transitionNode(t.id, 'extract', {}, { stats: { a: undefined, b: [undefined] } }, T0)
          assert.deepEqual(got?.nodes['extract']?.stats, { b: [null] })
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
          const moved = await store.transitionNode(t.id, 'extract', {}, { stats: odd() }, T0)
          assert.deepEqual(moved?.nodes['extract']?.stats, asJson)
          assert.deepEqual((await store.updateTask(t.id, {}, { vars: odd() }, T0))?.coordinator.vars, asJson)
          await store.upsertArtifact(artifact({ task_id: t.id, meta: odd() }), T0)
          assert.deepEqual((await store.getArtifact(t.id, 'extract', 'b1'))?.meta, asJson)
          const row = { task_id: t.id, node_id: 'extract', batch_uid: 'b1', attempt_epoch: 1 }
          await store.upsertBatchMetrics({ ...row, metrics: odd() }, T0)
          assert.deepEqual(await store.upsertBatchMetrics({ ...row, metrics: {} }, T0 + 1), asJson)
          assert.deepEqual(await store.getTask(t.id), { ...got!, nodes: moved!.nodes, coordinator: { ...got!.coordinator, vars: asJson }, updated_at_ms: T0 })
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

      it('purgeBefore deletes old ledger rows and old sent outbox rows only', () =>
        withStore(async (store) => {
          const k = uid('purge')
          // far in the past, so rows of concurrent tests (recorded at realistic times) are untouched
          await store.recordEventOnce(`${k}-old`, { task_id: k, node_id: 'n', kind: 'x' }, 1_000)
          await store.recordEventOnce(`${k}-new`, { task_id: k, node_id: 'n', kind: 'x' }, 9_000)
          await store.outboxEnqueue({ topic: 't', key: k, value: 'v', dedup_id: `${k}-sent` }, 1_000)
          await store.outboxEnqueue({ topic: 't', key: k, value: 'v', dedup_id: `${k}-pending` }, 1_000)
          const sentId = outboxId('t', k, `${k}-sent`)
          await store.outboxMarkSent(sentId, 2_000)
          const res = await store.purgeBefore(5_000)
          assert.ok(res.events >= 1 && res.outbox >= 1)
          assert.equal(await store.hasEvent(`${k}-old`), false)
          assert.equal(await store.hasEvent(`${k}-new`), true)
          const left = (await store.outboxList({ limit: 100_000 })).filter((r) => r.key === k).map((r) => r.dedup_id)
          assert.deepEqual(left, [`${k}-pending`], 'pending rows are kept')
        }))

      it('getBatchMetrics reads what upsertBatchMetrics wrote (null when absent)', () =>
        withStore(async (store) => {
          const task = `t-${randomUUID()}`
          assert.equal(await store.getBatchMetrics(task, 'n', 'b1'), null)
          await store.upsertBatchMetrics({ task_id: task, node_id: 'n', batch_uid: 'b1', attempt_epoch: 1, metrics: { count: 2, tag: 'x' } }, 1)
          assert.deepEqual(await store.getBatchMetrics(task, 'n', 'b1'), { count: 2, tag: 'x' })
          await store.upsertBatchMetrics({ task_id: task, node_id: 'n', batch_uid: 'b1', attempt_epoch: 2, metrics: { count: 3 } }, 2)
          assert.deepEqual(await store.getBatchMetrics(task, 'n', 'b1'), { count: 3 })
          assert.equal(await store.getBatchMetrics(task, 'n', 'b2'), null)
          await store.upsertBatchMetrics({ task_id: task, node_id: 'n', batch_uid: 'b2', attempt_epoch: 1, metrics: { count: 1 } }, 3)
          await store.upsertBatchMetrics({ task_id: task, node_id: 'other', batch_uid: 'b1', attempt_epoch: 1, metrics: { count: 9 } }, 3)
          const rows = (await store.listBatchMetrics(task, 'n')).sort((a, b) => a.batch_uid.localeCompare(b.batch_uid))
          assert.deepEqual(rows, [{ batch_uid: 'b1', metrics: { count: 3 } }, { batch_uid: 'b2', metrics: { count: 1 } }])
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
          await store.updateTask(t.id, {}, { cancelled: true }, 5)
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

    // ------------------------------------------------------------------ transitionNode
    describe('transitionNode', () => {
      it('applies the patch when the status and epoch guard hold; returns the updated task', () =>
        withStore(async (store) => {
          const t = await seed(store)
          const lease = { worker_id: 'w1', lease_id: 'l1', deadline_ts_ms: T0 + 30_000 }
          const got = await store.transitionNode(
            t.id,
            'extract',
            { status: 'queued', epoch: 0 },
            { status: 'running', attempt_epoch: 1, lease, dispatched_at_ms: T0 + 10 },
            T0 + 10,
          )
          const expected = structuredClone(t)
          Object.assign(expected.nodes['extract']!, { status: 'running', attempt_epoch: 1, lease, dispatched_at_ms: T0 + 10 })
          expected.updated_at_ms = T0 + 10
          assert.deepEqual(got, expected)
          assert.deepEqual(await store.getTask(t.id), expected)
        }))

      it('patches the optional NodeState fields (cancel_deadline_ms, resends) too', () =>
        withStore(async (store) => {
          const t = await seed(store)
          let got = await store.transitionNode(t.id, 'extract', {}, { status: 'cancelling', cancel_deadline_ms: T0 + 5, resends: 2 }, T0)
          assert.deepEqual([got?.nodes['extract']?.cancel_deadline_ms, got?.nodes['extract']?.resends], [T0 + 5, 2])
          got = await store.transitionNode(t.id, 'extract', { status: 'cancelling' }, { status: 'cancelled', cancel_deadline_ms: null }, T0 + 1)
          assert.equal(got?.nodes['extract']?.cancel_deadline_ms, null)
          assert.deepEqual(await store.getTask(t.id), got)
        }))

      it('accepts a list of statuses in the guard, and no guard at all', () =>
        withStore(async (store) => {
          const t = await seed(store)
          const r1 = await store.transitionNode(t.id, 'extract', { status: ['deferred', 'queued'] }, { status: 'running' }, T0 + 1)
          assert.equal(r1?.nodes['extract']?.status, 'running')
          const r2 = await store.transitionNode(t.id, 'extract', {}, { status: 'finished', finished_at_ms: T0 + 2 }, T0 + 2)
          assert.equal(r2?.nodes['extract']?.status, 'finished')
          assert.equal(r2?.nodes['extract']?.finished_at_ms, T0 + 2)
          assert.equal(r2?.updated_at_ms, T0 + 2)
        }))

      it('a failed guard (status, epoch, or either of both) returns null and changes nothing', () =>
        withStore(async (store) => {
          const t = await seed(store)
          const before = await store.getTask(t.id)
          const patch: NodePatch = { status: 'running', attempt_epoch: 5 }
          assert.equal(await store.transitionNode(t.id, 'extract', { status: 'running' }, patch, T0 + 1), null)
          assert.equal(await store.transitionNode(t.id, 'extract', { status: ['running', 'deferred'] }, patch, T0 + 1), null)
          assert.equal(await store.transitionNode(t.id, 'extract', { status: [] }, patch, T0 + 1), null)
          assert.equal(await store.transitionNode(t.id, 'extract', { epoch: 1 }, patch, T0 + 1), null)
          assert.equal(await store.transitionNode(t.id, 'extract', { status: 'queued', epoch: 1 }, patch, T0 + 1), null)
          assert.equal(await store.transitionNode(t.id, 'extract', { status: 'running', epoch: 0 }, patch, T0 + 1), null)
          assert.deepEqual(await store.getTask(t.id), before)
        }))

      it('a compare-and-set succeeds once: the same guarded transition a second time returns null', () =>
        withStore(async (store) => {
          const t = await seed(store)
          const guard = { status: 'queued', epoch: 0 } as const
          assert.ok(await store.transitionNode(t.id, 'extract', guard, { status: 'running', attempt_epoch: 1 }, T0 + 1))
          assert.equal(await store.transitionNode(t.id, 'extract', guard, { status: 'running', attempt_epoch: 1 }, T0 + 2), null)
          const after = await store.getTask(t.id)
          assert.equal(after?.nodes['extract']?.attempt_epoch, 1)
          assert.equal(after?.updated_at_ms, T0 + 1)
        }))

      it('unknown task or node returns null, also for node ids named like Object.prototype members', () =>
        withStore(async (store) => {
          const t = await seed(store)
          const before = await store.getTask(t.id)
          assert.equal(await store.transitionNode(uid('missing'), 'extract', {}, { status: 'running' }, T0), null)
          for (const nodeId of ['nope', 'constructor', '__proto__', 'toString', 'hasOwnProperty', 'x'.repeat(128)]) {
            assert.equal(await store.transitionNode(t.id, nodeId, {}, { status: 'running' }, T0), null, nodeId)
          }
          assert.deepEqual(await store.getTask(t.id), before)
        }))

      it('rejects node ids outside [A-Za-z0-9_-]{1,128} with INVALID_KEY (task or not)', () =>
        withStore(async (store) => {
          const t = await seed(store)
          const before = await store.getTask(t.id)
          for (const bad of ['a.b', 'extract.status', '$set', '', 'x'.repeat(129), 'é', 'a b', 'a/b', 'nodes.extract']) {
            await assert.rejects(store.transitionNode(t.id, bad, {}, { status: 'running' }, T0), rejectsWith(ErrorCode.InvalidKey), bad)
            await assert.rejects(store.transitionNode(uid('missing'), bad, {}, { status: 'running' }, T0), rejectsWith(ErrorCode.InvalidKey), bad)
          }
          assert.deepEqual(await store.getTask(t.id), before)
        }))

      it('rejects patch fields that are not NodeState fields (or are node_id/type) with INVALID_KEY', () =>
        withStore(async (store) => {
          const t = await seed(store)
          const before = await store.getTask(t.id)
          for (const bad of [{ node_id: 'x' }, { type: 'x' }, { 'status.x': 1 }, { $inc: 1 }, { bogus: 1 }]) {
            await assert.rejects(
              store.transitionNode(t.id, 'extract', {}, bad as unknown as NodePatch, T0),
              rejectsWith(ErrorCode.InvalidKey),
              JSON.stringify(bad),
            )
          }
          assert.deepEqual(await store.getTask(t.id), before)
        }))

      it('patch values replace nested objects wholesale; other nodes and fields are untouched', () =>
        withStore(async (store) => {
          const t = await seed(store)
          await store.transitionNode(t.id, 'extract', {}, { lease: { worker_id: 'w1', lease_id: 'l1' }, stats: { a: 1, b: 2 } }, T0 + 1)
          const got = await store.transitionNode(t.id, 'extract', {}, { lease: {}, stats: { c: 3 } }, T0 + 2)
          assert.deepEqual(got?.nodes['extract']?.lease, {})
          assert.deepEqual(got?.nodes['extract']?.stats, { c: 3 })
          assert.deepEqual(got?.nodes['transform'], t.nodes['transform'])
          assert.deepEqual(got?.params, t.params)
          assert.deepEqual(got?.graph, t.graph)
          assert.equal(got?.created_at_ms, t.created_at_ms)
        }))

      it('patch keys holding undefined are ignored; null is stored as null; an empty patch only bumps updated_at_ms', () =>
        withStore(async (store) => {
          const t = await seed(store)
          await store.transitionNode(t.id, 'extract', {}, { end_reason: 'x', next_retry_at_ms: 5 }, T0 + 1)
          const got = await store.transitionNode(
            t.id,
            'extract',
            {},
            { status: 'deferred', end_reason: undefined, next_retry_at_ms: null },
            T0 + 2,
          )
          assert.equal(got?.nodes['extract']?.status, 'deferred')
          assert.equal(got?.nodes['extract']?.end_reason, 'x')
          assert.equal(got?.nodes['extract']?.next_retry_at_ms, null)
          const before = (await store.getTask(t.id))!
          const bumped = await store.transitionNode(t.id, 'extract', { status: 'deferred' }, {}, T0 + 3)
          assert.deepEqual(bumped, { ...before, updated_at_ms: T0 + 3 })
        }))

      it('copies the patch in and the result out', () =>
        withStore(async (store) => {
          const t = await seed(store)
          const lease = { worker_id: 'w1', lease_id: 'l1', deadline_ts_ms: 1 }
          const stats: Record<string, unknown> = { rows: [1, 2] }
          const got = (await store.transitionNode(t.id, 'extract', {}, { lease, stats }, T0 + 1))!
          const snapshot = await store.getTask(t.id)
          lease.worker_id = 'mutated'
          ;(stats['rows'] as number[]).push(3)
          got.nodes['extract']!.status = 'failed'
          got.nodes['extract']!.lease.lease_id = 'mutated'
          assert.deepEqual(await store.getTask(t.id), snapshot)
          assert.equal(snapshot?.nodes['extract']?.lease.worker_id, 'w1')
        }))
    })

    // ------------------------------------------------------------------ updateTask
    describe('updateTask', () => {
      it('maps patch fields onto the task (vars/cancelled/cancel_reason under coordinator) when the guard holds', () =>
        withStore(async (store) => {
          const t = await seed(store)
          const patch: TaskPatch = {
            status: 'cancelling',
            result: { out: [1, 2] },
            error: 'boom',
            finished_at_ms: T0 + 9,
            vars: { a: 1, nested: { b: 'c' } },
            cancelled: true,
            cancel_reason: 'user',
          }
          const got = await store.updateTask(t.id, { status: ['queued', 'running'] }, patch, T0 + 9)
          const expected: TaskDoc = {
            ...structuredClone(t),
            status: 'cancelling',
            result: { out: [1, 2] },
            error: 'boom',
            finished_at_ms: T0 + 9,
            coordinator: { vars: { a: 1, nested: { b: 'c' } }, cancelled: true, cancel_reason: 'user' },
            updated_at_ms: T0 + 9,
          }
          assert.deepEqual(got, expected)
          assert.deepEqual(await store.getTask(t.id), expected)
        }))

      it('a failed guard or unknown task returns null and changes nothing; no guard always applies', () =>
        withStore(async (store) => {
          const t = await seed(store)
          const before = await store.getTask(t.id)
          assert.equal(await store.updateTask(t.id, { status: ['running'] }, { status: 'finished' }, T0 + 1), null)
          assert.equal(await store.updateTask(t.id, { status: [] }, { status: 'finished' }, T0 + 1), null)
          assert.equal(await store.updateTask(uid('missing'), {}, { status: 'finished' }, T0 + 1), null)
          assert.deepEqual(await store.getTask(t.id), before)
          const got = await store.updateTask(t.id, {}, { status: 'running' }, T0 + 2)
          assert.equal(got?.status, 'running')
          assert.equal(got?.updated_at_ms, T0 + 2)
        }))

      it('vars are replaced wholesale; undefined fields are ignored; null is stored', () =>
        withStore(async (store) => {
          const t = await seed(store, { coordinator: { vars: { keep: 1, drop: 2 }, cancelled: false, cancel_reason: null } })
          await store.updateTask(t.id, {}, { error: 'e1', cancel_reason: 'r1' }, T0 + 1)
          const got = await store.updateTask(
            t.id,
            {},
            { vars: { only: true }, error: null, cancel_reason: undefined, result: undefined, status: undefined },
            T0 + 2,
          )
          assert.deepEqual(got?.coordinator, { vars: { only: true }, cancelled: false, cancel_reason: 'r1' })
          assert.equal(got?.error, null)
          assert.equal(got?.result, null)
          assert.equal(got?.status, 'queued')
          assert.deepEqual(got?.nodes, t.nodes)
        }))

      it('rejects unknown patch fields with INVALID_KEY', () =>
        withStore(async (store) => {
          const t = await seed(store)
          const before = await store.getTask(t.id)
          for (const bad of [{ nodes: {} }, { 'coordinator.vars': {} }, { id: 'x' }]) {
            await assert.rejects(store.updateTask(t.id, {}, bad as unknown as TaskPatch, T0), rejectsWith(ErrorCode.InvalidKey))
          }
          assert.deepEqual(await store.getTask(t.id), before)
        }))

      it('copies the patch in and the result out', () =>
        withStore(async (store) => {
          const t = await seed(store)
          const vars: Record<string, unknown> = { list: [1] }
          const got = (await store.updateTask(t.id, {}, { vars }, T0 + 1))!
          ;(vars['list'] as number[]).push(2)
          got.coordinator.vars['x'] = 1
          assert.deepEqual((await store.getTask(t.id))?.coordinator.vars, { list: [1] })
        }))
    })

    // ------------------------------------------------------------------ event ledger
    describe('event ledger', () => {
      it('records a key once; hasEvent sees it', () =>
        withStore(async (store) => {
          const k1 = uid('ev')
          const k2 = uid('ev')
          const info = { task_id: uid('t'), node_id: 'extract', kind: 'batch' }
          assert.equal(await store.hasEvent(k1), false)
          assert.equal(await store.recordEventOnce(k1, info, T0), true)
          assert.equal(await store.hasEvent(k1), true)
          assert.equal(await store.recordEventOnce(k1, info, T0 + 1), false)
          assert.equal(await store.recordEventOnce(k1, { ...info, kind: 'done' }, T0 + 2), false)
          assert.equal(await store.hasEvent(k2), false)
          assert.equal(await store.recordEventOnce(k2, info, T0), true)
        }))
    })

    // ------------------------------------------------------------------ batch metrics
    describe('batch metrics', () => {
      it('one row per (task, node, batch_uid): returns the replaced metrics, null when new', () =>
        withStore(async (store) => {
          const task = uid('t')
          const row = { task_id: task, node_id: 'extract', batch_uid: 'b1', attempt_epoch: 1 }
          assert.equal(await store.upsertBatchMetrics({ ...row, metrics: { rows: 1 } }, T0), null)
          assert.deepEqual(await store.upsertBatchMetrics({ ...row, metrics: { rows: 2, x: [1] } }, T0 + 1), { rows: 1 })
          assert.deepEqual(await store.upsertBatchMetrics({ ...row, attempt_epoch: 2, metrics: {} }, T0 + 2), { rows: 2, x: [1] })
          assert.deepEqual(await store.upsertBatchMetrics({ ...row, metrics: { rows: 9 } }, T0 + 3), {})
          assert.equal(await store.upsertBatchMetrics({ ...row, batch_uid: 'b2', metrics: { rows: 1 } }, T0), null)
          assert.equal(await store.upsertBatchMetrics({ ...row, node_id: 'transform', metrics: { rows: 1 } }, T0), null)
          assert.equal(await store.upsertBatchMetrics({ ...row, task_id: uid('t'), metrics: { rows: 1 } }, T0), null)
        }))

      it('copies metrics in', () =>
        withStore(async (store) => {
          const metrics: Record<string, unknown> = { rows: 1, list: [1] }
          const row = { task_id: uid('t'), node_id: 'extract', batch_uid: 'b1', attempt_epoch: 1 }
          await store.upsertBatchMetrics({ ...row, metrics }, T0)
          metrics['rows'] = 99
          ;(metrics['list'] as number[]).push(2)
          assert.deepEqual(await store.upsertBatchMetrics({ ...row, metrics: {} }, T0 + 1), { rows: 1, list: [1] })
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

      it('listArtifacts orders by created_at, then batch_uid (code point order, complete last), then insertion', () =>
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
          await w('transform', 'b1', 100) // same created_at and batch_uid as the next: insertion order decides
          await w('extract', 'b1', 100)
          await w('extract', 'a0', 200)
          await w('extract', 'z9', 50)
          await store.upsertArtifact(artifact({ task_id: other, batch_uid: 'a' }), 1)
          // an update keeps its place (created_at kept)
          await w('extract', 'b2', 300)
          const order = (await store.listArtifacts(task)).map((a) => `${a.node_id}/${a.batch_uid}`)
          assert.deepEqual(order, [
            'extract/z9',
            'extract/b-\uFFFD',
            'extract/b-\u{1F600}',
            'transform/b1',
            'extract/b1',
            'extract/b10',
            'extract/b2',
            'extract/null',
            'extract/a0',
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
    })

    // ------------------------------------------------------------------ concurrency (unique inserts: every backend)
    describe('concurrency: unique-key inserts', () => {
      it(`${N} concurrent recordEventOnce of one key: exactly one true`, () =>
        withStore(async (store) => {
          const key = uid('ev')
          const results = await Promise.all(
            Array.from({ length: N }, (_, i) => store.recordEventOnce(key, { task_id: 't', node_id: 'n', kind: `k${i}` }, T0)),
          )
          assert.equal(results.filter(Boolean).length, 1)
          assert.equal(await store.hasEvent(key), true)
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

      it(`${N} concurrent first upsertBatchMetrics of one row: none throws, exactly one sees null`, () =>
        withStore(async (store) => {
          const row = { task_id: uid('t'), node_id: 'extract', batch_uid: 'b1', attempt_epoch: 1 }
          const results = await Promise.all(
            Array.from({ length: N }, (_, i) => store.upsertBatchMetrics({ ...row, metrics: { i } }, T0)),
          )
          assert.equal(results.filter((r) => r === null).length, 1)
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
      it(`${N} concurrent transitionNode with the same guard: exactly one wins, and its patch is stored`, () =>
        withStore(async (store) => {
          const t = await seed(store)
          const results = await Promise.all(
            Array.from({ length: N }, (_, i) =>
              store.transitionNode(
                t.id,
                'extract',
                { status: 'queued', epoch: 0 },
                { status: 'running', attempt_epoch: 1, lease: { worker_id: `w${i}`, lease_id: `l${i}` } },
                T0 + i,
              ),
            ),
          )
          const winners = results.filter((r) => r !== null)
          assert.equal(winners.length, 1)
          const stored = await store.getTask(t.id)
          assert.deepEqual(stored, winners[0])
          assert.equal(stored?.nodes['extract']?.attempt_epoch, 1)
        }))

      it(`${N} concurrent updateTask with the same guard: exactly one wins`, () =>
        withStore(async (store) => {
          const t = await seed(store)
          const results = await Promise.all(
            Array.from({ length: N }, (_, i) => store.updateTask(t.id, { status: ['queued'] }, { status: 'running', vars: { winner: i } }, T0 + i)),
          )
          const winners = results.filter((r) => r !== null)
          assert.equal(winners.length, 1)
          assert.deepEqual(await store.getTask(t.id), winners[0])
        }))

      it('concurrent transitions of different nodes of one task are all kept (no lost update)', () =>
        withStore(async (store) => {
          const nodes = Object.fromEntries(Array.from({ length: N }, (_, i) => [`n${i}`, makeNodeState(`n${i}`, 'processor')]))
          const t = await seed(store, { nodes })
          const results = await Promise.all(
            Object.keys(nodes).map((n, i) => store.transitionNode(t.id, n, { status: 'queued', epoch: 0 }, { status: 'running', attempt_epoch: 1 + i }, T0)),
          )
          assert.ok(results.every((r) => r !== null))
          const stored = (await store.getTask(t.id))!
          Object.keys(nodes).forEach((n, i) => {
            assert.equal(stored.nodes[n]?.status, 'running', n)
            assert.equal(stored.nodes[n]?.attempt_epoch, 1 + i, n)
          })
        }))

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
