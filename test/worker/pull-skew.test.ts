/**
 * A pulling consumer reads its upstream incrementally, by artifact time, with a window for clock
 * skew. When the upstream's attempt is replaced by one on a worker whose clock is further behind
 * than that window, the replacement's complete artifact falls before the window: the consumer used
 * to poll for ever (seen in the reliability suite's `everything` scenario, a worker 120 s behind).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryStore, SystemClock, type ArtifactWrite } from 'flowkit'
import { pullArtifacts, STREAM_SKEW_WINDOW_MS } from '../../src/worker/input.ts'
import { makeNodeSpec, makeNodeState, makeTaskDoc } from '../helpers/fixtures.ts'

const part = (uid: string | null, epoch: number, worker: string): ArtifactWrite => ({
  task_id: 't-skew',
  node_id: 'src',
  batch_uid: uid,
  status: uid === null ? 'complete' : 'partial',
  meta: { items: [uid] },
  attempt_epoch: epoch,
  worker_id: worker,
})

async function drain(gen: AsyncGenerator<unknown>, timeoutMs: number): Promise<number> {
  let n = 0
  const until = Date.now() + timeoutMs
  for (;;) {
    const next = await Promise.race([gen.next(), new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), Math.max(0, until - Date.now())))])
    if (next === 'timeout') throw new Error(`the consumer did not end within ${timeoutMs} ms (${n} read)`)
    if (next.done) return n
    n++
  }
}

for (const how of ['its status says finished', 'its replacement is seen in a listing'] as const) {
  test(`a consumer ends when the upstream's replacement attempt ran on a worker far behind in time (${how})`, async () => {
    const store = new MemoryStore()
    const now = Date.now()
    const task = makeTaskDoc({
      id: 't-skew',
      graph: { schema_version: '1.0', nodes: [makeNodeSpec('src', 'src'), makeNodeSpec('map', 'map')], edges: [], edges_ex: [] },
      nodes: { src: makeNodeState('src', 'src', { status: 'running', attempt_epoch: 2 }), map: makeNodeState('map', 'map', { status: 'running', attempt_epoch: 2 }) },
      created_at_ms: now,
    })
    await store.createTask(task)
    // Attempt 1 of the upstream (a worker on time) wrote two partials, then its worker died.
    await store.upsertArtifacts([part('s0', 1, 'w2'), part('s1', 1, 'w2')], now)
    const abort = new AbortController()
    const gen = pullArtifacts(
      { store, clock: new SystemClock(), taskId: 't-skew', consumerNode: 'map', epoch: 2, signal: abort.signal, maxBackoffMs: 20 },
      { name: 'pull.from_artifacts', fromNodes: ['src'], pollMs: 5 },
    )
    const first = await gen.next()
    assert.equal(first.done, false)
    // Attempt 2 runs on a worker 120 s behind: s2 is new (outside the window), its complete too.
    const behind = now - 2 * STREAM_SKEW_WINDOW_MS
    const rewrite = how === 'its replacement is seen in a listing' ? [part('s0', 2, 'w3'), part('s1', 2, 'w3')] : []
    await store.upsertArtifacts([...rewrite, part('s2', 2, 'w3'), part(null, 2, 'w3')], behind)
    if (how === 'its status says finished') {
      await store.writeSnapshot({ ...task, v: 1, nodes: { ...task.nodes, src: makeNodeState('src', 'src', { status: 'finished', attempt_epoch: 2 }) } }, behind)
    }
    try {
      const rest = await drain(gen, 5000)
      // s1 of attempt 1 (or 2), and s2 of attempt 2 (its only new batch), then the end.
      assert.ok(rest >= 1, `read ${rest} more`)
    } finally {
      abort.abort()
    }
  })
}
