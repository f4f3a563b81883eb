/**
 * Graphs parsed once per DAG (src/coordinator/graph-cache.ts, graph-plan.ts): a DAG submitted
 * again gets the same frozen graph and the same plan, without being parsed again; nothing that
 * parsing must reject slips through the cache.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { GraphCache } from '../../src/coordinator/graph-cache.ts'
import { planOf } from '../../src/coordinator/graph-plan.ts'
import { buildTask } from '../../src/coordinator/submit.ts'
import { GraphValidationError } from '../../src/errors.ts'
import type { CreateTaskInput } from '../../src/index.ts'

const CHAIN = { nodes: [{ node_id: 'a', type: 'step' }, { node_id: 'b', type: 'step', depends_on: ['a'] }] }

function counting() {
  const cache = new GraphCache()
  let parses = 0
  const build = (graph: CreateTaskInput['graph']) =>
    buildTask({ graph }, { coordinatorFns: new Set(), rejectUnknownInputAdapters: false, cache: { get: (raw, parse) => cache.get(raw, (r) => {
          parses++
          return parse(r)
        }) } as GraphCache }, 1)
  return { build, parses: () => parses }
}

test('a graph given as JSON text is parsed once: the tasks share one frozen graph and one plan', () => {
  const { build, parses } = counting()
  const text = JSON.stringify(CHAIN)
  const t1 = build(text)
  const t2 = build(text)
  assert.equal(parses(), 1)
  assert.equal(t1.graph, t2.graph)
  assert.ok(Object.isFrozen(t1.graph))
  assert.notEqual(t1.id, t2.id)
  assert.notEqual(t1.nodes, t2.nodes, 'each task has its own node states')
  assert.equal(planOf(t1.graph), planOf(t2.graph))
})

test('the same graph object again is not parsed again, unless it was edited in between', () => {
  const { build, parses } = counting()
  const g = structuredClone(CHAIN)
  const t1 = build(g)
  assert.equal(build(g).graph, t1.graph)
  assert.equal(parses(), 1)
  g.nodes.push({ node_id: 'c', type: 'step', depends_on: ['b'] })
  const t3 = build(g)
  assert.equal(parses(), 2)
  assert.deepEqual(t3.graph.nodes.map((n) => n.node_id), ['a', 'b', 'c'])
})

test('an invalid graph is rejected every time (not cached), and an object whose JSON equals a cached one is still parsed', () => {
  const { build, parses } = counting()
  const bad = JSON.stringify({ nodes: [{ node_id: 'a', type: 'step', depends_on: ['nope'] }] })
  assert.throws(() => build(bad), GraphValidationError)
  assert.throws(() => build(bad), GraphValidationError)
  assert.equal(parses(), 2)
  build(structuredClone(CHAIN))
  // Same JSON text, but a field JSON does not show (a function): parsing must see it.
  const sneaky = structuredClone(CHAIN) as { nodes: Record<string, unknown>[] }
  ;(sneaky.nodes[0] as Record<string, unknown>)['retry_policy'] = () => 1
  assert.throws(() => build(sneaky as CreateTaskInput['graph']))
})

test('a plan is shared only by frozen graphs', () => {
  const { build } = counting()
  const frozen = build(JSON.stringify(CHAIN)).graph
  assert.equal(planOf(frozen), planOf(frozen))
  const open = structuredClone(frozen)
  assert.notEqual(planOf(open), planOf(open))
})
