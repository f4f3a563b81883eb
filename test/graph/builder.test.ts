/**
 * The typed graph builder (src/graph/builder.ts): the JSON it writes (equal to the README's and
 * docs/graph-format.md's graphs, which then run on the memory runtime), the errors of build(),
 * and its type tests (test/types/*.ts compiled by tsc).
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { test } from 'node:test'
import { type GraphJson, GraphValidationError, PermanentError, type RoleHandler, graph, pullFromArtifacts, rechunk } from 'flowkit'
import { salesGraph } from '../../src/cli/demo-pipeline.ts'
import { startRuntime } from '../helpers/runtime.ts'
import { DOC_EXAMPLES, type DocRoles, docExamples } from '../types/examples.ts'

function rejects(fn: () => unknown, path: string, ...parts: string[]): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof GraphValidationError, String(err))
    assert.equal(err.path, path, err.message)
    for (const p of parts) assert.ok(err.message.includes(p), `"${err.message}" should include ${JSON.stringify(p)}`)
    return true
  })
}

/** The graph literal of the README quickstart (a JS object literal in the ts block). */
function readmeGraph(): unknown {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8')
  const literal = /graph: (\{\n[\s\S]*?\n {2}\}),\n\}\)/.exec(readme)?.[1]
  assert.ok(literal !== undefined, 'the README quickstart has its graph')
  return new Function(`return (${literal})`)()
}

test('graph builder: type tests (test/types/*.ts) compile, and every @ts-expect-error is an error', () => {
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
  try {
    execFileSync(process.execPath, [tsc, '--noEmit', '-p', 'test/types/tsconfig.json'], { encoding: 'utf8', timeout: 120_000 })
  } catch (err) {
    assert.fail(`tsc failed:\n${(err as { stdout?: string }).stdout ?? String(err)}`)
  }
})

test('graph builder: builds the README quickstart graph exactly', () => {
  const g = graph<'numbers' | 'squares'>()
  g.node('source', 'numbers')
  g.node('square', 'squares')
    .after('source')
    .startOnFirstBatch()
    .input(rechunk('source', 3, { metaListKey: 'items' }))
    .retry({ max: 3, backoffSec: 0.5, permanentOn: ['bad_input'] })
  assert.deepEqual(g.build(), readmeGraph())
  assert.equal(JSON.stringify(g.build()), JSON.stringify(readmeGraph()), 'same fields in the same order')
})

test('graph builder: builds the demo pipeline graph exactly (handler data in input_inline, a coordinator function)', () => {
  const g = graph<'csv_reader' | 'enricher' | 'reporter'>()
  g.node('extract', 'csv_reader').inline({ path: 'x.csv', batch_size: 25 })
  g.node('enrich', 'enricher').after('extract').startOnFirstBatch().input(rechunk('extract', 40, { metaListKey: 'rows', pollMs: 20 }))
  g.node('report', 'reporter').after('enrich').input(pullFromArtifacts('enrich', { pollMs: 20 }))
  g.fn('total', 'metrics.aggregate', { from_nodes: ['enrich'], metric: 'revenue', mode: 'sum' })
  g.edge('extract', 'enrich', { trigger: 'on_batch' })
  assert.deepEqual(g.build(), salesGraph('x.csv'))
})

test('graph builder: every example of docs/graph-format.md is built by the builder, to the same JSON', () => {
  const docs = docExamples()
  const named = docs.filter((d) => d.name !== null)
  assert.equal(named.length, docs.length, 'every json block of the doc is a named example')
  assert.deepEqual(named.map((d) => d.name).sort(), Object.keys(DOC_EXAMPLES).sort(), 'one builder per doc example')
  for (const { name, json } of named) {
    const { $schema: _s, schema_version: _v, ...raw } = json as GraphJson
    assert.deepEqual(DOC_EXAMPLES[name as string]?.(), raw, `example ${name}`)
  }
})

