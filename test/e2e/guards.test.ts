import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { startRuntime, noopHandler } from '../helpers/runtime.ts'

describe('conditional routing', () => {
  test('S-081 conditional routing on task variables: only the gold branch runs', async () => {
    const rt = await startRuntime({ handlers: { step: noopHandler() }, worker: { concurrency: 2 } })
    try {
      const id = await rt.coordinator.createTask({
        graph: {
          nodes: [
            { node_id: 'classify', type: 'coordinator_fn', io: { fn: 'vars.set', fn_args: { kv: { 'routing.sla': 'gold' } } } },
            { node_id: 'gold', type: 'step', depends_on: ['classify'], when: { var: 'routing.sla', op: 'eq', value: 'gold' } },
            { node_id: 'silver', type: 'step', depends_on: ['classify'], when: { var: 'routing.sla', op: 'eq', value: 'silver' } },
            { node_id: 'after_silver', type: 'step', depends_on: ['silver'] },
          ],
        },
      })
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10000 })
      assert.equal(t.status, 'finished')
      const st = Object.fromEntries(t.nodes.map((n) => [n.node_id, n.status]))
      assert.deepEqual(st, { classify: 'finished', gold: 'finished', silver: 'skipped', after_silver: 'skipped' })
      assert.deepEqual(t.vars, { routing: { sla: 'gold' } })
    } finally {
      await rt.stop()
    }
  })
})
