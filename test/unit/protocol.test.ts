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

test('metrics and artifacts_ref nested deeper than 32 levels are malformed (stores and copies recurse through them)', () => {
  const nest = (levels: number): Record<string, unknown> => {
    let v: Record<string, unknown> = { c: 1 }
    for (let i = 1; i < levels; i++) v = { x: v }
    return v
  }
  assert.equal(protocol.MAX_EVENT_VALUE_DEPTH, 32)
  assert.ok(protocol.parseStatusEvent({ kind: 'BATCH_OK', worker_id: 'w', batch_uid: 'b', metrics: nest(32), artifacts_ref: nest(32) }).ok)
  for (const ev of [
    { kind: 'BATCH_OK', worker_id: 'w', batch_uid: 'b', metrics: nest(33) },
    { kind: 'BATCH_OK', worker_id: 'w', batch_uid: 'b', metrics: {}, artifacts_ref: { list: [nest(32)] } },
    { kind: 'BATCH_FAILED', worker_id: 'w', batch_uid: 'b', reason_code: 'x', artifacts_ref: nest(33) },
    { kind: 'TASK_DONE', worker_id: 'w', metrics: { a: [[nest(31)]] } },
  ]) {
    const r = protocol.parseStatusEvent(ev)
    assert.ok(!r.ok && /nested deeper than 32 levels/.test(r.error), JSON.stringify(r))
  }
})

test('dedup ids are stable and order-independent', () => {
  assert.equal(protocol.dedupId({ a: 1, b: 2 }), protocol.dedupId({ b: 2, a: 1 }))
  assert.notEqual(protocol.dedupId({ a: 1 }), protocol.dedupId({ a: 2 }))
})
