import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { describe, it } from 'node:test'
import { canonicalJson, sha256Hex, sha256HexPrefix, uuidV4 } from '../../src/util/ids.ts'

/** The definition: keys sorted at every depth, JSON.stringify for everything else. */
function reference(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) => {
    if (x === null || typeof x !== 'object' || Array.isArray(x)) return x
    const out: Record<string, unknown> = Object.create(null)
    for (const k of Object.keys(x).sort()) out[k] = (x as Record<string, unknown>)[k]
    return out
  }) ?? 'null'
}

describe('canonicalJson', () => {
  it('sorts keys of flat objects, whatever the insertion order', () => {
    assert.equal(canonicalJson({ task: 't', node: 'n', epoch: 1, cmd: 'TASK_START' }), '{"cmd":"TASK_START","epoch":1,"node":"n","task":"t"}')
    assert.equal(canonicalJson({ b: null, a: true, c: 'x' }), '{"a":true,"b":null,"c":"x"}')
    assert.equal(canonicalJson({ a: undefined, b: 1 }), '{"b":1}')
    assert.equal(canonicalJson({ a: Number.NaN }), '{"a":null}')
  })

  it('sorts index-like keys as strings (by code unit), not as JavaScript orders them', () => {
    assert.equal(canonicalJson({ b: 1, 10: 2, 9: 3, a: 4 }), '{"10":2,"9":3,"a":4,"b":1}')
  })

  it('writes objects whose keys already come sorted as they are, with the same result', () => {
    assert.equal(canonicalJson({ cmd: 'TASK_START', epoch: 1, node: 'n', task: 't' }), '{"cmd":"TASK_START","epoch":1,"node":"n","task":"t"}')
    assert.equal(canonicalJson({ 1: 'x', 2: 'y', a: 1 }), '{"1":"x","2":"y","a":1}')
    assert.equal(canonicalJson({ a: undefined, b: 1 }), '{"b":1}')
    assert.equal(canonicalJson(JSON.parse('{"__proto__":"p","z":1}')), '{"__proto__":"p","z":1}')
    for (const c of [{ a: 1, b: { d: 1, c: 2 } }, { epoch: 2, kind: 'TASK_DONE', node: 'n', task: 't' }, { A: 1, a: 2, b: 3 }]) assert.equal(canonicalJson(c), reference(c))
  })

  it('keeps an own "__proto__" field', () => {
    const o = JSON.parse('{"z":1,"__proto__":"p"}') as Record<string, unknown>
    assert.equal(canonicalJson(o), '{"__proto__":"p","z":1}')
  })

  it('matches the definition on nested and mixed values', () => {
    const cases: unknown[] = [
      { task: 'x', node: 'n1', epoch: 3, kind: 'BATCH_OK', batch: 'b-1' },
      { z: [3, { b: 1, a: 2 }], a: { d: { f: 1, e: 2 }, c: null } },
      [1, 'a', null, { y: 1, x: 2 }],
      { 'é': 1, e: 2, E: 3, '': 4 },
      'text',
      42,
      null,
    ]
    for (const c of cases) assert.equal(canonicalJson(c), reference(c), JSON.stringify(c))
  })
})

describe('sha256Hex', () => {
  it('is the lower-case hex SHA-256 of the UTF-8 bytes', () => {
    for (const s of ['', 'abc', 'tâche 日本', '{"cmd":"TASK_START"}']) assert.equal(sha256Hex(s), createHash('sha256').update(s, 'utf8').digest('hex'))
  })
})

describe('uuidV4', () => {
  it('makes version 4 UUIDs in the canonical text form, all different (across refills of its random pool)', () => {
    const seen = new Set<string>()
    for (let i = 0; i < 20_000; i++) {
      const id = uuidV4()
      assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
      seen.add(id)
    }
    assert.equal(seen.size, 20_000)
  })

  it('spreads its digits: every hex digit shows up in every random position', () => {
    const counts = Array.from({ length: 36 }, () => new Set<string>())
    for (let i = 0; i < 2000; i++) {
      const id = uuidV4()
      for (let j = 0; j < id.length; j++) counts[j]?.add(id.charAt(j))
    }
    const fixed = new Set([8, 13, 14, 18, 19, 23]) // dashes, the version digit and the variant digit
    counts.forEach((s, j) => {
      if (!fixed.has(j)) assert.equal(s.size, 16, `position ${j}`)
    })
    assert.deepEqual([...(counts[19] as Set<string>)].sort(), ['8', '9', 'a', 'b'])
  })
})

describe('sha256HexPrefix', () => {
  it('is the start of sha256Hex', () => {
    for (const s of ['', 'a', '{"epoch":1,"kind":"BATCH_OK"}', 'é 日本 \u{1F600}']) {
      assert.equal(sha256HexPrefix(s, 40), sha256Hex(s).slice(0, 40))
      assert.equal(sha256HexPrefix(s, 64), sha256Hex(s))
    }
  })
})
