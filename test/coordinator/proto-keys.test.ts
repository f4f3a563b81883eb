/**
 * Keys that come from users and become keys of plain objects: `__proto__` would set the object's
 * prototype instead of adding a key. A node id `__proto__` is refused everywhere a node id is
 * checked; a batch uid `__proto__` (any string is a batch uid) is counted like any other.
 * Runs on the memory runtime and, with FLOWKIT_E2E_RUNTIME=real, on Kafka + the MongoDB server.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { GraphBuilder, type RoleHandler } from '../../src/index.ts'
import { assertNodeId } from '../../src/ports/store-rules.ts'
import { startRuntime } from '../helpers/runtime.ts'

describe('__proto__ as a user key', () => {
  test('a node id "__proto__" is refused at submission, by the builder and by the stores\' check', async () => {
    const rt = await startRuntime({ handlers: { step: { processBatch: async () => ({}) } } })
    try {
      await assert.rejects(rt.coordinator.createTask({ graph: { nodes: [{ node_id: '__proto__', type: 'step' }, { node_id: 'after', type: 'step', depends_on: ['__proto__'] }] } }), (err: Error & { code?: string }) => {
        assert.equal(err.code, 'GRAPH_INVALID_NODE_ID')
        assert.match(err.message, /invalid node_id "__proto__".*not "__proto__"/)
        return true
      })
    } finally {
      await rt.stop()
    }
    assert.throws(() => new GraphBuilder().node('__proto__', 'step'), /invalid node id "__proto__"/)
    assert.throws(() => assertNodeId('__proto__'), /__proto__/)
    // Names that only look alike stay valid.
    assert.doesNotThrow(() => assertNodeId('__proto__x'))
    assert.doesNotThrow(() => assertNodeId('constructor'))
  })

  test('a batch uid or a metric named "__proto__" is counted in the node stats and by metrics.aggregate like any other', async () => {
    const h: RoleHandler = {
      async *iterBatches() {
        yield { batch_uid: '__proto__', payload: {} }
        yield { batch_uid: 'b1', payload: {} }
      },
      // A metric named "__proto__" too (as JSON brings it: an own key).
      processBatch: async (b) => ({ metrics: JSON.parse(`{"n": ${b.batch_uid === '__proto__' ? 5 : 3}, "__proto__": 1}`) as Record<string, number> }),
    }
    const rt = await startRuntime({ handlers: { step: h } })
    try {
      const id = await rt.coordinator.createTask({
        graph: {
          nodes: [
            { node_id: 'src', type: 'step' },
            { node_id: 'agg', type: 'coordinator_fn', depends_on: ['src'], io: { fn: 'metrics.aggregate', fn_args: { node_id: 'src', mode: 'sum' } } },
          ],
        },
      })
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })
      assert.equal(t.status, 'finished')
      const both = JSON.parse('{"n": 8, "__proto__": 2}') as Record<string, number>
      assert.deepEqual(t.nodes.find((n) => n.node_id === 'src')?.stats, both)
      const [art] = await rt.coordinator.listArtifacts(id, { nodeId: 'agg' })
      assert.deepEqual(art?.meta['stats'], both)
    } finally {
      await rt.stop()
    }
  })
})
