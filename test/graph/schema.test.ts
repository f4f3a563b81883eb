/**
 * schemas/graph.schema.json: up to date with its source (src/graph/schema.ts), a valid draft
 * 2020-12 schema with a description on every field, and in agreement with `parseGraph` on a
 * corpus: valid graphs accepted by both, invalid ones refused by both, and the documented
 * differences (what only the parser or only the schema can refuse) asserted as such.
 * FLOWKIT_WRITE_SCHEMA=1 rewrites the schema file instead of failing when it is stale.
 */
import assert from 'node:assert/strict'
import { readFileSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { test } from 'node:test'
import { Ajv2020 } from 'ajv/dist/2020.js'
import { BUILTIN_FUNCTIONS, GraphValidationError, graphJsonSchema, parseGraph } from 'flowkit'
import { graphSchemaText } from '../../src/graph/schema.ts'
import { salesGraph } from '../../src/cli/demo-pipeline.ts'
import { docExamples } from '../types/examples.ts'

const SCHEMA_FILE = new URL('../../schemas/graph.schema.json', import.meta.url)

const ajv = new Ajv2020({ strict: true, strictRequired: false, strictTypes: false, allErrors: true })
const validate = ajv.compile(graphJsonSchema())
const fns = new Set(Object.keys(BUILTIN_FUNCTIONS))

type Json = Record<string, unknown>

function parserError(graph: unknown): string | null {
  try {
    parseGraph(graph, { coordinatorFns: fns })
    return null
  } catch (err) {
    if (!(err instanceof GraphValidationError)) throw err
    return err.message
  }
}

function schemaError(graph: unknown): string | null {
  return validate(graph) ? null : ajv.errorsText(validate.errors)
}

/** One node `a` of type `t` with `more`, plus node `b` (a parent for the references below). */
const n = (more: Json): Json => ({ nodes: [{ node_id: 'b', type: 'src' }, { node_id: 'a', type: 't', depends_on: ['b'], ...more }] })
const io = (more: Json): Json => n({ io: more })
const fn = (name: string, args?: unknown): Json => n({ type: 'coordinator_fn', io: args === undefined ? { fn: name } : { fn: name, fn_args: args } })
const pull = (adapter: string, args?: unknown): Json => io({ input_inline: args === undefined ? { input_adapter: adapter } : { input_adapter: adapter, input_args: args } })
const when = (guard: unknown): Json => n({ when: guard })

test('graph schema: schemas/graph.schema.json is up to date with src/graph/schema.ts', () => {
  const want = graphSchemaText()
  if (process.env['FLOWKIT_WRITE_SCHEMA'] === '1') writeFileSync(SCHEMA_FILE, want)
  assert.equal(readFileSync(SCHEMA_FILE, 'utf8'), want, 'stale schema file: regenerate with FLOWKIT_WRITE_SCHEMA=1 (see src/graph/schema.ts)')
  assert.equal(graphSchemaText(), want, 'the text is deterministic')
  assert.deepEqual(JSON.parse(want), graphJsonSchema())
})

test('graph schema: published in the package, as schemas/graph.schema.json and flowkit/graph.schema.json', () => {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { files: string[]; exports: Record<string, unknown> }
  assert.ok(pkg.files.includes('schemas'), 'package.json "files" ships schemas/')
  assert.equal(pkg.exports['./graph.schema.json'], './schemas/graph.schema.json')
  assert.equal(createRequire(import.meta.url).resolve('flowkit/graph.schema.json'), fileURLToPath(SCHEMA_FILE))
})

test('graph schema: a strict draft 2020-12 schema with a description on every field and definition', () => {
  const schema = graphJsonSchema()
  assert.equal(schema['$schema'], 'https://json-schema.org/draft/2020-12/schema')
  const missing: string[] = []
  const walk = (s: unknown, path: string, isField: boolean): void => {
    if (Array.isArray(s)) {
      s.forEach((x, i) => {
        walk(x, `${path}[${i}]`, false)
      })
      return
    }
    if (s === null || typeof s !== 'object') return
    const o = s as Json
    if (isField && typeof o['description'] !== 'string') missing.push(path)
    for (const [k, v] of Object.entries(o)) {
      if (k === 'properties' || k === '$defs') {
        // a field's schema in a conditional (if/then/else) only adds constraints to the field itself
        const conditional = /\/(if|then|else)(\/|$)/.test(path)
        for (const [f, fs] of Object.entries(v as Json)) walk(fs, `${path}/${k}/${f}`, !conditional && typeof fs === 'object')
      } else walk(v, `${path}/${k}`, false)
    }
  }
  walk(schema, '#', true)
  assert.deepEqual(missing, [], 'fields without a description')
})

// ---------------------------------------------------------------- both accept

const VALID: [string, unknown][] = [
  ['README quickstart', { nodes: [{ node_id: 'source', type: 'numbers' }, { node_id: 'square', type: 'squares', depends_on: ['source'], io: { start_when: 'first_batch', input_inline: { input_adapter: 'pull.from_artifacts.rechunk:size', input_args: { from_nodes: ['source'], size: 3, meta_list_key: 'items' } } }, retry_policy: { max: 3, backoff_sec: 0.5, permanent_on: ['bad_input'] } }] }],
  ['the demo pipeline (src/cli/demo-pipeline.ts)', salesGraph('examples/data/sales.csv')],
  ['nulls wherever a field may be absent', { schema_version: null, edges: null, edges_ex: null, nodes: [{ node_id: 'a', type: 't', depends_on: null, fan_in: null, io: null, retry_policy: null, routing: null, status: null, attempt_epoch: null, stats: null, lease: null }] }],
  ['$schema and schema_version', { $schema: './graph.schema.json', schema_version: '1.0', nodes: [{ node_id: 'a_B-9', type: 'etl.v2_x-y' }] }],
  ['priming fields', { nodes: [{ node_id: 'a', type: 't', status: 'queued', attempt_epoch: 0, stats: {}, lease: {} }, { node_id: 'b', type: 't', status: '  ' }] }],
  ['fan_in count, 9 digits', { nodes: [{ node_id: 'x', type: 't' }, { node_id: 'y', type: 't' }, { node_id: 'a', type: 't', depends_on: ['x', 'y', 'x'], fan_in: 'count:000000002' }] }],
  ['retry_policy fields null or absent', n({ retry_policy: { max: null, backoff_sec: null, permanent_on: null } })],
  ['retry_policy empty', n({ retry_policy: {} })],
  ['exponential backoff and a node timeout', n({ retry_policy: { max: 5, backoff_sec: 1, backoff_factor: 2, backoff_max_sec: 30, jitter: 0.2 }, timeout_sec: 90 })],
  ['routing lists empty or null', n({ routing: { on_success: [], on_failure: null } })],
  ['routing to another node', { nodes: [{ node_id: 'a', type: 't', routing: { on_success: ['b'], on_failure: ['c'] } }, { node_id: 'b', type: 't' }, { node_id: 'c', type: 't' }] }],
  ['edges_ex defaults', { nodes: [{ node_id: 'a', type: 't' }, { node_id: 'b', type: 't' }], edges_ex: [{ from: 'a', to: 'b' }, { from: 'a', to: 'b', mode: null, trigger: null }, { from: 'a', to: 'b', mode: 'sync', trigger: 'on_done' }] }],
  ['guards: all, any, not, ops', when({ all: [{ var: 'a.b-c.d_e', op: 'exists' }, { any: [{ var: 'x', op: null, value: 1 }, { var: 'x' }] }, { not: { var: 'y', op: 'nin', value: [] } }, { var: 'z', op: 'lte', value: 'm' }, { var: 'e', op: 'exists', value: false }] })],
  ['io: null start_when, inline data without adapter, open input_ref / batching', io({ start_when: null, input_inline: { input_adapter: null, input_args: { anything: 1 }, path: '/tmp/x' }, input_ref: { uri: 's3://b/k' }, batching: {} })],
  ['pull with from_node and poll_ms', pull('pull.from_artifacts', { from_node: 'b', poll_ms: 0 })],
  ['rechunk with meta_list_key null', pull('pull.from_artifacts.rechunk:size', { from_nodes: ['b'], size: 1, meta_list_key: null })],
  ['noop with or without args', fn('noop', { whatever: true })],
  ['merge.generic with from_node, target null', fn('merge.generic', { from_node: 'b', target: null })],
  ['metrics.aggregate, the seed form', fn('metrics.aggregate', { node_id: 'b', mode: null })],
  ['vars.set / merge / incr / unset', { nodes: [{ node_id: 'a', type: 'coordinator_fn', io: { fn: 'vars.set', fn_args: { key: 'a.b', value: null, block_secrets: true } } }, { node_id: 'b', type: 'coordinator_fn', io: { fn: 'vars.merge', fn_args: { data: {} } } }, { node_id: 'c', type: 'coordinator_fn', io: { fn: 'vars.incr', fn_args: { key: 'n', by: -0.5 } } }, { node_id: 'd', type: 'coordinator_fn', io: { fn: 'vars.unset', fn_args: { keys: ['a.b'], key: 'n' } } }] }],
]

test('graph schema and parser agree: valid graphs are accepted by both', () => {
  const docs = docExamples()
  assert.ok(docs.length >= 10, 'docs/graph-format.md has its examples')
  const corpus = [...VALID, ...docs.map((d, i): [string, unknown] => [`docs/graph-format.md example ${d.name ?? i}`, d.json])]
  const wrong = corpus.flatMap(([name, graph]) => {
    const p = parserError(graph)
    const s = schemaError(graph)
    return p === null && s === null ? [] : [`${name}: ${p === null ? '' : `the parser refuses it (${p}) `}${s === null ? '' : `the schema refuses it (${s})`}`]
  })
  assert.deepEqual(wrong, [])
})

// ---------------------------------------------------------------- both refuse

const INVALID: [string, unknown][] = [
  ['a misspelt top-level field', { nodes: [{ node_id: 'a', type: 't' }], edgesEx: [] }],
  ['not an object', []], ['null', null], ['a string', 'nodes'],
  ['no nodes', {}], ['empty nodes', { nodes: [] }], ['nodes not an array', { nodes: 'a' }], ['a node not an object', { nodes: ['a'] }],
  ['no node_id', { nodes: [{ type: 't' }] }], ['node_id with a space', { nodes: [{ node_id: 'a b', type: 't' }] }],
  ['node_id empty', { nodes: [{ node_id: '', type: 't' }] }], ['node_id too long', { nodes: [{ node_id: 'x'.repeat(129), type: 't' }] }],
  ['node_id a number', { nodes: [{ node_id: 1, type: 't' }] }], ['no type', { nodes: [{ node_id: 'a' }] }],
  ['type with a slash', { nodes: [{ node_id: 'a', type: 'a/b' }] }], ['type a number', { nodes: [{ node_id: 'a', type: 5 }] }],
  ['schema_version 2.0', { schema_version: '2.0', nodes: [{ node_id: 'a', type: 't' }] }], ['schema_version a number', { schema_version: 1, nodes: [{ node_id: 'a', type: 't' }] }],
  ...['dependsOn', 'fanIn', 'fan-in', 'retryPolicy', 'retry_polcy', 'Routing', 'node_ID', 'wehn', 'typ'].map((k): [string, unknown] => [`node field typo ${k}`, n({ [k]: ['b'] })]),
  ...['startWhen', 'start_whem', 'input_inlin', 'inputInline', 'fnargs', 'fn_arg', 'batchng'].map((k): [string, unknown] => [`io field typo ${k}`, io({ [k]: {} })]),
  ['io a string', n({ io: 'x' })], ['io an array', n({ io: [] })],
  ['start_when first', io({ start_when: 'first' })], ['start_when uppercase', io({ start_when: 'FIRST_BATCH' })], ['start_when a number', io({ start_when: 1 })],
  ...['some', 'ALL', 'count:0', 'count:-1', 'count:x', 'count:1.5', 'count:', 'count:1234567890', 3].map((f): [string, unknown] => [`fan_in ${JSON.stringify(f)}`, n({ fan_in: f })]),
  ['depends_on a string', n({ depends_on: 'b' })], ['depends_on [1]', n({ depends_on: [1] })], ['depends_on an object', n({ depends_on: {} })],
  ...['backoff', 'retries', 'Max', 'permanentOn'].map((k): [string, unknown] => [`retry_policy unknown key ${k}`, n({ retry_policy: { [k]: 1 } })]),
  ['retry max 0', n({ retry_policy: { max: 0 } })], ['retry max 1.5', n({ retry_policy: { max: 1.5 } })], ['retry max "3"', n({ retry_policy: { max: '3' } })],
  ['retry backoff -1', n({ retry_policy: { backoff_sec: -1 } })], ['retry backoff "1"', n({ retry_policy: { backoff_sec: '1' } })],
  ['permanent_on a string', n({ retry_policy: { permanent_on: 'x' } })], ['permanent_on [1]', n({ retry_policy: { permanent_on: [1] } })], ['retry_policy a string', n({ retry_policy: 'x' })],
  ['routing unknown key on_error', n({ routing: { on_error: ['b'] } })], ['routing onFailure', n({ routing: { onFailure: ['b'] } })],
  ['routing on_success a string', n({ routing: { on_success: 'b' } })], ['routing on_success [1]', n({ routing: { on_success: [1] } })], ['routing an array', n({ routing: [] })],
  ['edges a string', { nodes: [{ node_id: 'a', type: 't' }], edges: 'x' }], ['edge of one', { nodes: [{ node_id: 'a', type: 't' }], edges: [['a']] }],
  ['edge of three', { nodes: [{ node_id: 'a', type: 't' }, { node_id: 'b', type: 't' }], edges: [['a', 'b', 'a']] }],
  ['edge with a number', { nodes: [{ node_id: 'a', type: 't' }], edges: [[1, 'a']] }], ['edge a string', { nodes: [{ node_id: 'a', type: 't' }], edges: ['a'] }],
  ...[{ trigger_on: 'on_batch' }, { mode: 'asnyc' }, { trigger: 'on_batches' }, { trigger: 'onBatch' }, { mode: 'ASYNC' }, { mode: 1 }].map((e): [string, unknown] => [`edges_ex ${JSON.stringify(e)}`, { nodes: [{ node_id: 'a', type: 't' }, { node_id: 'b', type: 't' }], edges_ex: [{ from: 'a', to: 'b', ...e }] }]),
  ['edges_ex without from', { nodes: [{ node_id: 'a', type: 't' }], edges_ex: [{ to: 'a' }] }], ['edges_ex from a number', { nodes: [{ node_id: 'a', type: 't' }], edges_ex: [{ from: 1, to: 'a' }] }],
  ['edges_ex an object', { nodes: [{ node_id: 'a', type: 't' }], edges_ex: {} }], ['edges_ex of strings', { nodes: [{ node_id: 'a', type: 't' }], edges_ex: ['a'] }],
  ...[null, 'x', { var: 'a', op: 'like' }, { var: 'a b' }, { var: '' }, { var: 'a..b' }, { all: [] }, { any: 'x' }, { not: null }, { var: 'a', op: 'in', value: 'x' }, { var: 'a', op: 'nin' }, { var: 'a', op: 'exists', value: 'yes' }, { var: 'a', op: 'exists', value: null }, { var: 'a', op: 'gt', value: true }, { var: 'a', op: 'gt' }, { var: 'a', extra: 1 }, { all: [{ var: 'a' }], var: 'x' }, { op: 'eq', value: 1 }].map((w): [string, unknown] => [`when ${JSON.stringify(w)}`, when(w)]),
  ['status running', n({ status: 'running' })], ['attempt_epoch 1', n({ attempt_epoch: 1 })], ['stats not empty', n({ stats: { a: 1 } })], ['lease not empty', n({ lease: { x: 1 } })],
  ['coordinator_fn without io', n({ type: 'coordinator_fn' })], ['coordinator_fn without fn', n({ type: 'coordinator_fn', io: {} })], ['coordinator_fn with io null', n({ type: 'coordinator_fn', io: null })],
  ['fn a number', n({ type: 'coordinator_fn', io: { fn: 5 } })], ['io.fn on a worker node', io({ fn: 'noop' })], ['fn_args a string', fn('noop', 'x')], ['fn_args an array', fn('noop', [])],
  ['input_inline a string', io({ input_inline: 'x' })], ['input_adapter a number', io({ input_inline: { input_adapter: 5 } })],
  ['an adapter arg typo', pull('pull.from_artifacts.rechunk:size', { from_nodes: ['b'], size: 2, metaListKey: 'rows' })],
]

test('graph schema and parser agree: invalid graphs (unknown keys, typos, bad enums, bad values) are refused by both', () => {
  const wrong = INVALID.flatMap(([name, graph]) => {
    const p = parserError(graph)
    const s = schemaError(graph)
    return p !== null && s !== null ? [] : [`${name}: accepted by the ${p === null ? 'parser' : ''}${p === null && s === null ? ' and the ' : ''}${s === null ? 'schema' : ''}`]
  })
  assert.deepEqual(wrong, [])
})

// ---------------------------------------------------------------- documented differences

/** Graph-level checks a JSON Schema cannot express: only the parser refuses these. */
const PARSER_ONLY: [string, unknown][] = [
  ['depends_on an unknown node', n({ depends_on: ['ghost'] })],
  ['depends on itself', n({ depends_on: ['a'] })],
  ['duplicate node ids', { nodes: [{ node_id: 'a', type: 't' }, { node_id: 'a', type: 't' }] }],
  ['a cycle', { nodes: [{ node_id: 'a', type: 't', depends_on: ['b'] }, { node_id: 'b', type: 't', depends_on: ['a'] }] }],
  ['a cycle through routing', { nodes: [{ node_id: 'a', type: 't', depends_on: ['b'] }, { node_id: 'b', type: 't', routing: { on_success: ['a'] } }], edges: [['a', 'b']] }],
  ['edge to an unknown node', { nodes: [{ node_id: 'a', type: 't' }], edges: [['a', 'ghost']] }],
  ['edge from a node to itself', { nodes: [{ node_id: 'a', type: 't' }], edges: [['a', 'a']] }],
  ['edges_ex to an unknown node', { nodes: [{ node_id: 'a', type: 't' }], edges_ex: [{ from: 'ghost', to: 'a' }] }],
  ['routing to an unknown node', n({ routing: { on_failure: ['ghost'] } })],
  ['fan_in count above the parents', n({ fan_in: 'count:2' })],
  ['an unregistered coordinator function', fn('nope.fn')],
  ['retry max over maxRetryAttempts', n({ retry_policy: { max: 1000 } })],
  ['backoff over maxRetryBackoffSec', n({ retry_policy: { backoff_sec: 1e6 } })],
  ['a guard nested 18 deep', when(Array.from({ length: 18 }).reduce((g) => ({ not: g }), { var: 'a' }))],
  ['input_args from_nodes an unknown node', pull('pull.from_artifacts', { from_nodes: ['ghost'] })],
  ['fn_args from_nodes reads itself', fn('merge.generic', { from_nodes: ['a'] })],
]

/** Fields outside the format and run-time checks of the worker / functions: only the schema refuses these. */
const SCHEMA_ONLY: [string, unknown][] = [
  ['rechunk without size', pull('pull.from_artifacts.rechunk:size', { from_nodes: ['b'] })],
  ['rechunk size 0', pull('pull.from_artifacts.rechunk:size', { from_nodes: ['b'], size: 0 })],
  ['an unknown top-level field', { nodes: [{ node_id: 'a', type: 't' }], params: {} }],
  ['a node extension field', n({ label: 'x' })],
  ['a node field too far from a known name to count as a typo', n({ after_note: ['b'] })],
  ['an io extension field', io({ timeout_ms: 5 })],
  ['an unknown input adapter (default config)', pull('pull.from_s3', { from_nodes: ['b'] })],
  ['an adapter without input_args', pull('pull.from_artifacts')],
  ['from_nodes given as a string', pull('pull.from_artifacts', { from_nodes: 'b' })],
  ['poll_ms below 0', pull('pull.from_artifacts', { from_nodes: ['b'], poll_ms: -1 })],
  ['merge.generic without fn_args', fn('merge.generic')],
  ['merge.generic with a wrong arg', fn('merge.generic', { from: ['b'] })],
  ['metrics.aggregate mode avg', fn('metrics.aggregate', { from_nodes: ['b'], mode: 'avg' })],
  ['vars.set without kv or key', fn('vars.set', {})],
  ['input_ref not an object', io({ input_ref: 'x' })],
]

test('graph schema vs parser: graph-level checks are the parser\'s only (the schema accepts these)', () => {
  const wrong = PARSER_ONLY.flatMap(([name, graph]) => {
    const p = parserError(graph)
    const s = schemaError(graph)
    return p !== null && s === null ? [] : [`${name}: ${p === null ? 'the parser accepts it ' : ''}${s === null ? '' : `the schema refuses it (${s})`}`]
  })
  assert.deepEqual(wrong, [])
})

test('graph schema vs parser: fields outside the format and run-time arg checks are the schema\'s only', () => {
  const wrong = SCHEMA_ONLY.flatMap(([name, graph]) => {
    const p = parserError(graph)
    const s = schemaError(graph)
    return p === null && s !== null ? [] : [`${name}: ${p === null ? '' : `the parser refuses it (${p}) `}${s === null ? 'the schema accepts it' : ''}`]
  })
  assert.deepEqual(wrong, [])
})
