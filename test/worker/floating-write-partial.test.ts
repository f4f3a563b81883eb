/**
 * A handler that calls `ctx.artifacts.writePartial` for its batch without awaiting it (a floating
 * promise) keeps its meta: the worker does not write its own artifact for that uid over it, and
 * the BATCH_OK waits for the handler's write. Before, the uid counted as written only once the
 * write had resolved, so the run wrote its default `{metrics}` after the handler's, which won:
 * a downstream reader got `{metrics}` instead of the handler's output, silently (audit of
 * 2026-12-07). A floating write that fails fails the run (retried), not the process.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { RoleHandler, Store } from 'flowkit'
import { startRuntime } from '../helpers/runtime.ts'
import { type Method, overrideStore } from '../helpers/store-proxy.ts'

const REGIONS = ['eu', 'us', 'asia']

const exporter: RoleHandler = {
  async *iterBatches() {
    for (const r of REGIONS) yield { batch_uid: r, payload: { r } }
  },
  async processBatch(batch, ctx) {
    void ctx.artifacts.writePartial(batch.batch_uid as string, { uri: `s3://x/${batch.batch_uid}.csv` })
    return { metrics: { files: 1 } }
  },
}

const GRAPH = {
  nodes: [
    { node_id: 'export', type: 'exporter' },
    { node_id: 'read', type: 'reader', depends_on: ['export'], io: { input_inline: { input_adapter: 'pull.from_artifacts', input_args: { from_nodes: ['export'] } } } },
  ],
}

function reading(seen: unknown[]): RoleHandler {
  return {
    async processBatch(b) {
      seen.push((b.payload as { meta: unknown }).meta)
      return {}
    },
  }
}

test("a writePartial the handler does not await keeps the handler's meta (not replaced by the run's own artifact)", async () => {
  const seen: unknown[] = []
  const rt = await startRuntime({ handlers: { exporter, reader: reading(seen) } })
  try {
    const id = await rt.coordinator.createTask({ graph: GRAPH })
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })
    assert.equal(t.status, 'finished')
    const partial = (await rt.coordinator.listArtifacts(id, { nodeId: 'export' })).filter((a) => a.status === 'partial')
    assert.deepEqual(Object.fromEntries(partial.map((a) => [a.batch_uid, a.meta])), Object.fromEntries(REGIONS.map((r) => [r, { uri: `s3://x/${r}.csv` }])))
    assert.deepEqual(seen, REGIONS.map((r) => ({ uri: `s3://x/${r}.csv` })), 'the reader got the handler metas')
    assert.deepEqual(t.nodes.find((n) => n.node_id === 'export')?.stats, { files: 3 })
  } finally {
    await rt.stop()
  }
})

test('a writePartial the handler does not await, failing: the run fails (and is retried), the process does not crash', async () => {
  const seen: unknown[] = []
  const failing = (s: Store): Store =>
    overrideStore(s, {
      upsertArtifacts: (original: Method) => async (arts: unknown, now: unknown) => {
        if ((arts as { batch_uid: string | null; attempt_epoch: number }[]).some((a) => a.batch_uid === 'us' && a.attempt_epoch === 1)) throw new Error('disk full')
        return original(arts, now)
      },
    })
  const rt = await startRuntime({ handlers: { exporter, reader: reading(seen) }, workerStore: failing })
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: GRAPH.nodes.map((n) => ({ ...n, retry_policy: { max: 2, backoff_sec: 0 } })) } })
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })
    assert.equal(t.status, 'finished', JSON.stringify(t.nodes.map((n) => n.last_error)))
    const exp = t.nodes.find((n) => n.node_id === 'export')
    assert.equal(exp?.attempt_epoch, 2, 'the first attempt failed')
    assert.match(exp?.last_error?.error ?? '', /disk full/)
    assert.equal(exp?.last_error?.attempt_epoch, 1)
    assert.deepEqual(exp?.stats, { files: 3 })
    assert.deepEqual(seen, REGIONS.map((r) => ({ uri: `s3://x/${r}.csv` })))
  } finally {
    await rt.stop()
  }
})
