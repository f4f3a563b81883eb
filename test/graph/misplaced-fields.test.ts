/**
 * Fields a user plausibly writes in the wrong place or under another usual name (a node-level
 * `start_when`, `timeout`, `retries`, `deps`; `io.input_adapter`): kept as they were, each would
 * be ignored without a word (streaming off, no timeout, no retry policy, no dependency). They are
 * refused with the field meant.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { ErrorCode, GraphValidationError } from '../../src/errors.ts'
import { parseGraph } from '../../src/graph/parse.ts'
import { MISPLACED_NODE_FIELDS } from '../../src/graph/parse-node.ts'

const options = { coordinatorFns: new Set(['noop']), inputAdapters: new Set(['pull.from_artifacts']) }

function refused(graph: unknown): GraphValidationError {
  try {
    parseGraph(graph, options)
  } catch (err) {
    assert.ok(err instanceof GraphValidationError, String(err))
    return err
  }
  assert.fail('the graph was accepted')
}

const two = (b: Record<string, unknown>) => ({ nodes: [{ node_id: 'a', type: 't' }, { node_id: 'b', type: 't', depends_on: ['a'], ...b }] })

test('graph validation: a node-level start_when is refused, pointing at io.start_when', () => {
  const err = refused(two({ start_when: 'first_batch' }))
  assert.equal(err.code, ErrorCode.BadField)
  assert.equal(err.path, 'nodes[1].start_when')
  assert.match(err.message, /field "start_when" on node "b" is not read here \(did you mean "io\.start_when"\?\)/)
})

test('graph validation: every misplaced node field is refused with the field meant', () => {
  for (const [field, meant] of Object.entries(MISPLACED_NODE_FIELDS)) {
    const err = refused(two({ [field]: 5 }))
    assert.equal(err.path, `nodes[1].${field}`, field)
    assert.ok(err.message.includes(`did you mean ${JSON.stringify(meant)}`), err.message)
  }
})

test('graph validation: io.input_adapter and io.input_args outside input_inline are refused', () => {
  const err = refused(two({ io: { start_when: 'first_batch', input_adapter: 'pull.from_artifacts', input_args: { from_nodes: ['a'] } } }))
  const paths = (err.details['errors'] as Array<{ path: string; message: string }>).map((e) => e.path)
  assert.deepEqual(paths, ['nodes[1].io.input_adapter', 'nodes[1].io.input_args'])
  assert.match(err.message, /did you mean "io\.input_inline\.input_adapter"/)
})

test('graph validation: the right places and other extra fields are still accepted', () => {
  const g = parseGraph(
    two({
      io: { start_when: 'first_batch', input_inline: { input_adapter: 'pull.from_artifacts', input_args: { from_nodes: ['a'] } } },
      timeout_sec: 5,
      retry_policy: { max: 2 },
      meta: { owner: 'x' },
    }),
    options,
  )
  assert.equal(g.nodes[1]?.io.start_when, 'first_batch')
  assert.equal(g.nodes[1]?.timeout_sec, 5)
})

test('graph validation: NaN and Infinity in params are named as such', () => {
  for (const [v, shown] of [[Number.NaN, 'got NaN'], [Number.NEGATIVE_INFINITY, 'got -Infinity']] as const) {
    const err = refused({ nodes: [{ node_id: 'a', type: 't', meta: { x: v } }] })
    assert.ok(err.message.includes(shown), err.message)
  }
})