/** One handler for every doc role: two batches of rows, or the batches its input adapter reads. */
const generic: RoleHandler = {
  async *iterBatches() {
    for (let i = 0; i < 2; i++) yield { batch_uid: `b${i}`, payload: { rows: [2 * i, 2 * i + 1] } }
  },
  async processBatch(batch) {
    const p = batch.payload
    const rows = Array.isArray(p['items']) ? p['items'] : Array.isArray(p['rows']) ? p['rows'] : [p]
    return { meta: { rows, items: rows }, metrics: { count: rows.length } }
  },
}
const failing: RoleHandler = {
  async processBatch() {
    throw new PermanentError('always fails', 'bad_input')
  },
}

/** Outcomes the doc states; every other example finishes with every node finished. */
const OUTCOMES: Record<string, { status: string; nodes: Record<string, string> }> = {
  when: { status: 'finished', nodes: { tier: 'finished', express: 'finished', standard: 'skipped' } },
  routing: { status: 'finished', nodes: { import: 'failed', alert: 'finished', publish: 'skipped', report: 'skipped' } },
  fallback: { status: 'finished', nodes: { primary: 'failed', fallback: 'finished', 'join-all': 'skipped', 'join-any': 'finished' } },
  failure: { status: 'failed', nodes: { import: 'failed', report: 'cancelled' } },
}

test('graph builder: the README and doc example graphs run on the memory runtime with the outcomes the doc states', async () => {
  const roles: Record<DocRoles | 'numbers' | 'squares', RoleHandler> = {
    reader: generic, writer: generic, enricher: generic, notifier: generic, extractor: generic, processor: generic, numbers: generic, squares: generic, failing,
  }
  const rt = await startRuntime({ handlers: roles, worker: { concurrency: 4 } })
  try {
    const readme = graph<typeof roles>()
    readme.node('source', 'numbers')
    readme.node('square', 'squares').after('source').startOnFirstBatch().input(rechunk('source', 3, { metaListKey: 'items' })).retry({ max: 3, backoffSec: 0.5, permanentOn: ['bad_input'] })
    const graphs: [string, GraphJson][] = [['readme', readme.build()], ...Object.entries(DOC_EXAMPLES).map(([k, build]): [string, GraphJson] => [k, build()])]
    const ids = await Promise.all(graphs.map(([name, g]) => rt.coordinator.createTask({ graph: g, id: `doc-${name}` })))
    for (const [i, [name, g]] of graphs.entries()) {
      const task = await rt.coordinator.waitForTask(ids[i] as string, { timeoutMs: 20_000 })
      const want = OUTCOMES[name] ?? { status: 'finished', nodes: Object.fromEntries(g.nodes.map((n) => [n.node_id, 'finished'])) }
      const got = Object.fromEntries(task.nodes.map((n) => [n.node_id, n.status]))
      assert.equal(task.status, want.status, `${name}: ${JSON.stringify(got)}`)
      for (const [id, status] of Object.entries(want.nodes)) assert.equal(got[id], status, `${name}: node ${id} (${JSON.stringify(got)})`)
      if (name === 'readme') assert.deepEqual(task.nodes.map((n) => n.stats['count']), [4, 4])
      if (name === 'when') assert.deepEqual(task.vars, { routing: { sla: 'gold' } })
      if (name === 'vars') assert.deepEqual(task.vars, { run: { region: 'eu' } })
    }
  } finally {
    await rt.stop()
  }
})

test('graph builder: writes only the fields set, in the documented order, and fresh JSON at each build', () => {
  const g = graph()
  g.node('a', 'reader')
  g.node('c', 'notifier')
  const b = g
    .node('b', 'writer')
    .when({ var: 'x', op: 'exists' })
    .onFailure('c')
    .retry({ max: 2 })
    .inline({ k: 1 })
    .fanIn({ count: 1 })
    .after('a', 'a')
  const built = g.build()
  assert.equal(built.nodes.length, 3)
  assert.equal(
    JSON.stringify(built.nodes[2]),
    '{"node_id":"b","type":"writer","depends_on":["a"],"fan_in":"count:1","io":{"input_inline":{"k":1}},"retry_policy":{"max":2},"routing":{"on_failure":["c"]},"when":{"var":"x","op":"exists"}}',
  )
  assert.deepEqual(Object.keys(built), ['nodes'])
  ;(built.nodes[0] as { type: string }).type = 'changed'
  assert.equal(g.build().nodes[0]?.type, 'reader')
  b.input(pullFromArtifacts('a')).inline({ more: true })
  assert.deepEqual(g.build().nodes[2]?.io?.input_inline, { k: 1, input_adapter: 'pull.from_artifacts', input_args: { from_nodes: ['a'] }, more: true })
  assert.equal(g.get('b'), b)
})

