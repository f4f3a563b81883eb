/** The MongoDB store's codec for user JSON (src/adapters/mongo/codec.ts); no server needed. */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { decodeFields, encodeFields, getField, isBsonSafe, sanitize, setField } from '../../src/adapters/mongo/codec.ts'
import { ErrorCode, isFlowkitError } from '../../src/errors.ts'

describe('mongo codec', () => {
  it('sanitize: JSON view of undefined and non-finite numbers, -0 as 0, dates kept, own __proto__ keys kept', () => {
    const input = JSON.parse('{"__proto__": {"x": 1}}') as Record<string, unknown>
    Object.assign(input, { u: undefined, arr: [undefined, Number.NaN, -0, Number.POSITIVE_INFINITY], d: new Date(5), f: () => 1 })
    const out = sanitize(input) as Record<string, unknown>
    assert.deepEqual(Object.keys(out), ['__proto__', 'arr', 'd'])
    assert.equal(Object.getPrototypeOf(out), Object.prototype)
    assert.deepEqual(out['arr'], [null, null, 0, null])
    assert.ok(out['d'] instanceof Date && out['d'] !== input['d'])
  })

  it('isBsonSafe refuses what FerretDB or BSON would refuse or alter', () => {
    for (const ok of [null, 1, 'x', true, [1, { a: [2] }], { a: { b: 'c' } }, new Date(1), { '': undefined }]) {
      assert.equal(isBsonSafe(sanitize(ok)), true, JSON.stringify(ok))
    }
    let deep: unknown = 1
    for (let i = 0; i < 100; i++) deep = { d: deep }
    const bad: unknown[] = [[[1]], { 'a.b': 1 }, { $x: 1 }, { '': 1 }, { 'a\u0000': 1 }, 'lone \ud800', { k: 'x\udfff' }, Number.NaN, new Map(), deep]
    for (const v of bad) assert.equal(isBsonSafe(v), false, String(v))
  })

  it('fields round-trip through either form; *_json names are always JSON text', () => {
    const obj = { plain: { a: [1] }, nested: [[1]], dotted: { 'a.b': 1 }, text: 'a\ud800', num: 3, cfg_json: '{"x":1}' }
    const doc = encodeFields(obj)
    assert.deepEqual(doc['plain'], { a: [1] })
    assert.equal(doc['nested_json'], '[[1]]')
    assert.equal(doc['dotted_json'], '{"a.b":1}')
    assert.equal(doc['text_json'], '"a\\ud800"')
    assert.equal(doc['cfg_json_json'], '"{\\"x\\":1}"')
    assert.equal(doc['num'], 3)
    assert.deepEqual(decodeFields({ _id: 'x', ...doc }), obj)
  })

  it('setField sets one form and unsets the other', () => {
    const set: Record<string, unknown> = {}
    const unset: Record<string, ''> = {}
    setField(set, unset, 'nodes.a.stats', { ok: 1 })
    setField(set, unset, 'nodes.a.lease', { m: [[1]] })
    setField(set, unset, 'nodes.a.end_reason', undefined)
    assert.deepEqual(set, { 'nodes.a.stats': { ok: 1 }, 'nodes.a.lease_json': '{"m":[[1]]}' })
    assert.deepEqual(unset, { 'nodes.a.stats_json': '', 'nodes.a.lease': '' })
  })

  it('stored field names must be safe; bad JSON text is a STORE_ERROR', () => {
    assert.throws(() => encodeFields({ 'a.b': 1 }), (err) => isFlowkitError(err, ErrorCode.InvalidKey))
    assert.throws(() => encodeFields({ _id: 1 }), (err) => isFlowkitError(err, ErrorCode.InvalidKey))
    assert.throws(() => getField({ x_json: '{' }, 'x'), (err) => isFlowkitError(err, ErrorCode.StoreError))
  })
})
