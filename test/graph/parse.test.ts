import assert from 'node:assert/strict'
import { test } from 'node:test'
import { ErrorCode, FlowkitError, GraphValidationError } from '../../src/errors.ts'
import type { ParseGraphOptions } from '../../src/graph/parse.ts'
import { parseGraph } from '../../src/graph/parse.ts'

const options: ParseGraphOptions = {
  coordinatorFns: new Set(['merge.generic', 'vars.set', 'noop']),
  inputAdapters: new Set(['pull.from_artifacts', 'pull.from_artifacts.rechunk:size']),
}

type Json = Record<string, unknown>

function node(node_id: string, more: Json = {}): Json {
  return { node_id, type: 'proc', ...more }
}

function graph(nodes: unknown[], more: Json = {}): Json {
  return { nodes, ...more }
}

/** Parses and returns the GraphValidationError, checking class, code, path and message parts. */
function rejects(
  input: unknown,
  want: { code: ErrorCode; path: string; message: (string | RegExp)[] },
): GraphValidationError {
  let caught: unknown
  try {
    parseGraph(input, options)
  } catch (err) {
    caught = err
  }
  assert.ok(caught instanceof GraphValidationError, `expected a GraphValidationError, got ${String(caught)}`)
  assert.ok(caught instanceof FlowkitError)
  assert.equal(caught.code, want.code, caught.message)
  assert.equal(caught.path, want.path, caught.message)
  assert.equal(caught.details['path'], want.path)
  for (const part of want.message) {
    if (typeof part === 'string') assert.ok(caught.message.includes(part), `"${caught.message}" should include "${part}"`)
    else assert.match(caught.message, part)
  }
  return caught
}

// ---------------------------------------------------------------- top level

test('graph validation: the graph must be an object', () => {
  rejects([], { code: ErrorCode.GraphInvalid, path: '', message: ['a graph must be a JSON object', 'array []'] })
  rejects(null, { code: ErrorCode.GraphInvalid, path: '', message: ['got null'] })
})

test('graph validation: nodes is required and must be a non-empty array', () => {
  rejects({}, { code: ErrorCode.GraphInvalid, path: 'nodes', message: ['nodes: is required'] })
  rejects({ nodes: 'a' }, { code: ErrorCode.GraphInvalid, path: 'nodes', message: ['non-empty array', 'string "a"'] })
  rejects({ nodes: [] }, { code: ErrorCode.GraphInvalid, path: 'nodes', message: ['at least one node'] })
})

test('graph validation: schema_version other than "1.0" is rejected', () => {
  rejects(graph([node('a')], { schema_version: '2.0' }), {
    code: ErrorCode.BadField,
    path: 'schema_version',
    message: ['unsupported schema_version string "2.0"', 'supported: "1.0"'],
  })
  rejects(graph([node('a')], { schema_version: 1 }), {
    code: ErrorCode.BadField,
    path: 'schema_version',
    message: ['number 1'],
  })
})

test('graph validation: a node must be an object', () => {
  rejects(graph([node('a'), 'b']), { code: ErrorCode.GraphInvalid, path: 'nodes[1]', message: ['node object', 'string "b"'] })
})

// ---------------------------------------------------------------- node id and type

test('graph validation: invalid node_id is quoted JSON-escaped with the allowed pattern', () => {
  const err = rejects(graph([node('ok'), node('bad id"\n')]), {
    code: ErrorCode.InvalidNodeId,
    path: 'nodes[1].node_id',
    message: ['invalid node_id "bad id\\"\\n"', '^(?!__proto__$)[A-Za-z0-9_-]{1,128}$', 'not "__proto__"'],
  })
  assert.equal(err.details['node_id'], 'bad id"\n')
  rejects(graph([node('x'.repeat(129))]), { code: ErrorCode.InvalidNodeId, path: 'nodes[0].node_id', message: ['(129 chars)'] })
  rejects(graph([node('')]), { code: ErrorCode.InvalidNodeId, path: 'nodes[0].node_id', message: ['invalid node_id ""'] })
  rejects(graph([node('__proto__')]), { code: ErrorCode.InvalidNodeId, path: 'nodes[0].node_id', message: ['invalid node_id "__proto__"'] })
})

test('graph validation: missing or non-string node_id', () => {
  rejects(graph([{ type: 'proc' }]), { code: ErrorCode.InvalidNodeId, path: 'nodes[0].node_id', message: ['is required'] })
  rejects(graph([{ node_id: 7, type: 'proc' }]), {
    code: ErrorCode.InvalidNodeId,
    path: 'nodes[0].node_id',
    message: ['number 7', '^(?!__proto__$)[A-Za-z0-9_-]{1,128}$'],
  })
})

test('graph validation: duplicate node ids name both indexes', () => {
  const err = rejects(graph([node('a'), node('b'), node('a')]), {
    code: ErrorCode.DuplicateNodeId,
    path: 'nodes[2].node_id',
    message: ['duplicate node_id "a"', 'nodes[0] and nodes[2]'],
  })
  assert.deepEqual(err.details['indexes'], [0, 2])
})

test('graph validation: type is required and must be topic-safe', () => {
  rejects(graph([{ node_id: 'a' }]), { code: ErrorCode.BadField, path: 'nodes[0].type', message: ['node "a" has no type'] })
  rejects(graph([node('a', { type: '' })]), { code: ErrorCode.BadField, path: 'nodes[0].type', message: ['invalid type ""'] })
  rejects(graph([node('a', { type: 'has space' })]), {
    code: ErrorCode.BadField,
    path: 'nodes[0].type',
    message: ['invalid type "has space" on node "a"', '^[A-Za-z0-9_.-]{1,128}$', 'cmd.{type}.v1'],
  })
  rejects(graph([node('a', { type: 3 })]), { code: ErrorCode.BadField, path: 'nodes[0].type', message: ['number 3'] })
})