test('graph builder: fn() writes a coordinator_fn node that depends on the nodes its args read', () => {
  const g = graph()
  g.node('a', 'r')
  g.node('b', 'r')
  g.fn('m', 'merge.generic', { from_nodes: ['a', 'b'] }).after('a')
  g.fn('agg', 'metrics.aggregate', { node_id: 'a' })
  g.fn('x', 'my.fn', { from_node: 'b', extra: 1 })
  g.fn('z', 'noop').after('x')
  assert.deepEqual(g.build().nodes.slice(2), [
    { node_id: 'm', type: 'coordinator_fn', depends_on: ['a', 'b'], io: { fn: 'merge.generic', fn_args: { from_nodes: ['a', 'b'] } } },
    { node_id: 'agg', type: 'coordinator_fn', depends_on: ['a'], io: { fn: 'metrics.aggregate', fn_args: { node_id: 'a' } } },
    { node_id: 'x', type: 'coordinator_fn', depends_on: ['b'], io: { fn: 'my.fn', fn_args: { from_node: 'b', extra: 1 } } },
    { node_id: 'z', type: 'coordinator_fn', depends_on: ['x'], io: { fn: 'noop' } },
  ])
})

test('graph builder: edge() writes a plain edge, or an edges_ex entry with mode and trigger written out', () => {
  const g = graph()
  g.node('a', 'r')
  g.node('b', 'r')
  g.edge('a', 'b').edge('a', 'b', { trigger: 'on_batch' }).edge('a', 'b', { mode: 'sync' })
  const built = g.build()
  assert.deepEqual(built.edges, [['a', 'b']])
  assert.deepEqual(built.edges_ex, [
    { from: 'a', to: 'b', mode: 'async', trigger: 'on_batch' },
    { from: 'a', to: 'b', mode: 'sync', trigger: 'on_done' },
  ])
})

test('graph builder: build() names the method and the node of an id that is no node, with a suggestion', () => {
  const g = graph()
  g.node('read', 'reader')
  g.node('enrich', 'enricher').after('raed').input(rechunk('reed', 10))
  rejects(() => g.build(), 'nodes[1].depends_on[0]', 'node "enrich" .after() names "raed", which is not a node of this graph (did you mean "read"?)', 'and 1 more')
  try {
    g.build()
  } catch (err) {
    const errors = (err as GraphValidationError).details['errors'] as { path: string; message: string }[]
    assert.deepEqual(errors.map((e) => e.path), ['nodes[1].depends_on[0]', 'nodes[1].io.input_inline.input_args.from_nodes[0]'])
    assert.match(errors[1]?.message ?? '', /\.input\(\) names "reed"/)
  }
  const h = graph()
  h.node('a', 'r').onFailure('zzz-unrelated')
  rejects(() => h.build(), 'nodes[0].routing.on_failure[0]', '.onFailure() names "zzz-unrelated"', '(nodes: "a")')
  const e = graph()
  e.node('a', 'r')
  e.edge('a', 'b', { trigger: 'on_batch' })
  rejects(() => e.build(), 'edges_ex[0].to', 'edge("a", "b", …) names "b"')
  const f = graph()
  f.fn('m', 'merge.generic', { from_nodes: ['nope'] })
  rejects(() => f.build(), 'nodes[0].depends_on[0]', 'node "m" fn() args (from_nodes, from_node or node_id) names "nope"')
  assert.throws(() => graph().get('x'), /no node "x"/)
})

