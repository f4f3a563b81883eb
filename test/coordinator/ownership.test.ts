import { test } from 'node:test'
import assert from 'node:assert/strict'
import { parseOwnerRecord } from '../../src/coordinator/ownership.ts'

test("owners' topic records: a forwarded status record, a request (with its inline task), or a reason it is neither", () => {
  assert.equal(parseOwnerRecord('{"op":'), 'not JSON')
  assert.equal(parseOwnerRecord('[1]'), 'not an object')
  assert.equal(parseOwnerRecord('{"op":"status","task_id":"t 1","topic":"s","value":"{}"}'), 'bad task_id')
  assert.equal(parseOwnerRecord('{"op":"status","task_id":"t1","topic":"s"}'), 'bad topic or value')
  assert.equal(parseOwnerRecord('{"op":"explode","task_id":"t1","requested_at_ms":1}'), 'unknown op "explode"')
  assert.deepEqual(parseOwnerRecord('{"op":"status","task_id":"t1","topic":"status.a.v1","value":"{}","headers":{"traceparent":"x","bad":1}}'), {
    forward: { op: 'status', task_id: 't1', topic: 'status.a.v1', value: '{}' },
  })
  const r = parseOwnerRecord('{"op":"adopt","task_id":"t1","requested_at_ms":5,"task":{"id":"t1"}}')
  assert.ok(typeof r === 'object' && 'request' in r)
  assert.deepEqual(r.request.task, { id: 't1' })
  const c = parseOwnerRecord('{"op":"cancel","task_id":"t1","requested_at_ms":5,"task":{"id":"t1"}}')
  assert.ok(typeof c === 'object' && 'request' in c)
  assert.equal(c.request.task, undefined, 'only an adopt carries a task')
})
