import assert from 'node:assert/strict'
import { test } from 'node:test'
import { ErrorCode, GraphValidationError } from '../../src/errors.ts'
import { buildDependencyIndex } from '../../src/graph/deps.ts'
import { parseGraph } from '../../src/graph/parse.ts'
import type { GraphSpec } from '../../src/graph/types.ts'

const options = {
  coordinatorFns: new Set(['merge.generic']),
  inputAdapters: new Set(['pull.from_artifacts']),
}

function spec(nodes: Record<string, unknown>[], more: Record<string, unknown> = {}, limits: Record<string, number> = {}): GraphSpec {
  return parseGraph({ nodes: nodes.map((n) => ({ type: 'proc', ...n })), ...more }, { ...options, limits })
}

test('deps: parents are depends_on ∪ edges ∪ edges_ex, deduplicated in declaration order', () => {
  const index = buildDependencyIndex(
    spec(
      [{ node_id: 'a' }, { node_id: 'b' }, { node_id: 'c' }, { node_id: 'x', depends_on: ['b'] }],
      { edges: [['c', 'x'], ['b', 'x']], edges_ex: [{ from: 'a', to: 'x', mode: 'async', trigger: 'on_batch' }, { from: 'c', to: 'x' }] },
    ),
  )
  assert.deepEqual(index.parents.get('x'), ['b', 'c', 'a'])
  assert.deepEqual(index.parents.get('a'), [])
})

test('deps: every node is a key of every map', () => {
  const index = buildDependencyIndex(spec([{ node_id: 'a' }, { node_id: 'b', depends_on: ['a'] }]))
  for (const map of [index.nodes, index.parents, index.children, index.streamingParents, index.routedFrom]) {
    assert.deepEqual([...map.keys()].sort(), ['a', 'b'])
  }
  assert.equal(index.nodes.get('b')?.node_id, 'b')
})

test('deps: children are dependents and routing targets, in document order', () => {
  const index = buildDependencyIndex(
    spec(
      [
        { node_id: 'src', routing: { on_success: ['ok'], on_failure: ['rescue'] } },
        { node_id: 'rescue' },
        { node_id: 'late', depends_on: ['src'] },
        { node_id: 'ok' },
        { node_id: 'early' },
      ],
      { edges: [['src', 'early'], ['src', 'late']] },
    ),
  )
  assert.deepEqual(index.children.get('src'), ['rescue', 'late', 'ok', 'early'])
  assert.deepEqual(index.children.get('ok'), [])
  // routing targets are not parents: the scheduler reads routedFrom for them
  assert.deepEqual(index.parents.get('ok'), [])
})

test('deps: routedFrom maps targets to their source and branch', () => {
  const index = buildDependencyIndex(
    spec([
      { node_id: 'a', routing: { on_success: ['next'], on_failure: ['rescue'] } },
      { node_id: 'b', routing: { on_failure: ['rescue'] } },
      { node_id: 'next' },
      { node_id: 'rescue' },
    ]),
  )
  assert.deepEqual(index.routedFrom.get('next'), [{ source: 'a', on: 'success' }])
  assert.deepEqual(index.routedFrom.get('rescue'), [
    { source: 'a', on: 'failure' },
    { source: 'b', on: 'failure' },
  ])
  assert.deepEqual(index.routedFrom.get('a'), [])
})

test('deps: streamingParents from async on_batch edges_ex only', () => {
  const index = buildDependencyIndex(
    spec([{ node_id: 'a' }, { node_id: 'b' }, { node_id: 'c' }, { node_id: 'd' }, { node_id: 'x', depends_on: ['a'] }], {
      edges_ex: [
        { from: 'b', to: 'x', mode: 'async', trigger: 'on_batch' },
        { from: 'c', to: 'x', mode: 'sync', trigger: 'on_batch' },
        { from: 'd', to: 'x', mode: 'async', trigger: 'on_done' },
      ],
    }),
  )
  assert.deepEqual(index.parents.get('x'), ['a', 'b', 'c', 'd'])
  assert.deepEqual([...index.streamingParents.get('x')!], ['b'])
  assert.equal(index.streamingParents.get('a')!.size, 0)
})

test('deps: start_when first_batch makes every parent streaming', () => {
  const index = buildDependencyIndex(
    spec([{ node_id: 'a' }, { node_id: 'b' }, { node_id: 'x', depends_on: ['a'], io: { start_when: 'first_batch' } }], {
      edges: [['b', 'x']],
    }),
  )
  assert.deepEqual([...index.streamingParents.get('x')!], ['a', 'b'])
})

test('deps: topoOrder puts parents and routing sources first, stable by document order', () => {
  const index = buildDependencyIndex(
    spec(
      [
        { node_id: 'sink', depends_on: ['mid'] },
        { node_id: 'rescue' },
        { node_id: 'mid', routing: { on_failure: ['rescue'] } },
        { node_id: 'src' },
        { node_id: 'other' },
      ],
      { edges: [['src', 'mid']] },
    ),
  )
  assert.deepEqual(index.topoOrder, ['src', 'mid', 'sink', 'rescue', 'other'])
})

test('deps: topoOrder keeps document order for independent nodes', () => {
  const ids = Array.from({ length: 50 }, (_, i) => `n${49 - i}`)
  const index = buildDependencyIndex(spec(ids.map((node_id) => ({ node_id }))))
  assert.deepEqual(index.topoOrder, ids)
})

test('deps: a long chain is handled without recursion limits', () => {
  const n = 15_000
  const nodes = Array.from({ length: n }, (_, i) => (i === 0 ? { node_id: 'n0' } : { node_id: `n${i}`, depends_on: [`n${i - 1}`] }))
  // over the default submission limits (maxNodes 5,000), raised for this test
  const index = buildDependencyIndex(spec(nodes.reverse(), {}, { maxNodes: n, maxEdges: n }))
  assert.equal(index.topoOrder[0], 'n0')
  assert.equal(index.topoOrder[n - 1], `n${n - 1}`)
})

test('deps: an unvalidated graph with a cycle or an unknown node throws', () => {
  const base = spec([{ node_id: 'a' }, { node_id: 'b', depends_on: ['a'] }])
  const cyclic: GraphSpec = { ...base, edges: [['b', 'a']] }
  assert.throws(
    () => buildDependencyIndex(cyclic),
    (err: unknown) => err instanceof GraphValidationError && err.code === ErrorCode.Cycle && /"a", "b"/.test(err.message),
  )
  const dangling: GraphSpec = { ...base, edges: [['a', 'zz']] }
  assert.throws(
    () => buildDependencyIndex(dangling),
    (err: unknown) => err instanceof GraphValidationError && err.code === ErrorCode.UnknownNode && err.path === 'edges[0][1]',
  )
})
