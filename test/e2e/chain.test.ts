import { test } from 'node:test'
import assert from 'node:assert/strict'
import { startRuntime, noopHandler } from '../helpers/runtime.ts'

test('3-node chain runs to finished in dependency order', async () => {
  const rt = await startRuntime({ handlers: { a: noopHandler(), b: noopHandler(), c: noopHandler() } })
  try {
    const id = await rt.coordinator.createTask({
      graph: {
        nodes: [
          { node_id: 'n1', type: 'a' },
          { node_id: 'n2', type: 'b', depends_on: ['n1'] },
          { node_id: 'n3', type: 'c', depends_on: ['n2'] },
        ],
      },
    })
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 15000 })
    assert.equal(t.status, 'finished')
    const byId = Object.fromEntries(t.nodes.map((n) => [n.node_id, n]))
    for (const n of ['n1', 'n2', 'n3']) {
      assert.equal(byId[n]?.status, 'finished')
      assert.equal(byId[n]?.attempt_epoch, 1)
      assert.equal(byId[n]?.stats['count'], 1)
    }
    assert.ok((byId['n1']?.finished_at_ms ?? 0) <= (byId['n2']?.dispatched_at_ms ?? 0))
    assert.ok((byId['n2']?.finished_at_ms ?? 0) <= (byId['n3']?.dispatched_at_ms ?? 0))
    const arts = await rt.coordinator.listArtifacts(id)
    assert.equal(arts.filter((a) => a.status === 'complete').length, 3)
  } finally {
    await rt.stop()
  }
})

test('createTask takes the graph as JSON text too; malformed JSON is a GRAPH_INVALID error', async () => {
  const rt = await startRuntime({ handlers: { a: noopHandler() } })
  try {
    const id = await rt.coordinator.createTask({ graph: JSON.stringify({ nodes: [{ node_id: 'n', type: 'a' }] }) })
    assert.equal((await rt.coordinator.waitForTask(id, { timeoutMs: 10000 })).status, 'finished')
    await assert.rejects(rt.coordinator.createTask({ graph: '{"nodes": [' }), { code: 'GRAPH_INVALID', message: /not valid JSON/ })
  } finally {
    await rt.stop()
  }
})