// ---------------------------------------------------------------- priming fields

test('graph validation: a submitted node cannot start in another status', () => {
  rejects(graph([node('a', { status: 'running' })]), {
    code: ErrorCode.BadField,
    path: 'nodes[0].status',
    message: ['node "a" has status string "running"', 'only be "queued" or null'],
  })
})

test('graph validation: priming fields must be fresh (attempt_epoch 0, empty stats and lease)', () => {
  rejects(graph([node('a', { attempt_epoch: 2 })]), {
    code: ErrorCode.BadField,
    path: 'nodes[0].attempt_epoch',
    message: ['attempt_epoch number 2'],
  })
  rejects(graph([node('a', { lease: { worker_id: 'w1' } })]), {
    code: ErrorCode.BadField,
    path: 'nodes[0].lease',
    message: ['lease may only be {} or null'],
  })
  rejects(graph([node('a', { stats: [] })]), { code: ErrorCode.BadField, path: 'nodes[0].stats', message: ['array []'] })
})

// ---------------------------------------------------------------- depends_on

test('graph validation: depends_on names an unknown node', () => {
  const err = rejects(graph([node('a'), node('b', { depends_on: ['a', 'ghost'] })]), {
    code: ErrorCode.UnknownNode,
    path: 'nodes[1].depends_on[1]',
    message: ['node "b" depends on unknown node "ghost"'],
  })
  assert.equal(err.details['node_id'], 'ghost')
  assert.equal(err.details['referenced_by'], 'b')
})

test('graph validation: depends_on must be an array of strings', () => {
  rejects(graph([node('a', { depends_on: 'b' })]), {
    code: ErrorCode.BadField,
    path: 'nodes[0].depends_on',
    message: ['must be an array of node ids', 'string "b"'],
  })
  rejects(graph([node('a'), node('b', { depends_on: [1] })]), {
    code: ErrorCode.BadField,
    path: 'nodes[1].depends_on[0]',
    message: ['number 1'],
  })
})

test('graph validation: a node cannot depend on itself', () => {
  const err = rejects(graph([node('a', { depends_on: ['a'] })]), {
    code: ErrorCode.Cycle,
    path: 'nodes[0].depends_on[0]',
    message: ['node "a" depends on itself', 'cycle: a -> a'],
  })
  assert.deepEqual(err.details['cycle'], ['a', 'a'])
})

// ---------------------------------------------------------------- edges, edges_ex

test('graph validation: edges endpoints must exist', () => {
  rejects(graph([node('a')], { edges: [['a', 'zz']] }), {
    code: ErrorCode.UnknownNode,
    path: 'edges[0][1]',
    message: ['edge "a" -> "zz" names unknown node "zz"'],
  })
})

test('graph validation: edges must be [from, to] string pairs', () => {
  rejects(graph([node('a')], { edges: {} }), { code: ErrorCode.BadField, path: 'edges', message: ['[from, to] pairs'] })
  rejects(graph([node('a'), node('b')], { edges: [['a', 'b', 'c']] }), {
    code: ErrorCode.BadField,
    path: 'edges[0]',
    message: ['[from, to] pair'],
  })
  rejects(graph([node('a')], { edges: [[1, 'a']] }), { code: ErrorCode.BadField, path: 'edges[0][0]', message: ['number 1'] })
  rejects(graph([node('a')], { edges: [['a', 'a']] }), { code: ErrorCode.Cycle, path: 'edges[0]', message: ['cycle: a -> a'] })
})

test('graph validation: edges_ex endpoints must exist', () => {
  rejects(graph([node('a')], { edges_ex: [{ from: 'nope', to: 'a' }] }), {
    code: ErrorCode.UnknownNode,
    path: 'edges_ex[0].from',
    message: ['edges_ex edge "nope" -> "a" names unknown node "nope"'],
  })
})

test('graph validation: edges_ex mode and trigger must be strings', () => {
  rejects(graph([node('a'), node('b')], { edges_ex: [{ from: 'a', to: 'b', trigger: 5 }] }), {
    code: ErrorCode.BadField,
    path: 'edges_ex[0].trigger',
    message: ['trigger of edges_ex edge "a" -> "b" must be a string', 'number 5'],
  })
  rejects(graph([node('a'), node('b')], { edges_ex: [{ from: 'a', to: 'b', mode: true }] }), {
    code: ErrorCode.BadField,
    path: 'edges_ex[0].mode',
    message: ['boolean true'],
  })
  rejects(graph([node('a')], { edges_ex: [['a', 'a']] }), { code: ErrorCode.BadField, path: 'edges_ex[0]', message: ['must be an object'] })
})

// ---------------------------------------------------------------- routing

test('graph validation: routing targets must exist', () => {
  rejects(graph([node('a', { routing: { on_success: [], on_failure: ['rescue'] } })]), {
    code: ErrorCode.UnknownNode,
    path: 'nodes[0].routing.on_failure[0]',
    message: ['node "a" routes on_failure to unknown node "rescue"'],
  })
})

test('graph validation: a node cannot route to itself', () => {
  rejects(graph([node('a', { routing: { on_success: ['a'] } })]), {
    code: ErrorCode.Cycle,
    path: 'nodes[0].routing.on_success[0]',
    message: ['node "a" routes on_success to itself'],
  })
})

