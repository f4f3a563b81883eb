/**
 * A rechunking consumer names its chunks `<node>:chunk-<n>`, and a retried consumer must get the
 * same items under the same ids: its streaming readers skip the ids they already read. Partials an
 * upstream writes in one round trip share a creation time; the store listed those by batch uid,
 * so a consumer that read them as they came and its retry, which read them all at once, got them
 * in different orders (uids that do not sort in write order: `b9`/`b10`, file names, hashes): the
 * chunk ids named other items, and a reader lost some and read others twice. Listings now keep a
 * writer's order (Store.listArtifacts).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryStore, SystemClock, type ArtifactWrite } from 'flowkit'
import { adapterBatches } from '../../src/worker/input.ts'
import { makeNodeSpec, makeNodeState, makeTaskDoc } from '../helpers/fixtures.ts'

const TASK = 't-rechunk'
const partial = (uid: string, items: number[]): ArtifactWrite => ({ task_id: TASK, node_id: 'src', batch_uid: uid, status: 'partial', meta: { items }, attempt_epoch: 1, worker_id: 'w1' })
const SPEC = { name: 'pull.from_artifacts.rechunk:size', fromNodes: ['src'], pollMs: 1, size: 2, metaListKey: 'items' }

test('a retried rechunking consumer gets the same items under the same chunk ids as the attempt that read the stream as it came', async () => {
  const store = new MemoryStore()
  const t0 = Date.now()
  await store.createTask(
    makeTaskDoc({
      id: TASK,
      graph: { schema_version: '1.0', nodes: [makeNodeSpec('src', 'src'), makeNodeSpec('c', 'c')], edges: [], edges_ex: [] },
      nodes: { src: makeNodeState('src', 'src', { status: 'running', attempt_epoch: 1 }), c: makeNodeState('c', 'c', { status: 'running', attempt_epoch: 1 }) },
      created_at_ms: t0,
    }),
  )
  const abort = new AbortController()
  const ctx = (epoch: number) => ({ store, clock: new SystemClock(), taskId: TASK, consumerNode: 'c', epoch, signal: abort.signal, maxBackoffMs: 5 })
  const chunks = (out: Map<string, unknown>, b: { batch_uid?: string | null; payload: Record<string, unknown> }) => out.set(b.batch_uid as string, b.payload['items'])
  try {
    // Attempt 1 reads as the upstream writes: `page-9` first, then `page-10` and `page-11` in one
    // round trip (one creation time), then the end.
    const first = new Map<string, unknown>()
    const gen = adapterBatches(ctx(1), SPEC)
    await store.upsertArtifacts([partial('page-9', [1, 2, 3])], t0)
    const c0 = await gen.next()
    chunks(first, c0.value as never)
    await store.upsertArtifacts([partial('page-10', [4, 5]), partial('page-11', [6])], t0)
    await store.upsertArtifact({ task_id: TASK, node_id: 'src', batch_uid: null, status: 'complete', meta: {}, attempt_epoch: 1, worker_id: 'w1' }, t0)
    for (let r = await gen.next(); r.done !== true; r = await gen.next()) chunks(first, r.value)
    // Attempt 2 (a retry) reads everything at once.
    const second = new Map<string, unknown>()
    for await (const b of adapterBatches(ctx(2), SPEC)) chunks(second, b)
    assert.deepEqual([...first], [['c:chunk-0', [1, 2]], ['c:chunk-1', [3, 4]], ['c:chunk-2', [5, 6]]])
    assert.deepEqual([...second], [...first])
  } finally {
    abort.abort()
  }
})
