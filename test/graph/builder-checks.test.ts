/**
 * What the graph builder and createTask agree on (an audit of the TypeScript API found each
 * apart): build() runs the built-in functions' fn_args checks createTask runs; fn() reads a string
 * `from_nodes` as one node (its depends_on); a retry_policy without backoff_sec waits the
 * coordinator's defaultBackoffSec; a builder given as the graph, and JSON text that does not parse,
 * are refused with a message that says what to do and `details.errors` like every refusal.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Coordinator, type GraphValidationError, MemoryBus, MemoryStore, graph } from 'flowkit'
import { buildTask } from '../../src/coordinator/submit.ts'

test('build() refuses built-in function args createTask refuses, with the same path', () => {
  const g = graph()
  g.node('read', 'r')
  g.fn('t', 'metrics.aggregate', { from_nodes: ['read'], target_node: 'nope' })
  assert.throws(() => g.build(), (err: GraphValidationError) => {
    assert.equal(err.path, 'nodes[1].io.fn_args.target_node')
    assert.match(err.message, /names unknown node "nope"/)
    return true
  })
  const v = graph()
  v.fn('s', 'vars.set', { kv: { 'a..b': 1 } })
  assert.throws(() => v.build(), /invalid key "a\.\.b"/)
})

test('fn() with from_nodes given as one string depends on that node, as with an array', () => {
  const g = graph()
  g.node('a', 'r')
  g.fn('f', 'merge.generic', { from_nodes: 'a' } as never)
  const f = g.build().nodes.find((n) => n.node_id === 'f')
  assert.deepEqual(f?.depends_on, ['a'])
})

test("a retry_policy without backoff_sec waits the coordinator's defaultBackoffSec", () => {
  const task = buildTask({ graph: { nodes: [{ node_id: 'a', type: 'r', retry_policy: { max: 2 } }] } }, { coordinatorFns: new Set(), rejectUnknownInputAdapters: false, limits: { defaultBackoffSec: 3 } }, Date.now())
  assert.equal(task.graph.nodes[0]?.retry_policy?.backoff_sec, 3)
  const plain = buildTask({ graph: { nodes: [{ node_id: 'a', type: 'r', retry_policy: { max: 2 } }] } }, { coordinatorFns: new Set(), rejectUnknownInputAdapters: false }, Date.now())
  assert.equal(plain.graph.nodes[0]?.retry_policy?.backoff_sec, 1)
})

test('a builder passed as the graph, or JSON text that does not parse, is refused saying what to do, with details.errors', async () => {
  const c = new Coordinator({ bus: new MemoryBus(), store: new MemoryStore() })
  await c.start()
  try {
    const g = graph()
    g.node('a', 'r')
    await assert.rejects(c.createTask({ graph: g }), (err: GraphValidationError) => {
      assert.match(err.message, /got a graph builder, not a graph: pass g\.build\(\)/)
      assert.equal((err.details['errors'] as unknown[]).length, 1)
      return true
    })
    await assert.rejects(c.createTask({ graph: '{"nodes": [}' }), (err: GraphValidationError) => {
      assert.match(err.message, /graph: a string is read as JSON text, and this one is not valid JSON at line 1, column 12/)
      assert.deepEqual((err.details['errors'] as { path: string }[]).map((e) => e.path), ['graph'])
      return true
    })
    // A file holding a JSON string (`"x"`) gives the string: the message says why it is read as JSON.
    await assert.rejects(c.createTask({ graph: 'x' }), (err: GraphValidationError) => {
      assert.match(err.message, /^graph: a string is read as JSON text, and this one is not valid JSON at line 1, column 1: .* \(a graph is an object: \{"nodes": \[\.\.\.\]\}\)/)
      return true
    })
  } finally {
    await c.stop()
  }
})

test("a near miss of input_adapter / input_args in input_inline is refused (it was ignored: the node ran without its adapter); other keys are the handler's", () => {
  const withInline = (inline: Record<string, unknown>) => ({ graph: { nodes: [{ node_id: 'a', type: 'r' }, { node_id: 'b', type: 'r', depends_on: ['a'], io: { input_inline: inline } }] } })
  const opts = { coordinatorFns: new Set<string>(), rejectUnknownInputAdapters: false }
  assert.throws(() => buildTask(withInline({ input_adaptor: 'pull.from_artifacts' }), opts, Date.now()), /nodes\[1\]\.io\.input_inline\.input_adaptor: unknown input_inline field "input_adaptor" on node "b" \(did you mean "input_adapter"\?\)/)
  assert.throws(() => buildTask(withInline({ inputArgs: {} }), opts, Date.now()), /did you mean "input_args"/)
  assert.equal(typeof buildTask(withInline({ rows: [1, 2], source: 's3://x' }), opts, Date.now()).id, 'string')
})

test('createTask given the builder itself, or a bare graph, says what to pass', () => {
  const opts = { coordinatorFns: new Set<string>(), rejectUnknownInputAdapters: false }
  const g = graph()
  g.node('a', 'r')
  assert.throws(() => buildTask(g as never, opts, Date.now()), /createTask: got a graph builder, not a task: pass createTask\(g\.task\(\)\) or createTask\(\{ graph: g\.build\(\) \}\)/)
  assert.throws(() => buildTask(g.build() as never, opts, Date.now()), /createTask: got a graph, not a task: pass createTask\(\{ graph, params \}\)/)
  assert.equal(buildTask(g.task() as never, opts, Date.now()).graph.nodes.length, 1)
})