test('graph validation: routing must be an object of id arrays', () => {
  rejects(graph([node('a', { routing: ['b'] })]), { code: ErrorCode.BadField, path: 'nodes[0].routing', message: ['must be an object'] })
  rejects(graph([node('a'), node('b', { routing: { on_success: 'a' } })]), {
    code: ErrorCode.BadField,
    path: 'nodes[1].routing.on_success',
    message: ['must be an array of node ids'],
  })
})

// ---------------------------------------------------------------- fan_in

test('graph validation: fan_in count:N above the number of parents', () => {
  const err = rejects(graph([node('a'), node('b'), node('x', { depends_on: ['a', 'b'], fan_in: 'count:5' })]), {
    code: ErrorCode.BadFanIn,
    path: 'nodes[2].fan_in',
    message: ['fan_in "count:5" on node "x" needs 5 parents but it has 2'],
  })
  assert.equal(err.details['needed'], 5)
  assert.equal(err.details['parents'], 2)
})

test('graph validation: fan_in count on a node without parents', () => {
  rejects(graph([node('x', { fan_in: 'count:1' })]), {
    code: ErrorCode.BadFanIn,
    path: 'nodes[0].fan_in',
    message: ['fan_in "count:1" on node "x" needs 1 parent but it has none'],
  })
})

test('graph validation: malformed fan_in values', () => {
  const g = (fan_in: unknown) => graph([node('a'), node('x', { depends_on: ['a'], fan_in })])
  for (const bad of ['count:0', 'count:-1', 'count:1.5', 'count:', 'count:abc']) {
    rejects(g(bad), { code: ErrorCode.BadFanIn, path: 'nodes[1].fan_in', message: [`invalid fan_in ${JSON.stringify(bad)}`, 'integer >= 1'] })
  }
  for (const bad of ['some', 'ALL', ' any']) {
    rejects(g(bad), { code: ErrorCode.BadFanIn, path: 'nodes[1].fan_in', message: ['expected "all", "any" or "count:N"'] })
  }
  rejects(g(2), { code: ErrorCode.BadFanIn, path: 'nodes[1].fan_in', message: ['invalid fan_in number 2'] })
})

test('graph validation: fan_in counts parents from depends_on, edges and edges_ex together', () => {
  const spec = parseGraph(
    graph([node('a'), node('b'), node('c'), node('x', { depends_on: ['a', 'a'], fan_in: 'count:3' })], {
      edges: [['b', 'x']],
      edges_ex: [{ from: 'c', to: 'x' }, { from: 'a', to: 'x' }],
    }),
    options,
  )
  assert.deepEqual(spec.nodes[3]!.fan_in, { kind: 'count', n: 3 })
  rejects(
    graph([node('a'), node('b'), node('x', { depends_on: ['a', 'a'], fan_in: 'count:3' })], { edges: [['a', 'x']] }),
    { code: ErrorCode.BadFanIn, path: 'nodes[2].fan_in', message: ['needs 3 parents but it has 1'] },
  )
})

test('graph validation: fan_in count:N does not count a routing source, as the coordinator does not (it was accepted, then the coordinator lowered N to the parents it has)', () => {
  const routed = (fan_in: string) => graph([node('a', { routing: { on_success: ['x'] } }), node('c'), node('x', { depends_on: ['a', 'c'], fan_in })])
  rejects(routed('count:2'), {
    code: ErrorCode.BadFanIn,
    path: 'nodes[2].fan_in',
    message: ['fan_in "count:2" on node "x" needs 2 parents but it has 1 ("a" routes to it: a routing source is not a parent)'],
  })
  assert.deepEqual(parseGraph(routed('count:1'), options).nodes[2]!.fan_in, { kind: 'count', n: 1 })
  rejects(graph([node('a', { routing: { on_failure: ['x'] } }), node('x', { depends_on: ['a'], fan_in: 'count:1' })]), {
    code: ErrorCode.BadFanIn,
    path: 'nodes[1].fan_in',
    message: ['needs 1 parent but it has none ("a" routes to it: a routing source is not a parent)'],
  })
})

// ---------------------------------------------------------------- io

test('graph validation: io.start_when must be ready or first_batch', () => {
  rejects(graph([node('a', { io: { start_when: 'asap' } })]), {
    code: ErrorCode.BadField,
    path: 'nodes[0].io.start_when',
    message: ['invalid start_when string "asap" on node "a"', 'expected "ready" or "first_batch"'],
  })
  rejects(graph([node('a', { io: 'x' })]), { code: ErrorCode.BadField, path: 'nodes[0].io', message: ['must be an object'] })
})

test('graph validation: unknown input adapter lists the known ones', () => {
  const err = rejects(graph([node('a', { io: { input_inline: { input_adapter: 'pull.magic' } } })]), {
    code: ErrorCode.UnknownInputAdapter,
    path: 'nodes[0].io.input_inline.input_adapter',
    message: ['unknown input adapter "pull.magic" on node "a"', '"pull.from_artifacts", "pull.from_artifacts.rechunk:size"'],
  })
  assert.equal(err.details['adapter'], 'pull.magic')
  rejects(graph([node('a', { io: { input_inline: { input_adapter: 1 } } })]), {
    code: ErrorCode.BadField,
    path: 'nodes[0].io.input_inline.input_adapter',
    message: ['must be a string'],
  })
})

