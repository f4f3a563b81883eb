/**
 * The yield search (src/coordinator/yield.ts) on a hand-built runtime: which running nodes wait
 * for a node's data through plain dependents that have not started, in both directions — from an
 * upstream that cannot run (waitingConsumers) and from a consumer just accepted (heldUpstream) —
 * and the graph plan's per-node bit that skips the search where no consumer is below.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { planOf } from '../../src/coordinator/graph-plan.ts'
import { TaskRuntime } from '../../src/coordinator/runtime.ts'
import { heldUpstream, waitingConsumers } from '../../src/coordinator/yield.ts'
import type { GraphSpec } from '../../src/graph/types.ts'
import type { NodeState } from '../../src/ports/store.ts'
import { makeNodeSpec, makeNodeState, makeTaskDoc } from '../helpers/fixtures.ts'

const pull = (from: string) => ({ input_inline: { input_adapter: 'pull.from_artifacts', input_args: { from_nodes: [from] } } })

/** a → b (plain); x pulls b without depending on it; c depends on x. */
const graph: GraphSpec = {
  schema_version: '1.0',
  nodes: [
    makeNodeSpec('a', 'src'),
    makeNodeSpec('b', 'src', { depends_on: ['a'] }),
    makeNodeSpec('x', 'count', { io: pull('b') }),
    makeNodeSpec('c', 'count', { depends_on: ['x'] }),
  ],
  edges: [],
  edges_ex: [],
}

function runtime(states: Record<string, Partial<NodeState>>): TaskRuntime {
  const nodes: Record<string, NodeState> = {}
  for (const s of graph.nodes) nodes[s.node_id] = makeNodeState(s.node_id, s.type, states[s.node_id] ?? {})
  return new TaskRuntime(makeTaskDoc({ status: 'running', graph, nodes }), 1)
}

const running = { status: 'running', attempt_epoch: 1, dispatched_at_ms: 1, accepted_at_ms: 2 } as const

test('the plan marks the nodes a consumer is reachable from; a plain graph has none', () => {
  const plan = planOf(graph)
  assert.deepEqual(plan.feedsConsumer, [true, true, false, false])
  const plain: GraphSpec = { ...graph, nodes: [makeNodeSpec('a', 'src'), makeNodeSpec('b', 'src', { depends_on: ['a'] })] }
  assert.deepEqual(planOf(plain).feedsConsumer, [false, false])
})

test('waitingConsumers: a running puller of a node that waits for its plain parent waits for that parent too', () => {
  const ord = (id: string) => graph.nodes.findIndex((n) => n.node_id === id)
  // b has not started (waits for a): x, pulling b, holds a slot a may need.
  assert.deepEqual(waitingConsumers(runtime({ x: running }), ord('a')), [ord('x')])
  // b runs already: x waits for b, not for a.
  assert.deepEqual(waitingConsumers(runtime({ a: { status: 'finished', attempt_epoch: 1 }, b: running, x: running }), ord('a')), [])
  // x not accepted yet: nothing to yield now (heldUpstream asks it once accepted).
  assert.deepEqual(waitingConsumers(runtime({ x: { ...running, accepted_at_ms: null } }), ord('a')), [])
})

test('heldUpstream: a puller accepted while its upstream waits for its own parent, which a limit holds, finds that parent', () => {
  const ord = (id: string) => graph.nodes.findIndex((n) => n.node_id === id)
  const rt = runtime({ x: running })
  assert.equal(heldUpstream(rt, ord('x'), (o) => o === ord('a')), ord('a'))
  assert.equal(heldUpstream(rt, ord('x'), () => false), null)
  // b runs: what x waits for is b, which no limit holds.
  assert.equal(heldUpstream(runtime({ a: { status: 'finished', attempt_epoch: 1 }, b: running, x: running }), ord('x'), (o) => o === ord('a')), null)
})
