/**
 * A pulling consumer reads a running upstream incrementally: each poll lists what is new since the
 * newest artifact it saw, and only now and then (STREAM_WIDE_EVERY_MS) looks back the whole skew
 * window. Every poll used to look back a minute: a stream shorter than that was listed whole at
 * every poll, so the consumer's work grew with the square of the stream (20,000 batches: 31 s,
 * 10 million artifacts listed, against 2.7 s for the stream alone).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryStore, SystemClock, type ArtifactWrite } from 'flowkit'
import { pullArtifacts } from '../../src/worker/input.ts'
import { overrideStore } from '../helpers/store-proxy.ts'
import { makeNodeSpec, makeNodeState, makeTaskDoc } from '../helpers/fixtures.ts'

const partial = (i: number): ArtifactWrite => ({ task_id: 't-inc', node_id: 'src', batch_uid: `b${i}`, status: 'partial', meta: { i }, attempt_epoch: 1, worker_id: 'w1' })

test('a consumer keeping up with a stream lists each new artifact about once, not the whole stream at every poll', async () => {
  const inner = new MemoryStore()
  let listed = 0
  const store = overrideStore(inner, {
    listArtifacts: (orig) => async (...args) => {
      const out = (await orig(...args)) as unknown[]
      listed += out.length
      return out
    },
  })
  const t0 = Date.now()
  await inner.createTask(
    makeTaskDoc({
      id: 't-inc',
      graph: { schema_version: '1.0', nodes: [makeNodeSpec('src', 'src'), makeNodeSpec('map', 'map')], edges: [], edges_ex: [] },
      nodes: { src: makeNodeState('src', 'src', { status: 'running', attempt_epoch: 1 }), map: makeNodeState('map', 'map', { status: 'running', attempt_epoch: 1 }) },
      created_at_ms: t0,
    }),
  )
  const abort = new AbortController()
  const gen = pullArtifacts(
    { store, clock: new SystemClock(), taskId: 't-inc', consumerNode: 'map', epoch: 1, signal: abort.signal, maxBackoffMs: 5 },
    { name: 'pull.from_artifacts', fromNodes: ['src'], pollMs: 1 },
  )
  const n = 2000
  try {
    // One batch a millisecond (by the writer's clock), read as it comes.
    for (let i = 0; i < n; i++) {
      await inner.upsertArtifacts([partial(i)], t0 + i)
      const next = await gen.next()
      assert.equal(next.done, false)
      assert.equal((next.value as { batch_uid: string }).batch_uid, `b${i}`)
    }
  } finally {
    abort.abort()
  }
  // Whole-window polls would list n²/2 = 2,000,000; incremental ones about 2 per poll.
  assert.ok(listed <= 5 * n, `${listed} artifacts listed for a stream of ${n}`)
})

test('a pull input whose task or upstream node the store does not know ends (a stray or forged START held its worker slot for ever)', async () => {
  const store = new MemoryStore()
  await store.createTask(
    makeTaskDoc({
      id: 't-known',
      graph: { schema_version: '1.0', nodes: [makeNodeSpec('map', 'map')], edges: [], edges_ex: [] },
      nodes: { map: makeNodeState('map', 'map', { status: 'running', attempt_epoch: 1 }) },
    }),
  )
  const abort = new AbortController()
  try {
    for (const [taskId, from] of [['ghost', 'up'], ['t-known', 'nowhere']] as const) {
      const got: unknown[] = []
      const gen = pullArtifacts(
        { store, clock: new SystemClock(), taskId, consumerNode: 'map', epoch: 1, signal: abort.signal, maxBackoffMs: 5 },
        { name: 'pull.from_artifacts', fromNodes: [from], pollMs: 1 },
      )
      for await (const a of gen) got.push(a)
      assert.deepEqual(got, [], `${taskId}/${from}`)
    }
  } finally {
    abort.abort()
  }
})