test('graph validation: a near miss of a built-in input adapter is refused at submission, with the name meant, even where unknown names pass (before: the worker failed the node once its upstream had run)', () => {
  const lenient = { coordinatorFns: new Set<string>() }
  const adapter = (name: string) => graph([node('up'), node('a', { depends_on: ['up'], io: { input_inline: { input_adapter: name, input_args: { from_nodes: ['up'], size: 2 } } } })])
  for (const [typo, meant] of [
    ['pull.from_artifact', 'pull.from_artifacts'],
    ['Pull.From_Artifacts', 'pull.from_artifacts'],
    ['pull.from_artifacts.rechunk', 'pull.from_artifacts.rechunk:size'],
    ['pull.from_artifacts.rechunk:100', 'pull.from_artifacts.rechunk:size'],
    ['pull.from_artifacts.rechunk:sise', 'pull.from_artifacts.rechunk:size'],
  ]) {
    let caught: unknown
    try {
      parseGraph(adapter(typo as string), lenient)
    } catch (err) {
      caught = err
    }
    assert.ok(caught instanceof GraphValidationError, `${typo}: refused`)
    assert.equal(caught.code, ErrorCode.UnknownInputAdapter)
    assert.equal(caught.path, 'nodes[1].io.input_inline.input_adapter')
    assert.ok(caught.message.includes(`unknown input adapter ${JSON.stringify(typo)} on node "a" (did you mean ${JSON.stringify(meant)}?)`), caught.message)
    assert.equal(caught.details['suggestion'], meant)
  }
  // Built-in names, and names like none of them (a Python worker's own adapter), pass.
  for (const ok of ['pull.from_artifacts', 'pull.from_artifacts.rechunk:size', 'pull.from_s3', 'my.adapter']) parseGraph(adapter(ok), lenient)
  // A name in the given set of adapters is known, never a typo.
  parseGraph(adapter('pull.from_artifact'), { ...lenient, inputAdapters: new Set(['pull.from_artifact']) })
  // Where unknown names are refused, the message names the one meant too.
  rejects(adapter('pull.from_artifact'), {
    code: ErrorCode.UnknownInputAdapter,
    path: 'nodes[1].io.input_inline.input_adapter',
    message: ['unknown input adapter "pull.from_artifact" on node "a" (did you mean "pull.from_artifacts"?); known adapters:'],
  })
})

test('graph validation: from_nodes naming a node twice is refused (the adapter waited for it twice and never ended)', () => {
  const inline = (input_args: unknown) => ({ io: { input_inline: { input_adapter: 'pull.from_artifacts', input_args } } })
  rejects(graph([node('a'), node('x'), node('b', inline({ from_nodes: ['a', 'x', 'a'] }))]), {
    code: ErrorCode.BadField,
    path: 'nodes[2].io.input_inline.input_args.from_nodes[2]',
    message: ['node "b" names "a" twice in from_nodes (at [0] and [2])'],
  })
  rejects(graph([node('a'), { node_id: 'm', type: 'coordinator_fn', depends_on: ['a'], io: { fn: 'merge.generic', fn_args: { from_nodes: ['a', 'a'] } } }]), {
    code: ErrorCode.BadField,
    path: 'nodes[1].io.fn_args.from_nodes[1]',
    message: ['names "a" twice in from_nodes'],
  })
})

test('graph validation: a coordinator function reads only nodes it depends on, never on their first batch (it ran at once, or on the first batch, and its task finished with a partial result)', () => {
  const merge = (more: Json = {}, args: Json = { from_nodes: ['a'] }): Json => ({ node_id: 'm', type: 'coordinator_fn', ...more, io: { fn: 'merge.generic', fn_args: args, ...((more['io'] as Json | undefined) ?? {}) } })
  rejects(graph([node('a'), merge()]), {
    code: ErrorCode.BadField,
    path: 'nodes[1].io.fn_args.from_nodes[0]',
    message: ['coordinator function "m" reads the output of "a" (from_nodes) but does not depend on it', 'add "a" to its depends_on'],
  })
  rejects(graph([node('a'), merge({ depends_on: ['a'], io: { start_when: 'first_batch' } })]), {
    code: ErrorCode.BadField,
    path: 'nodes[1].io.fn_args.from_nodes[0]',
    message: ['reads the output of "a" (from_nodes) once, when it runs, but starts on its first batch (io.start_when is "first_batch")'],
  })
  rejects(graph([node('a'), merge({}, { from_node: 'a' })], { edges_ex: [{ from: 'a', to: 'm', mode: 'async', trigger: 'on_batch' }] }), {
    code: ErrorCode.BadField,
    path: 'nodes[1].io.fn_args.from_node',
    message: ['starts on its first batch (an edges_ex async / on_batch edge)'],
  })
  // Fine: a direct or further ancestor (depends_on, edges, routing), read once it ended; a
  // function that reads nothing may start on a first batch; a worker's pull adapter waits anyway.
  parseGraph(graph([node('a'), merge({ depends_on: ['a'] })]), options)
  parseGraph(graph([node('a'), node('b', { depends_on: ['a'], io: { start_when: 'first_batch' } }), merge({ depends_on: ['b'] })]), options)
  parseGraph(graph([node('a'), merge()], { edges: [['a', 'm']] }), options)
  parseGraph(graph([node('a', { routing: { on_failure: ['m'] } }), merge()]), options)
  parseGraph(graph([node('a'), { node_id: 'v', type: 'coordinator_fn', depends_on: ['a'], io: { start_when: 'first_batch', fn: 'vars.set', fn_args: { kv: { started: true } } } }]), options)
  parseGraph(graph([node('a'), node('p', { io: { input_inline: { input_adapter: 'pull.from_artifacts', input_args: { from_nodes: ['a'] } } } })]), options)
  // Through a worker that pulls it (its adapter ends once the node completed).
  parseGraph(graph([node('a'), node('p', { io: { input_inline: { input_adapter: 'pull.from_artifacts', input_args: { from_nodes: ['a'] } } } }), merge({ depends_on: ['p'] })]), options)
})

