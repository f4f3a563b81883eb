import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryBus, type RoleHandler } from 'flowkit'
import { startRuntime, sourceHandler } from '../helpers/runtime.ts'

/** Counts the items of the batches it receives (rechunked lists or pulled metas). */
function counter(): RoleHandler {
  return {
    async processBatch(batch) {
      const items = batch.payload['items'] as unknown[] | undefined
      const meta = batch.payload['meta'] as { items?: unknown[] } | undefined
      const n = items?.length ?? meta?.items?.length ?? 0
      return { metrics: { count: n }, meta: { items: items ?? meta?.items ?? [] } }
    },
  }
}

const graph = {
  nodes: [
    { node_id: 'source', type: 'source' },
    {
      node_id: 'rechunk',
      type: 'counter',
      depends_on: ['source'],
      io: {
        start_when: 'first_batch',
        input_inline: { input_adapter: 'pull.from_artifacts.rechunk:size', input_args: { from_nodes: ['source'], size: 3, meta_list_key: 'items', poll_ms: 10 } },
      },
    },
    {
      node_id: 'sink',
      type: 'counter',
      depends_on: ['rechunk'],
      io: { start_when: 'first_batch', input_inline: { input_adapter: 'pull.from_artifacts', input_args: { from_node: 'rechunk', poll_ms: 10 } } },
    },
    { node_id: 'merge', type: 'coordinator_fn', depends_on: ['sink'], io: { fn: 'merge.generic', fn_args: { from_nodes: ['sink'], target: { key: 'all' } } } },
  ],
  edges_ex: [{ from: 'source', to: 'rechunk', mode: 'async', trigger: 'on_batch' }],
}

describe('bus chaos', () => {
  for (const seed of [1, 7, 42, 99, 1234]) {
    test(`S-009/S-010 a streaming DAG under duplication, jitter and reordering ends with exact counts (seed ${seed})`, async () => {
      const bus = new MemoryBus({
        chaos: {
          seed,
          rules: [
            { topicPrefix: 'status.', duplicate: 0.3, reorder: 0.2, delayMs: [0, 15] },
            { topicPrefix: 'cmd.', duplicate: 0.3, delayMs: [0, 15] },
          ],
        },
      })
      const rt = await startRuntime({
        bus,
        handlers: { source: sourceHandler(11, 4), counter: counter() },
        worker: { concurrency: 3 },
        workers: 2,
      })
      try {
        const id = await rt.coordinator.createTask({ graph })
        const t = await rt.coordinator.waitForTask(id, { timeoutMs: 30000 })
        assert.equal(t.status, 'finished')
        const stats = Object.fromEntries(t.nodes.map((n) => [n.node_id, n.stats['count']]))
        assert.deepEqual(stats, { source: 11, rechunk: 11, sink: 11, merge: undefined })
        for (const n of t.nodes) assert.equal(n.attempt_epoch, 1, `${n.node_id} ran once`)
        const parts = await rt.coordinator.listArtifacts(id, { nodeId: 'source' })
        assert.equal(parts.filter((a) => a.status === 'partial').length, 3, 'S-002: 11 items in batches of 4 = 3 partials')
        assert.equal(parts.filter((a) => a.status === 'complete').length, 1)
        const rech = (await rt.coordinator.listArtifacts(id, { nodeId: 'rechunk' })).filter((a) => a.status === 'partial')
        assert.equal(rech.length, 4, '11 items rechunked by 3 = 4 chunks')
        const values = rech.flatMap((a) => a.meta['items'] as number[]).sort((a, b) => a - b)
        assert.deepEqual(values, Array.from({ length: 11 }, (_, i) => i), 'every source item flowed through exactly once')
        const merged = (await rt.coordinator.listArtifacts(id, { nodeId: 'merge' }))[0]
        assert.equal((merged?.meta['all'] as unknown[] | undefined)?.length, 4)
      } finally {
        await rt.stop()
      }
    })
  }
})
