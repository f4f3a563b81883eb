import { test } from 'node:test'
import assert from 'node:assert/strict'
import { protocol } from 'flowkit'

const base = { msg_type: 'event', role: 'worker', task_id: 't', node_id: 'n', step_type: 's', attempt_epoch: 1, ts_ms: 1, dedup_id: 'd' } as const

test('envelopes round-trip with the seed field names', () => {
  const env = protocol.makeEnvelope({ ...base, payload: { kind: 'BATCH_OK', worker_id: 'w', batch_uid: 'b', metrics: { count: 2 }, artifacts_ref: null } })
  const wire = JSON.parse(protocol.encode(env))
  assert.deepEqual(Object.keys(wire).sort(), ['attempt_epoch', 'corr_id', 'dedup_id', 'msg_type', 'node_id', 'payload', 'role', 'step_type', 'task_id', 'ts_ms', 'v'])
  const back = protocol.parseEnvelope(protocol.encode(env))
  assert.ok(back.ok)
  const ev = protocol.parseStatusEvent(back.value.payload)
  assert.deepEqual(ev, { ok: true, value: { kind: 'BATCH_OK', worker_id: 'w', batch_uid: 'b', metrics: { count: 2 }, artifacts_ref: null } })
})

test('parseEnvelope rejects malformed input with a reason and never throws', () => {
  for (const raw of ['', 'x', 'null', '[]', '{"v":2}', JSON.stringify({ ...base, v: 1, payload: [] }), JSON.stringify({ ...base, v: 1, attempt_epoch: -1, payload: {} })]) {
    const r = protocol.parseEnvelope(raw)
    assert.equal(r.ok, false, raw)
  }
})

test('status payloads are checked per kind', () => {
  assert.equal(protocol.parseStatusEvent({ kind: 'BATCH_OK', worker_id: 'w', batch_uid: 1 }).ok, false)
  assert.equal(protocol.parseStatusEvent({ kind: 'TASK_ACCEPTED', worker_id: 'w', lease_id: 'l' }).ok, false)
  assert.equal(protocol.parseStatusEvent({ kind: 'NOPE', worker_id: 'w' }).ok, false)
  const f = protocol.parseStatusEvent({ kind: 'TASK_FAILED', worker_id: 'w', reason_code: 'x', permanent: true })
  assert.deepEqual(f, { ok: true, value: { kind: 'TASK_FAILED', worker_id: 'w', reason_code: 'x', permanent: true, error: null } })
  const d = protocol.parseStatusEvent({ kind: 'TASK_DONE', worker_id: 'w', metrics: {}, final_uid: '__final__', batches: 3 })
  assert.ok(d.ok && d.value.kind === 'TASK_DONE' && d.value.batches === 3)
})

test('dedup ids are stable and order-independent', () => {
  assert.equal(protocol.dedupId({ a: 1, b: 2 }), protocol.dedupId({ b: 2, a: 1 }))
  assert.notEqual(protocol.dedupId({ a: 1 }), protocol.dedupId({ a: 2 }))
})