test('graph validation: input_args from_nodes must name existing nodes', () => {
  const inline = (input_args: unknown) => ({ io: { input_inline: { input_adapter: 'pull.from_artifacts', input_args } } })
  rejects(graph([node('a'), node('b', inline({ from_nodes: ['a', 'zz'] }))]), {
    code: ErrorCode.UnknownNode,
    path: 'nodes[1].io.input_inline.input_args.from_nodes[1]',
    message: ['node "b" reads from unknown node "zz" (from_nodes)'],
  })
  rejects(graph([node('a'), node('b', inline({ from_node: 'zz' }))]), {
    code: ErrorCode.UnknownNode,
    path: 'nodes[1].io.input_inline.input_args.from_node',
    message: ['unknown node "zz" (from_node)'],
  })
  rejects(graph([node('a'), node('b', inline({ from_nodes: 3 }))]), {
    code: ErrorCode.BadField,
    path: 'nodes[1].io.input_inline.input_args.from_nodes',
    message: ['a node id or an array of node ids', 'number 3'],
  })
  rejects(graph([node('b', inline({ from_node: 'b' }))]), {
    code: ErrorCode.Cycle,
    path: 'nodes[0].io.input_inline.input_args.from_node',
    message: ['node "b" reads its own output'],
  })
})

test('graph validation: a built-in adapter\'s misspelt argument is refused at submission (it was ignored: a rechunk took each whole meta as one item)', () => {
  const rechunk = (args: Record<string, unknown>) => graph([node('a'), node('b', { io: { input_inline: { input_adapter: 'pull.from_artifacts.rechunk:size', input_args: { from_nodes: ['a'], ...args } } } })])
  rejects(rechunk({ size: 2, metaListKey: 'items' }), {
    code: ErrorCode.BadField,
    path: 'nodes[1].io.input_inline.input_args.metaListKey',
    message: ['unknown input_args field "metaListKey" of pull.from_artifacts.rechunk:size on node "b" (did you mean "meta_list_key"?)'],
  })
  rejects(rechunk({ sizee: 3 }), { code: ErrorCode.BadField, path: 'nodes[1].io.input_inline.input_args.sizee', message: ['did you mean "size"?'] })
  rejects(graph([node('a'), node('b', { io: { input_inline: { input_adapter: 'pull.from_artifacts', input_args: { from_nodes: ['a'], pollMs: 5 } } } })]), {
    code: ErrorCode.BadField,
    path: 'nodes[1].io.input_inline.input_args.pollMs',
    message: ['did you mean "poll_ms"?'],
  })
  // A key of another name is a peer adapter's own: it passes, as a near miss beside the right key does.
  parseGraph(rechunk({ size: 2, window: 'x', meta_list_key: 'k', metaListKey: 'k' }), options)
})

test('graph validation: adapter args\' values (other than node references) are left to the worker (SCENARIOS S-054: bad_input_args)', () => {
  const spec = parseGraph(
    graph([
      node('a'),
      node('b', {
        io: { input_inline: { input_adapter: 'pull.from_artifacts.rechunk:size', input_args: { from_nodes: ['a'], size: -1, meta_list_key: 9 } } },
      }),
      node('c', { io: { input_inline: { input_adapter: 'pull.from_artifacts', input_args: 'nonsense' } } }),
    ]),
    options,
  )
  assert.deepEqual(spec.nodes[1]!.io.input_inline, {
    input_adapter: 'pull.from_artifacts.rechunk:size',
    input_args: { from_nodes: ['a'], size: -1, meta_list_key: 9 },
  })
})

test('graph validation: fn_args from_nodes must name existing nodes', () => {
  rejects(
    graph([node('a'), node('m', { type: 'coordinator_fn', io: { fn: 'merge.generic', fn_args: { from_nodes: ['a', 'nope'] } } })]),
    { code: ErrorCode.UnknownNode, path: 'nodes[1].io.fn_args.from_nodes[1]', message: ['node "m" reads from unknown node "nope"'] },
  )
  rejects(graph([node('m', { type: 'coordinator_fn', io: { fn: 'noop', fn_args: [] } })]), {
    code: ErrorCode.BadField,
    path: 'nodes[0].io.fn_args',
    message: ['must be an object'],
  })
})

test('graph validation: unknown coordinator function lists the known ones', () => {
  const err = rejects(graph([node('m', { type: 'coordinator_fn', io: { fn: 'merge.magic' } })]), {
    code: ErrorCode.UnknownCoordinatorFn,
    path: 'nodes[0].io.fn',
    message: ['unknown coordinator function "merge.magic" on node "m"', 'known functions: "merge.generic", "noop", "vars.set"'],
  })
  assert.deepEqual(err.details['known'], ['merge.generic', 'noop', 'vars.set'])
})

test('graph validation: coordinator_fn without io.fn', () => {
  rejects(graph([node('m', { type: 'coordinator_fn' })]), {
    code: ErrorCode.UnknownCoordinatorFn,
    path: 'nodes[0].io.fn',
    message: ['node "m" has type "coordinator_fn" but no io.fn', 'known functions:'],
  })
  rejects(graph([node('m', { type: 'coordinator_fn', io: { fn: 42 } })]), {
    code: ErrorCode.BadField,
    path: 'nodes[0].io.fn',
    message: ['must be a string', 'number 42'],
  })
})

