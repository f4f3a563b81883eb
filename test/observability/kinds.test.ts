/** The status kind read from an event's JSON text without parsing it (coordinator tracing). */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { kindOf } from '../../src/observability/kinds.ts'

test('kindOf reads the kind of flowkit and seed spellings, and says `other` for what it does not know', () => {
  const env = (payload: string): string => `{"v":1,"msg_type":"event","task_id":"t","node_id":"n","payload":${payload}}`
  assert.equal(kindOf(env('{"worker_id":"w","kind":"TASK_ACCEPTED","lease_id":"l"}')), 'TASK_ACCEPTED')
  assert.equal(kindOf(env('{"kind":"BATCH_OK","batch_uid":"b"}')), 'BATCH_OK')
  // Python's json.dumps writes a space after the colon.
  assert.equal(kindOf(env('{"kind": "TASK_DONE"}')), 'TASK_DONE')
  // A key that only ends in "kind" is not the kind; a prefix of a known kind is not that kind.
  assert.equal(kindOf(env('{"subkind":"TASK_DONE","kind":"CANCELLED"}')), 'CANCELLED')
  assert.equal(kindOf(env('{"kind":"BATCH_OKAY"}')), 'other')
  assert.equal(kindOf(env('{"kind":"SOMETHING_NEW"}')), 'other')
  assert.equal(kindOf('not json at all'), 'other')
})
