import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ErrorCode, FlowkitError, GraphValidationError, PermanentError, TransientError, classifyErrorDefault } from 'flowkit'

// Every error class takes the same options object, code first: new XError({ code, message, cause }).

test('errors: every class accepts one options object { code, message, cause }', () => {
  const cause = new Error('root')
  const errors = [
    new FlowkitError({ code: ErrorCode.Config, message: 'bad config', cause }),
    new GraphValidationError({ code: ErrorCode.UnknownNode, message: 'unknown node', path: 'nodes[1]', cause }),
    new PermanentError({ code: 'bad_input', message: 'row 3 has no id', cause }),
    new TransientError({ code: 'rate_limited', message: 'slow down', cause }),
  ]
  assert.deepEqual(
    errors.map((e) => [e.name, e.code, e.message, e.cause]),
    [
      ['FlowkitError', 'CONFIG_INVALID', 'bad config', cause],
      ['GraphValidationError', 'GRAPH_UNKNOWN_NODE', 'unknown node', cause],
      ['PermanentError', 'bad_input', 'row 3 has no id', cause],
      ['TransientError', 'rate_limited', 'slow down', cause],
    ],
  )
  for (const e of errors) assert.ok(e instanceof Error)
})

test('errors: the options object carries each class its own fields', () => {
  const f = new FlowkitError({ code: ErrorCode.StoreUnavailable, message: 'down', retryable: true, details: { host: 'db' } })
  assert.deepEqual([f.retryable, f.details], [true, { host: 'db' }])
  const g = new GraphValidationError({ code: ErrorCode.Cycle, message: 'cycle a -> b -> a', path: 'nodes', details: { cycle: ['a', 'b', 'a'] } })
  assert.ok(g instanceof FlowkitError)
  assert.deepEqual([g.path, g.details], ['nodes', { cycle: ['a', 'b', 'a'], path: 'nodes' }])
  assert.equal(Object.hasOwn(new FlowkitError({ code: ErrorCode.Config, message: 'x' }), 'cause'), false, 'no cause given, none set')
})

test('errors: handler errors default their reason code; reasonCode and code agree', () => {
  const p = new PermanentError({ message: 'no' })
  const t = new TransientError({ message: 'later' })
  assert.deepEqual([p.reasonCode, p.code, p.permanent], ['permanent_error', 'permanent_error', true])
  assert.deepEqual([t.reasonCode, t.code, t.permanent], ['transient_error', 'transient_error', false])
  assert.deepEqual(classifyErrorDefault(new PermanentError({ code: 'bad_input', message: 'x' })), { reasonCode: 'bad_input', permanent: true })
  assert.deepEqual(classifyErrorDefault(new TransientError({ code: 'flaky', message: 'x' })), { reasonCode: 'flaky', permanent: false })
})

test('errors: a store error the adapter could not classify fails the attempt transiently; other non-retryable flowkit errors stay permanent', () => {
  assert.deepEqual(classifyErrorDefault(new FlowkitError(ErrorCode.StoreError, 'mongo store upsertArtifacts: ?')), { reasonCode: 'store_error', permanent: false })
  assert.deepEqual(classifyErrorDefault(new FlowkitError(ErrorCode.StoreUnavailable, 'down', { retryable: true })), { reasonCode: 'store_unavailable', permanent: false })
  assert.deepEqual(classifyErrorDefault(new FlowkitError(ErrorCode.Config, 'bad')), { reasonCode: 'config_invalid', permanent: true })
})

test('errors: the older positional forms still work (FlowkitError code first, PermanentError message first)', () => {
  const cause = new Error('root')
  const f = new FlowkitError(ErrorCode.Timeout, 'took too long', { retryable: true, cause })
  assert.deepEqual([f.code, f.message, f.retryable, f.cause], ['TIMEOUT', 'took too long', true, cause])
  const g = new GraphValidationError(ErrorCode.BadField, 'nodes[0].type: required', 'nodes[0].type', { got: null })
  assert.deepEqual([g.code, g.message, g.path, g.details], ['GRAPH_BAD_FIELD', 'nodes[0].type: required', 'nodes[0].type', { got: null, path: 'nodes[0].type' }])
  const p = new PermanentError('broken', 'boom', { cause })
  assert.deepEqual([p.message, p.reasonCode, p.code, p.cause], ['broken', 'boom', 'boom', cause])
  const t = new TransientError('input is bad', 'bad_input')
  assert.deepEqual([t.message, t.reasonCode], ['input is bad', 'bad_input'])
  assert.equal(new PermanentError('no').reasonCode, 'permanent_error')
})