test('graph builder: ids are checked as nodes are added; the rest by the coordinator\'s validation at build()', () => {
  const g = graph()
  g.node('a', 'r')
  rejects(() => g.node('a', 'r'), 'nodes[1].node_id', 'duplicate node id "a"')
  rejects(() => g.node('a b', 'r'), 'nodes[1].node_id', 'invalid node id "a b"')
  rejects(() => g.node('c', 'a/b' as string), 'nodes[1].type', 'role "a/b" must match')
  rejects(() => graph().build(), 'nodes', 'the graph has no node')
  const cycle = graph()
  cycle.node('a', 'r').after('b')
  cycle.node('b', 'r').after('a')
  rejects(() => cycle.build(), 'nodes[0].depends_on[0]', 'dependency cycle: a -> b -> a')
  const count = graph()
  count.node('a', 'r').fanIn({ count: 2 })
  rejects(() => count.build(), 'nodes[0].fan_in', 'needs 2 parents but it has none')
  const guard = graph()
  guard.node('a', 'r').when({ var: 'bad var' })
  rejects(() => guard.build(), 'nodes[0].when.var', 'dotted variable path')
  const big = graph()
  big.node('a', 'r').retry({ max: 500, backoffSec: 100_000 })
  assert.deepEqual(big.build().nodes[0]?.retry_policy, { max: 500, backoff_sec: 100_000 }, 'limits are the coordinator config\'s, checked by createTask')
})

test('graph builder: params() and task() give createTask its input', async () => {
  const g = graph<'reader'>().params({ run: 'demo' })
  g.node('read', 'reader')
  assert.deepEqual(g.task({ id: 't-1' }), { graph: { nodes: [{ node_id: 'read', type: 'reader' }] }, params: { run: 'demo' }, id: 't-1' })
  const rt = await startRuntime({ handlers: { reader: generic } })
  try {
    const id = await rt.coordinator.createTask(g.task())
    const task = await rt.coordinator.waitForTask(id, { timeoutMs: 10_000 })
    assert.equal(task.status, 'finished')
    assert.deepEqual(task.params, { run: 'demo' })
  } finally {
    await rt.stop()
  }
})

test('graph builder: input adapter helpers refuse the args the worker would refuse when the node runs (size, pollMs, from), naming the helper', () => {
  const cases: [() => unknown, RegExp][] = [
    [() => rechunk('read', 0), /rechunk\(\): size must be an integer > 0, got 0/],
    [() => rechunk('read', -3), /size must be an integer > 0, got -3/],
    [() => rechunk('read', 1.5), /size must be an integer > 0, got 1.5/],
    [() => rechunk('read', Number.NaN), /size must be an integer > 0, got NaN/],
    [() => rechunk([], 3), /rechunk\(\): from needs at least one upstream node id/],
    [() => pullFromArtifacts([]), /pullFromArtifacts\(\): from needs at least one upstream node id/],
    [() => pullFromArtifacts('read', { pollMs: -5 }), /pollMs must be a number >= 0, got -5/],
    [() => rechunk('read', 3, { pollMs: Number.POSITIVE_INFINITY }), /pollMs must be a number >= 0, got Infinity/],
  ]
  for (const [make, message] of cases) assert.throws(make, (err: unknown) => err instanceof GraphValidationError && message.test(err.message), String(message))
  assert.deepEqual(rechunk(['a', 'b'], 2, { metaListKey: 'rows', pollMs: 0 }), { input_adapter: 'pull.from_artifacts.rechunk:size', input_args: { from_nodes: ['a', 'b'], size: 2, meta_list_key: 'rows', poll_ms: 0 } })
})

test("graph builder: an unknown node named by fn() args is reported as the function's args, not as .after() (which the user never called)", () => {
  const g = graph()
  g.node('a', 'x')
  g.fn('t', 'metrics.aggregate', { node_id: 'aa' })
  assert.throws(() => g.build(), (err: unknown) => err instanceof GraphValidationError && /node "t" fn\(\) args \(from_nodes, from_node or node_id\) names "aa".*did you mean "a"/.test(err.message))
  const h = graph()
  h.node('a', 'x')
  h.node('b', 'x').after('zz')
  assert.throws(() => h.build(), /node "b" \.after\(\) names "zz"/)
})
