import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { evaluateGuard, parseGuard } from '../../src/graph/guard.ts'
import { parseGraph } from '../../src/graph/parse.ts'
import { startRuntime, noopHandler } from '../helpers/runtime.ts'

describe('guards on task variables', () => {
  test('ops evaluate on nested variables; a missing variable is absent', () => {
    const vars = { routing: { sla: 'gold', tier: 3 }, flags: { beta: true } }
    const g = (raw: unknown) => evaluateGuard(parseGuard(raw, 'when'), vars)
    assert.equal(g({ var: 'routing.sla', op: 'eq', value: 'gold' }), true)
    assert.equal(g({ var: 'routing.sla', value: 'silver' }), false)
    assert.equal(g({ var: 'routing.tier', op: 'gte', value: 3 }), true)
    assert.equal(g({ var: 'routing.tier', op: 'lt', value: '3' }), false, 'no comparison across types')
    assert.equal(g({ var: 'routing.sla', op: 'in', value: ['gold', 'platinum'] }), true)
    assert.equal(g({ var: 'nope.x', op: 'exists', value: false }), true)
    assert.equal(g({ var: 'nope.x', op: 'ne', value: 1 }), true)
    assert.equal(g({ var: 'nope.x', op: 'eq', value: null }), false)
    assert.equal(g({ all: [{ var: 'flags.beta', value: true }, { not: { var: 'routing.sla', value: 'bronze' } }] }), true)
    assert.equal(g({ any: [{ var: 'flags.beta', value: false }, { var: 'routing.tier', op: 'gt', value: 5 }] }), false)
    // An object is equal to another with its keys in another order.
    assert.equal(g({ var: 'routing', op: 'eq', value: { tier: 3, sla: 'gold' } }), true)
    assert.equal(g({ var: 'routing', op: 'ne', value: { tier: 3, sla: 'gold' } }), false)
    assert.equal(g({ var: 'routing', op: 'in', value: [{ tier: 3, sla: 'gold' }] }), true)
    assert.equal(g({ var: 'routing', op: 'eq', value: { tier: 3, sla: 'silver' } }), false)
  })

  test('bad guards are rejected at submission with the path', async () => {
    const rt = await startRuntime({ handlers: { step: noopHandler() } })
    try {
      for (const [when, re] of [
        [{ var: 'a..b', value: 1 }, /nodes\[0\]\.when\.var/],
        [{ var: '$where', value: 1 }, /nodes\[0\]\.when\.var/],
        [{ var: 'a', op: 'regex', value: '.*' }, /unknown guard op "regex"/],
        [{ var: 'a', op: 'in', value: 'x' }, /op in needs a list/],
        [{ all: [] }, /non-empty list/],
        [{ var: 'a', code: 'process.exit()' }, /unknown guard field/],
      ] as const) {
        await assert.rejects(rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'step', when }] } }), (err: Error & { code?: string }) => {
          assert.equal(err.code, 'GRAPH_BAD_FIELD')
          assert.match(err.message, re)
          return true
        })
      }
    } finally {
      await rt.stop()
    }
  })

  test('every guard problem is listed with the other problems of the graph, naming its node', () => {
    const graph = {
      nodes: [
        { node_id: 'a', type: 'step', fan_in: 'most', when: { var: 'x', op: 'zz' } },
        { node_id: 'b', type: 'step', when: { all: [{ var: 'a..b' }, { var: 'y', op: 'in', value: 3 }] } },
      ],
    }
    assert.throws(
      () => parseGraph(graph, { coordinatorFns: new Set() }),
      (err: Error & { details: { errors: { path: string; message: string }[] } }) => {
        assert.deepEqual(
          err.details.errors.map((p) => p.path),
          ['nodes[0].fan_in', 'nodes[0].when.op', 'nodes[1].when.all[0].var', 'nodes[1].when.all[1].value'],
        )
        assert.match(err.details.errors[1]?.message ?? '', /unknown guard op "zz" .*\(the when guard of node "a"\)$/)
        assert.match(err.details.errors[3]?.message ?? '', /op in needs a list \(the when guard of node "b"\)$/)
        return true
      },
    )
  })
})