test('graph validation: io.fn on a node a worker runs (a near miss of coordinator_fn) is refused: the node waited for a worker for ever', () => {
  for (const type of ['coordinator-fn', 'coordinatorfn', 'fn']) {
    rejects(graph([node('m', { type, io: { fn: 'noop' } })]), {
      code: ErrorCode.BadField,
      path: 'nodes[0].io.fn',
      message: [`io.fn is run only on a node of type "coordinator_fn"; node "m" has type "${type}"`, 'set its type to "coordinator_fn" or remove io.fn'],
    })
  }
  // null is absent, as for other fields.
  assert.equal(parseGraph({ nodes: [{ node_id: 'm', type: 'w', io: { fn: null } }] }, options).nodes.length, 1)
})

// ---------------------------------------------------------------- retry_policy

test('graph validation: retry_policy.max must be an integer >= 1', () => {
  for (const bad of [0, 1.5, -2, '3']) {
    rejects(graph([node('a', { retry_policy: { max: bad } })]), {
      code: ErrorCode.BadField,
      path: 'nodes[0].retry_policy.max',
      message: ['retry_policy.max of node "a" must be an integer >= 1'],
    })
  }
})

test('graph validation: retry_policy.backoff_sec must be a finite number >= 0', () => {
  for (const bad of [-1, Number.POSITIVE_INFINITY, Number.NaN, '5']) {
    rejects(graph([node('a', { retry_policy: { backoff_sec: bad } })]), {
      code: ErrorCode.BadField,
      path: 'nodes[0].retry_policy.backoff_sec',
      message: ['finite number >= 0'],
    })
  }
})

test('graph validation: retry_policy.permanent_on must be an array of strings', () => {
  rejects(graph([node('a', { retry_policy: { permanent_on: 'bad_input' } })]), {
    code: ErrorCode.BadField,
    path: 'nodes[0].retry_policy.permanent_on',
    message: ['array of reason codes'],
  })
  rejects(graph([node('a', { retry_policy: { permanent_on: ['x', 1] } })]), {
    code: ErrorCode.BadField,
    path: 'nodes[0].retry_policy.permanent_on[1]',
    message: ['number 1'],
  })
  rejects(graph([node('a', { retry_policy: 3 })]), { code: ErrorCode.BadField, path: 'nodes[0].retry_policy', message: ['must be an object'] })
})

// ---------------------------------------------------------------- cycles

test('graph validation: cycle names its path', () => {
  const err = rejects(
    graph([node('a', { depends_on: ['c'] }), node('b', { depends_on: ['a'] }), node('c', { depends_on: ['b'] })]),
    { code: ErrorCode.Cycle, path: 'nodes[0].depends_on[0]', message: ['cycle: a -> b -> c -> a'] },
  )
  assert.deepEqual(err.details['cycle'], ['a', 'b', 'c', 'a'])
})

test('graph validation: cycles through edges, edges_ex and routing are found', () => {
  const viaEdges = rejects(graph([node('a'), node('b')], { edges: [['a', 'b']], edges_ex: [{ from: 'b', to: 'a' }] }), {
    code: ErrorCode.Cycle,
    path: 'edges_ex[0]',
    message: ['cycle: a -> b -> a'],
  })
  assert.deepEqual(viaEdges.details['cycle'], ['a', 'b', 'a'])
  // a routes to b on failure, and b feeds a: b runs after a and before a.
  rejects(graph([node('a', { depends_on: ['b'], routing: { on_failure: ['b'] } }), node('b')]), {
    code: ErrorCode.Cycle,
    path: 'nodes[0].depends_on[0]',
    message: ['cycle: a -> b -> a'],
  })
})

test('graph validation: a diamond is not a cycle', () => {
  const spec = parseGraph(
    graph([node('a'), node('b', { depends_on: ['a'] }), node('c', { depends_on: ['a'] }), node('d', { depends_on: ['b', 'c'] })], {
      edges: [['a', 'd']],
    }),
    options,
  )
  assert.equal(spec.nodes.length, 4)
})

// ---------------------------------------------------------------- error collection

test('graph validation: every problem is listed in details.errors, the first one is thrown', () => {
  const err = rejects(
    graph([node('a', { depends_on: ['x'] }), node('a'), node('b', { fan_in: 'count:9', io: { start_when: 'never' } })], {
      edges: [['b', 'y']],
    }),
    { code: ErrorCode.UnknownNode, path: 'nodes[0].depends_on[0]', message: ['unknown node "x"', '(and 4 more problems; see details.errors)'] },
  )
  const errors = err.details['errors'] as { code: string; path: string; message: string }[]
  assert.deepEqual(
    errors.map((e) => [e.code, e.path]),
    [
      [ErrorCode.UnknownNode, 'nodes[0].depends_on[0]'],
      [ErrorCode.DuplicateNodeId, 'nodes[1].node_id'],
      [ErrorCode.BadFanIn, 'nodes[2].fan_in'],
      [ErrorCode.BadField, 'nodes[2].io.start_when'],
      [ErrorCode.UnknownNode, 'edges[0][1]'],
    ],
  )
  for (const e of errors) assert.ok(e.message.startsWith(`${e.path}: `), e.message)
})

test('graph validation: a single problem has no "more problems" suffix', () => {
  const err = rejects(graph([node('a', { depends_on: ['x'] })]), { code: ErrorCode.UnknownNode, path: 'nodes[0].depends_on[0]', message: [] })
  assert.equal(err.message, 'nodes[0].depends_on[0]: node "a" depends on unknown node "x"')
  assert.equal((err.details['errors'] as unknown[]).length, 1)
})

