import assert from 'node:assert/strict'
import { test } from 'node:test'
import { ErrorCode, FlowkitError, GraphValidationError } from '../../src/errors.ts'
import { SUBMIT_LIMIT_DEFAULTS, formatCount, resolveSubmitLimits } from '../../src/graph/limits.ts'
import { parseGraph } from '../../src/graph/parse.ts'
import { closest, didYouMean, editDistance } from '../../src/graph/parse-context.ts'

const options = { coordinatorFns: new Set<string>() }

test('limits: edit distance counts an adjacent transposition as one edit', () => {
  assert.equal(editDistance('async', 'async'), 0)
  assert.equal(editDistance('asnyc', 'async'), 1)
  assert.equal(editDistance('on_bacth', 'on_batch'), 1)
  assert.equal(editDistance('', 'abc'), 3)
  assert.equal(editDistance('kitten', 'sitting'), 3)
})

test('limits: did-you-mean only for near misses (prefixes only in closed objects)', () => {
  assert.equal(closest('asnyc', ['async', 'sync']), 'async')
  assert.equal(closest('sycn', ['async', 'sync']), 'sync')
  assert.equal(closest('parallel', ['async', 'sync']), null)
  assert.equal(closest('id', ['node_id', 'type', 'depends_on']), null)
  assert.equal(closest('backoff', ['max', 'backoff_sec']), null)
  assert.equal(closest('backoff', ['max', 'backoff_sec'], true), 'backoff_sec')
  assert.equal(didYouMean('on_bacth', ['on_batch', 'on_done']), ' (did you mean "on_batch"?)')
  assert.equal(didYouMean('whatever', ['on_batch', 'on_done']), '')
})

test('limits: defaults, config checks and number formatting', () => {
  assert.deepEqual(resolveSubmitLimits(), { ...SUBMIT_LIMIT_DEFAULTS })
  assert.equal(resolveSubmitLimits({ maxNodes: 7 }).maxNodes, 7)
  // other keys of a bigger config object are ignored
  assert.equal(resolveSubmitLimits({ maxEdges: 9, groupId: 'x' } as Record<string, unknown>).maxEdges, 9)
  for (const bad of [0, -1, Number.NaN, '5']) {
    assert.throws(
      () => resolveSubmitLimits({ maxNodes: bad } as Record<string, unknown>),
      (err: unknown) => err instanceof FlowkitError && err.code === ErrorCode.Config && /"maxNodes" must be a number > 0/.test(err.message),
    )
  }
  assert.throws(() => resolveSubmitLimits({ maxParamsDepth: 2.5 }), /"maxParamsDepth" must be an integer from 1 to 1000/)
  assert.equal(formatCount(1_234_567), '1,234,567')
  assert.equal(formatCount(86_400.5), '86,400.5')
  assert.equal(formatCount(12), '12')
})

test('limits: a when guard may nest its 16 levels on top of maxParamsDepth', () => {
  let guard: Record<string, unknown> = { var: 'x', op: 'eq', value: 1 }
  for (let i = 0; i < 16; i++) guard = { all: [guard] }
  const spec = parseGraph({ nodes: [{ node_id: 'a', type: 'p', when: guard }] }, options)
  assert.ok(spec.nodes[0]?.when)
})

test('limits: every problem over a limit is collected, with the setting in details', () => {
  let caught: unknown
  try {
    parseGraph(
      {
        nodes: [
          { node_id: 'a', type: 'p', retry_policy: { max: 500, backoff_sec: 1e9 } },
          { node_id: 'b', type: 'p', io: { fn_args: { x: [[[[1]]]] } } },
        ],
      },
      { ...options, limits: { maxParamsDepth: 4 } },
    )
  } catch (err) {
    caught = err
  }
  assert.ok(caught instanceof GraphValidationError)
  const errors = caught.details['errors'] as { code: string; path: string; details: Record<string, unknown> }[]
  assert.deepEqual(
    errors.map((e) => [e.code, e.path, e.details['limit']]),
    [
      [ErrorCode.GraphLimit, 'nodes[0].retry_policy.max', 'maxRetryAttempts'],
      [ErrorCode.GraphLimit, 'nodes[0].retry_policy.backoff_sec', 'maxRetryBackoffSec'],
      [ErrorCode.GraphLimit, 'nodes[1].io.fn_args.x[0][0]', 'maxParamsDepth'],
    ],
  )
})