test('graph validation: node data must be plain JSON', () => {
  rejects(graph([node('a', { io: { input_inline: { input_args: { poll_ms: Number.POSITIVE_INFINITY } } } })]), {
    code: ErrorCode.BadField,
    path: 'nodes[0].io.input_inline.input_args.poll_ms',
    message: ['must be plain JSON data', 'got Infinity'],
  })
  rejects(graph([node('a', { meta: [1, new Date(0)] })]), {
    code: ErrorCode.BadField,
    path: 'nodes[0].meta[1]',
    message: ['must be plain JSON data'],
  })
  rejects(graph([node('a', { 'odd key': [Number.NaN] })]), {
    code: ErrorCode.BadField,
    path: 'nodes[0]["odd key"][0]',
    message: ['must be plain JSON data'],
  })
  const loop: Json = {}
  loop['self'] = loop
  rejects(graph([node('a', { meta: loop })]), { code: ErrorCode.BadField, path: 'nodes[0].meta.self', message: ['node "a": circular reference'] })
  let deep: unknown = 1
  for (let i = 0; i < 300; i++) deep = [deep]
  rejects(graph([node('a', { meta: deep })]), {
    code: ErrorCode.GraphLimit,
    path: `nodes[0].meta${'[0]'.repeat(32)}`,
    message: ['node "a": value nested deeper than 32 levels (coordinator config maxParamsDepth)'],
  })
})

// ---------------------------------------------------------------- normalisation

test('graph normalisation: defaults for a minimal graph', () => {
  const spec = parseGraph({ nodes: [{ node_id: 'a', type: 'extractor' }] }, options)
  assert.deepEqual(spec, {
    schema_version: '1.0',
    nodes: [
      {
        node_id: 'a',
        type: 'extractor',
        depends_on: [],
        fan_in: { kind: 'all' },
        fan_in_raw: 'all',
        io: { start_when: 'ready' },
        retry_policy: null,
        routing: null,
        extra: {},
      },
    ],
    edges: [],
    edges_ex: [],
  })
})

test('graph normalisation: priming fields from the Python tests are accepted and dropped', () => {
  for (const status of ['queued', null, '', undefined]) {
    const spec = parseGraph(graph([node('a', { status, attempt_epoch: 0, stats: {}, lease: {} })]), options)
    assert.deepEqual(spec.nodes[0]!.extra, {})
    assert.equal('status' in spec.nodes[0]!, false)
  }
  const spec = parseGraph(graph([node('a', { status: null, attempt_epoch: null, stats: null, lease: null })]), options)
  assert.deepEqual(spec.nodes[0]!.extra, {})
})

test('graph normalisation: fan_in parsing', () => {
  const spec = parseGraph(
    graph([
      node('a'),
      node('b'),
      node('all', { depends_on: ['a', 'b'], fan_in: 'all' }),
      node('any', { depends_on: ['a', 'b'], fan_in: 'any' }),
      node('two', { depends_on: ['a', 'b'], fan_in: 'count:2' }),
      node('lead0', { depends_on: ['a', 'b'], fan_in: 'count:02' }),
      node('root_any', { fan_in: 'any' }),
      node('nul', { depends_on: ['a'], fan_in: null }),
    ]),
    options,
  )
  const fan = Object.fromEntries(spec.nodes.map((n) => [n.node_id, [n.fan_in, n.fan_in_raw]]))
  assert.deepEqual(fan['all'], [{ kind: 'all' }, 'all'])
  assert.deepEqual(fan['any'], [{ kind: 'any' }, 'any'])
  assert.deepEqual(fan['two'], [{ kind: 'count', n: 2 }, 'count:2'])
  assert.deepEqual(fan['lead0'], [{ kind: 'count', n: 2 }, 'count:2'])
  assert.deepEqual(fan['root_any'], [{ kind: 'any' }, 'any'])
  assert.deepEqual(fan['nul'], [{ kind: 'all' }, 'all'])
})

test('graph normalisation: retry_policy defaults and fractional backoff', () => {
  const spec = parseGraph(
    graph([
      node('a', { retry_policy: {} }),
      node('b', { retry_policy: { max: 5, backoff_sec: 0.25, permanent_on: ['bad_input', 'bad_input', 'x'] } }),
      node('c', { retry_policy: null }),
    ]),
    options,
  )
  // No backoff_sec: the coordinator's default delay (1 s), as for a node without a policy.
  assert.deepEqual(spec.nodes[0]!.retry_policy, { max: 3, backoff_sec: 1, permanent_on: [] })
  assert.deepEqual(spec.nodes[1]!.retry_policy, { max: 5, backoff_sec: 0.25, permanent_on: ['bad_input', 'x'] })
  assert.equal(spec.nodes[2]!.retry_policy, null)
})

test('graph normalisation: edges, edges_ex defaults and routing', () => {
  const spec = parseGraph(
    graph(
      [
        node('a', { routing: { on_success: ['ok', 'ok'] } }),
        node('b', { depends_on: ['a', 'a'], routing: { on_failure: ['rescue'] } }),
        node('ok'),
        node('rescue'),
      ],
      { edges: [['a', 'b']], edges_ex: [{ from: 'a', to: 'b' }, { from: 'a', to: 'b', mode: 'sync', trigger: 'on_batch' }] },
    ),
    options,
  )
  assert.deepEqual(spec.edges, [['a', 'b']])
  assert.deepEqual(spec.edges_ex, [
    { from: 'a', to: 'b', mode: 'async', trigger: 'on_done' },
    { from: 'a', to: 'b', mode: 'sync', trigger: 'on_batch' },
  ])
  assert.deepEqual(spec.nodes[0]!.routing, { on_success: ['ok'], on_failure: [] })
  assert.deepEqual(spec.nodes[1]!.routing, { on_success: [], on_failure: ['rescue'] })
  assert.deepEqual(spec.nodes[1]!.depends_on, ['a'])
})

test('graph normalisation: from_node alias accepted in input_args and fn_args', () => {
  const spec = parseGraph(
    graph([
      node('a'),
      node('b', {
        depends_on: ['a'],
        io: { start_when: 'first_batch', input_inline: { input_adapter: 'pull.from_artifacts', input_args: { from_node: 'a', poll_ms: 50 } } },
      }),
      node('m', { type: 'coordinator_fn', depends_on: ['b'], io: { fn: 'merge.generic', fn_args: { from_node: 'b', target: { key: 'out' } } } }),
    ]),
    options,
  )
  assert.deepEqual(spec.nodes[1]!.io, {
    start_when: 'first_batch',
    input_inline: { input_adapter: 'pull.from_artifacts', input_args: { from_node: 'a', poll_ms: 50 } },
  })
  assert.deepEqual(spec.nodes[2]!.io, { start_when: 'ready', fn: 'merge.generic', fn_args: { from_node: 'b', target: { key: 'out' } } })
})

test('graph normalisation: unknown node fields go to extra, unknown top-level fields are ignored', () => {
  const spec = parseGraph(graph([node('a', { label: 'A', notes: { by: 'ops' }, when: { var: 'sla' } })], { owner: 'me' }), options)
  assert.deepEqual(spec.nodes[0]!.extra, { label: 'A', notes: { by: 'ops' } })
  assert.deepEqual(spec.nodes[0]!.when, { var: 'sla', op: 'eq', value: undefined }, '`when` is a known field: a guard')
  assert.equal('owner' in spec, false)
})

test('graph normalisation: the result shares nothing with the input', () => {
  const input = graph([node('a', { io: { input_inline: { input_args: { poll_ms: 1 } } }, meta: { k: [1] } })])
  const spec = parseGraph(input, options)
  const raw = (input['nodes'] as Json[])[0]!
  ;((raw['io'] as Json)['input_inline'] as Json)['input_args'] = 'changed'
  ;(raw['meta'] as { k: number[] }).k.push(2)
  assert.deepEqual(spec.nodes[0]!.io.input_inline, { input_args: { poll_ms: 1 } })
  assert.deepEqual(spec.nodes[0]!.extra, { meta: { k: [1] } })
})

test('graph normalisation: a "__proto__" field is kept as data', () => {
  const input = JSON.parse('{"nodes":[{"node_id":"a","type":"p","__proto__":{"polluted":true}}]}') as unknown
  const spec = parseGraph(input, options)
  const extra = spec.nodes[0]!.extra
  assert.equal(Object.getPrototypeOf(extra), Object.prototype)
  assert.deepEqual(Object.getOwnPropertyDescriptor(extra, '__proto__')?.value, { polluted: true })
  assert.equal(({} as Json)['polluted'], undefined)
})

test('graph normalisation: the PROTOCOL.md example parses', () => {
  const spec = parseGraph(
    {
      nodes: [
        { node_id: 'extract', type: 'extractor' },
        {
          node_id: 'transform',
          type: 'processor',
          depends_on: ['extract'],
          fan_in: 'all',
          io: {
            start_when: 'first_batch',
            input_inline: { input_adapter: 'pull.from_artifacts', input_args: { from_nodes: ['extract'], poll_ms: 50 } },
          },
          retry_policy: { max: 3, backoff_sec: 5, permanent_on: ['bad_input'] },
        },
        {
          node_id: 'merge',
          type: 'coordinator_fn',
          depends_on: ['transform'],
          io: { fn: 'merge.generic', fn_args: { from_nodes: ['transform'], target: { key: 'out' } } },
        },
      ],
      edges: [
        ['extract', 'transform'],
        ['transform', 'merge'],
      ],
      edges_ex: [{ from: 'extract', to: 'transform', mode: 'async', trigger: 'on_batch' }],
    },
    options,
  )
  assert.deepEqual(
    spec.nodes.map((n) => n.node_id),
    ['extract', 'transform', 'merge'],
  )
  assert.deepEqual(spec.nodes[1]!.retry_policy, { max: 3, backoff_sec: 5, permanent_on: ['bad_input'] })
})

test('graph normalisation: exponential backoff fields, with their ranges', () => {
  const spec = parseGraph(graph([node('a', { retry_policy: { max: 5, backoff_sec: 1, backoff_factor: 2, backoff_max_sec: 30, jitter: 0.1 } })]), options)
  assert.deepEqual(spec.nodes[0]!.retry_policy, { max: 5, backoff_sec: 1, backoff_factor: 2, backoff_max_sec: 30, jitter: 0.1, permanent_on: [] })
  assert.throws(
    () => parseGraph(graph([node('a', { retry_policy: { backoff_factor: 0.5, jitter: 2 } })]), options),
    (err: unknown) => err instanceof Error && /backoff_factor/.test(err.message),
  )
})

test('a misspelt top-level field is refused with a hint (edgesEx would turn streaming edges off)', () => {
  for (const [key, hint] of [
    ['edgesEx', 'edges_ex'],
    ['edge_ex', 'edges_ex'],
    ['node', 'nodes'],
    ['schemaVersion', 'schema_version'],
  ]) {
    assert.throws(
      () => parseGraph({ nodes: [{ node_id: 'a', type: 't' }], [key as string]: [] }, options),
      (err: unknown) => err instanceof Error && err.message.includes(`did you mean "${hint}"`),
      key,
    )
  }
  // Unrelated extra fields are not refused (a peer may add its own).
  parseGraph({ nodes: [{ node_id: 'a', type: 't' }], description: 'x' }, options)
})
