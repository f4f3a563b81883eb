/**
 * Task variables (SCENARIOS T13). The catalogue names the range S-083…S-105 without itemising it;
 * the ids below are assigned one per rule, in the order the catalogue lists the rules.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { PermanentError } from '../../src/errors.ts'
import { BUILTIN_FUNCTIONS } from '../../src/coordinator/functions.ts'
import { MemoryLogger } from '../../src/log.ts'
import {
  VARS_LIMITS,
  VarsError,
  type VarsFn,
  type VarsFnResult,
  countLeaves,
  detectSecretString,
  getVar,
  incrVar,
  isHighEntropyToken,
  jsonBytes,
  mergeVars,
  parseKeyPath,
  setVars,
  shannonEntropy,
  unsetVars,
  varsIncr,
  varsMerge,
  varsSet,
  varsUnset,
} from '../../src/coordinator/vars.ts'

type Json = Record<string, unknown>

async function run(fn: VarsFn, vars: Json, args: Json): Promise<{ res: VarsFnResult; log: MemoryLogger }> {
  const log = new MemoryLogger()
  const res = await fn({ task: { coordinator: { vars } }, args, log })
  return { res, log }
}

/** Runs `fn` expecting a VarsError; returns it and the log. */
async function runRejects(fn: VarsFn, vars: Json, args: Json): Promise<{ err: VarsError; log: MemoryLogger }> {
  const log = new MemoryLogger()
  let caught: unknown
  try {
    await fn({ task: { coordinator: { vars } }, args, log })
  } catch (err) {
    caught = err
  }
  assert.ok(caught instanceof VarsError, `expected a VarsError, got ${String(caught)}`)
  return { err: caught, log }
}

interface Want {
  reason: string
  key?: string | null
  limit?: string
  message?: (string | RegExp)[]
  /** Text that must not appear in the message (the value). */
  hidden?: string[]
}

/** Calls a pure operation expecting a permanent VarsError with the given reason, key and limit. */
function throwsVars(f: () => unknown, want: Want): VarsError {
  let caught: unknown
  try {
    f()
  } catch (err) {
    caught = err
  }
  return checkErr(caught, want)
}

function checkErr(caught: unknown, want: Want): VarsError {
  assert.ok(caught instanceof VarsError, `expected a VarsError, got ${String(caught)}`)
  assert.ok(caught instanceof PermanentError, 'a VarsError is a PermanentError')
  assert.equal(caught.permanent, true)
  assert.equal(caught.reasonCode, want.reason, caught.message)
  if (want.key !== undefined) assert.equal(caught.key, want.key, caught.message)
  if (want.limit !== undefined) assert.equal(caught.limit, want.limit, caught.message)
  for (const part of want.message ?? []) {
    if (typeof part === 'string') assert.ok(caught.message.includes(part), `"${caught.message}" should include "${part}"`)
    else assert.match(caught.message, part)
  }
  for (const h of want.hidden ?? []) assert.ok(!caught.message.includes(h), `"${caught.message}" must not include the value`)
  return caught
}

/** Everything a log record carries, as one string, to search for a leaked value. */
const logText = (log: MemoryLogger): string => JSON.stringify(log.records)

/** `n` top-level leaves k0…k(n-1). */
function leaves(n: number): Json {
  return Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, i]))
}

/** A dotted path of `depth` segments, e.g. depth 3 → "s0.s1.s2". */
const deepPath = (depth: number): string => Array.from({ length: depth }, (_, i) => `s${i}`).join('.')

/** A nested object `depth` levels deep holding `leaf` at the bottom. */
function nested(depth: number, leaf: unknown): unknown {
  let v = leaf
  for (let i = depth - 1; i >= 0; i--) v = { [`n${i}`]: v }
  return v
}

// Token-format fixtures, assembled so that repository secret scanners do not flag this file.
const AWS_KEY = 'AKIA' + 'IOSFODNN7EXAMPLE'
const GITHUB_TOKEN = 'gh' + 'p_' + 'a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8'
const SLACK_TOKEN = 'xo' + 'xb-' + '123456789012-123456789012-AbCdEfGhIjKlMnOp'
const JWT = 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9' + '.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ' + '.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c'
const PRIVATE_KEY = '-----BEGIN ' + 'RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----'
const RANDOM_20 = 'wgDh35X2OheLLyC5U7A9'
const RANDOM_40 = 'nuD2O-DqyCLy3_PbxIbCdRJ-K6S7uiQjV6UkQGvm'
const RANDOM_B64 = '+xwnN3Zwj224UjuUm/7SLWQFxjx/X1GqGInyx3rM4ut6Ln4iGD7Z/Q8qGdUGo+6p'

test('the four variable functions are registered as built-in coordinator functions', () => {
  assert.equal(BUILTIN_FUNCTIONS['vars.set'], varsSet)
  assert.equal(BUILTIN_FUNCTIONS['vars.merge'], varsMerge)
  assert.equal(BUILTIN_FUNCTIONS['vars.incr'], varsIncr)
  assert.equal(BUILTIN_FUNCTIONS['vars.unset'], varsUnset)
})

describe('vars.set', () => {
  test('S-083 vars.set dotted and nested keys in one call', async () => {
    const before = { keep: true, a: { z: 0 } }
    const { res } = await run(varsSet, before, { kv: { 'a.b': 1, c: { d: 2 }, 'e.f.g': 'x' } })
    assert.deepEqual(res.vars, { keep: true, a: { z: 0, b: 1 }, c: { d: 2 }, e: { f: { g: 'x' } } })
    assert.deepEqual(res.meta, { touched: ['a.b', 'c.d', 'e.f.g'] })
    assert.deepEqual(res.stats, { vars_touched: 3, vars_keys: 5 })
    assert.deepEqual(before, { keep: true, a: { z: 0 } }, 'the task vars passed in are not mutated')
  })

  test("vars.set reads its arguments as the seed does: an object under a key without a dot is set leaf by leaf; the keyword form; block_sensitive", async () => {
    // The seed flattens { sla: { b: 2 } } into the leaf sla.b: the sla.a set before stays (it was replaced).
    const merged = await run(varsSet, { sla: { a: 1 } }, { kv: { sla: { b: 2, deep: { c: 3 } } } })
    assert.deepEqual(merged.res.vars, { sla: { a: 1, b: 2, deep: { c: 3 } } })
    assert.deepEqual(merged.res.meta.touched, ['sla.b', 'sla.deep.c'])
    // Under a dotted key, the object is the value, set whole; an empty object under a plain key sets nothing.
    assert.deepEqual((await run(varsSet, { sla: { x: { a: 1 } } }, { kv: { 'sla.x': { b: 2 }, e: {} } })).res.vars, { sla: { x: { b: 2 } } })
    // A key inside an object is one segment: "a.b" there is refused, not read as a path.
    assert.equal((await runRejects(varsSet, {}, { kv: { sla: { 'a.b': 1 } } })).err.reasonCode, 'vars_invalid_key')
    // The seed's keyword form: the variables are the arguments.
    assert.deepEqual((await run(varsSet, {}, { qps: 7, sla: { max_delay: 500 } })).res.vars, { qps: 7, sla: { max_delay: 500 } })
    // block_sensitive (the seed's name of block_secrets), beside kv or inside it, blocks a secret and is not a variable.
    for (const args of [{ kv: { aws: AWS_KEY }, block_sensitive: true }, { kv: { aws: AWS_KEY, block_sensitive: true } }, { aws: AWS_KEY, block_sensitive: true }]) {
      assert.equal((await runRejects(varsSet, {}, args)).err.reasonCode, 'vars_secret_detected', JSON.stringify(Object.keys(args)))
    }
    assert.deepEqual((await run(varsSet, {}, { kv: { n: 1, block_sensitive: false } })).res.vars, { n: 1 })
  })

  test('S-084 vars.set { key, value }, keys applied in order, a value replaces what was at its path', async () => {
    const one = await run(varsSet, { a: { old: 1 } }, { key: 'a', value: { fresh: [1, 2] } })
    assert.deepEqual(one.res.vars, { a: { fresh: [1, 2] } }, 'set replaces, it does not merge')
    assert.deepEqual(one.res.meta.touched, ['a'])
    // Later keys of the same call see the earlier ones.
    assert.deepEqual(setVars({}, { a: { b: 1 }, 'a.c': 2 }).vars, { a: { b: 1, c: 2 } })
    assert.deepEqual(setVars({}, { 'a.c': 2, a: 5 }).vars, { a: 5 })
    // A dotted path through a non-object replaces it with an object (last write wins).
    assert.deepEqual(setVars({ a: 1 }, { 'a.b': 2 }).vars, { a: { b: 2 } })
    // null, booleans, arrays and {} are values like any other.
    assert.deepEqual(setVars({}, { n: null, t: false, l: [1, { x: 'y' }], e: {} }).vars, { n: null, t: false, l: [1, { x: 'y' }], e: {} })
    // The written value is a copy: mutating the args afterwards does not reach the variables.
    const args = { kv: { obj: { deep: [1] } } }
    const { res } = await run(varsSet, {}, args)
    args.kv.obj.deep.push(2)
    assert.deepEqual(res.vars, { obj: { deep: [1] } })
  })

  test('vars.set rejects bad args with bad_fn_args', async () => {
    for (const args of [{}, { kv: [] }, { kv: 'a=1' }, { kv: {} }, { key: 'a' }, { key: 1, value: 1 }, { kv: { a: 1 }, block_secrets: 'yes' }, { kv: { a: 1 }, block_sensitive: 1 }, { block_secrets: true }]) {
      const { err } = await runRejects(varsSet, {}, args)
      assert.equal(err.reasonCode, 'bad_fn_args', JSON.stringify(args))
    }
  })

  test('vars.set rejects values that are not JSON', () => {
    for (const value of [Number.NaN, Number.POSITIVE_INFINITY, undefined, () => 1, 10n, new Date(0), new Map(), Symbol('s')]) {
      throwsVars(() => setVars({}, { a: { b: [value] } }), { reason: 'vars_invalid_value', key: 'a.b' })
    }
    const loop: Json = {}
    loop['self'] = loop
    throwsVars(() => setVars({}, { a: loop }), { reason: 'vars_invalid_value', message: ['circular'] })
    // A shared (non-circular) reference is fine.
    const shared = { x: 1 }
    assert.deepEqual(setVars({}, { a: { p: shared, q: shared } }).vars, { a: { p: { x: 1 }, q: { x: 1 } } })
  })
})

describe('vars.merge', () => {
  test('S-085 vars.merge deep merge where non-object leaves overwrite (arrays are leaves)', async () => {
    const before = { a: { keep: 1, c: 5, list: [1, 2, 3], obj: { x: 1 } }, top: 'old' }
    const { res } = await run(varsMerge, before, {
      data: { a: { b: 2, c: { d: 3 }, list: [9], obj: 'now a string' }, top: { nested: true }, fresh: { e: {} } },
    })
    assert.deepEqual(res.vars, {
      a: { keep: 1, c: { d: 3 }, list: [9], obj: 'now a string', b: 2 },
      top: { nested: true },
      fresh: { e: {} },
    })
    assert.deepEqual(res.meta.touched, ['a.b', 'a.c', 'a.list', 'a.obj', 'top', 'fresh'])
    assert.deepEqual(before.a.list, [1, 2, 3], 'input not mutated')
    // Objects on both sides merge all the way down.
    assert.deepEqual(mergeVars({ a: { b: { c: { d: 1 } } } }, { a: { b: { c: { e: 2 } } } }).vars, { a: { b: { c: { d: 1, e: 2 } } } })
    // Merging {} into an object changes nothing.
    assert.deepEqual(mergeVars({ a: { b: 1 } }, { a: {} }), { vars: { a: { b: 1 } }, touched: [] })
  })

  test('vars.merge validates every nested key and rejects bad args', async () => {
    throwsVars(() => mergeVars({}, { a: { 'b.c': 1 } }), { reason: 'vars_invalid_key', key: 'a.b.c', message: ['"." inside a segment'] })
    throwsVars(() => mergeVars({ a: { x: 1 } }, { a: { $set: 1 } }), { reason: 'vars_invalid_key', key: 'a.$set' })
    throwsVars(() => mergeVars({}, { 'a.b': 1 }), { reason: 'vars_invalid_key', key: 'a.b' })
    for (const args of [{}, { data: [1] }, { data: 'x' }, { data: null }, { kv: 'x' }, { block_sensitive: true }]) {
      const { err } = await runRejects(varsMerge, {}, args)
      assert.equal(err.reasonCode, 'bad_fn_args', JSON.stringify(args))
    }
  })

  test("vars.merge takes the seed's forms: kv for data, or the variables as its arguments; block_sensitive blocks a secret", async () => {
    assert.deepEqual((await run(varsMerge, { a: { x: 1 } }, { kv: { a: { y: 2 } } })).res.vars, { a: { x: 1, y: 2 } })
    assert.deepEqual((await run(varsMerge, { a: { x: 1 } }, { a: { y: 2 }, b: 3 })).res.vars, { a: { x: 1, y: 2 }, b: 3 })
    assert.equal((await runRejects(varsMerge, {}, { kv: { aws: AWS_KEY }, block_sensitive: true })).err.reasonCode, 'vars_secret_detected')
    assert.deepEqual((await run(varsMerge, {}, { n: 1, block_sensitive: false })).res.vars, { n: 1 }, 'the flag is not a variable')
  })
})

describe('vars.incr', () => {
  test('S-086 vars.incr creates a missing leaf at 0 (by defaults to 1)', async () => {
    const { res } = await run(varsIncr, { other: 1 }, { key: 'counters.seen' })
    assert.deepEqual(res.vars, { other: 1, counters: { seen: 1 } })
    assert.deepEqual(res.meta, { touched: ['counters.seen'], value: 1 })
    const again = await run(varsIncr, res.vars, { key: 'counters.seen', by: 4 })
    assert.deepEqual(again.res.vars, { other: 1, counters: { seen: 5 } })
    // A property inherited from Object.prototype is not an existing value.
    assert.deepEqual(incrVar({}, 'constructor').vars, { constructor: 1 })
  })

  test('S-087 vars.incr accepts floats and negatives', () => {
    assert.equal(incrVar({ n: 1 }, 'n', 0.5).value, 1.5)
    assert.equal(incrVar({ n: 1 }, 'n', -3).value, -2)
    assert.equal(incrVar({}, 'n', -0.25).value, -0.25)
    assert.equal(incrVar({ n: 2.5 }, 'n', 0).value, 2.5)
    let vars: Json = {}
    for (let i = 0; i < 10; i++) vars = incrVar(vars, 'f', 0.1).vars
    assert.ok(Math.abs((vars['f'] as number) - 1) < 1e-9)
  })

  test('S-088 vars.incr rejects a NaN, Infinity or non-number by', async () => {
    for (const by of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, '1', null, true]) {
      const { err } = await runRejects(varsIncr, { n: 1 }, { key: 'n', by })
      assert.equal(err.reasonCode, 'bad_fn_args', String(by))
      assert.equal(err.key, 'n')
    }
    // A result that overflows to Infinity is refused too.
    throwsVars(() => incrVar({ n: Number.MAX_VALUE }, 'n', Number.MAX_VALUE), { reason: 'vars_invalid_value', key: 'n' })
  })

  test('S-089 vars.incr rejects a non-numeric existing target (permanent)', async () => {
    for (const target of ['12', { x: 1 }, [1], null, true, {}]) {
      const { err } = await runRejects(varsIncr, { t: target }, { key: 't' })
      checkErr(err, { reason: 'vars_not_numeric', key: 't', message: ['"t"', 'not a number'], hidden: typeof target === 'string' ? [target] : [] })
    }
    throwsVars(() => incrVar({ a: 'text' }, 'a.b'), { reason: 'vars_type_conflict', key: 'a.b', hidden: ['text'] })
    const { err } = await runRejects(varsIncr, {}, {})
    assert.equal(err.reasonCode, 'bad_fn_args')
  })

  test('S-090 vars.incr is a read-modify-write on the vars it is given: successive calls accumulate exactly', async () => {
    // The coordinator runs functions one at a time inside the task's single writer and passes the
    // task as last written; this is the same loop, done by hand.
    let vars: Json = {}
    for (let i = 0; i < 50; i++) vars = (await run(varsIncr, vars, { key: 'hits', by: i % 2 === 0 ? 2 : -1 })).res.vars
    assert.deepEqual(vars, { hits: 25 })
  })
})

describe('vars.unset', () => {
  test('S-091 vars.unset removes several paths and prunes the parents left empty', async () => {
    const before = { a: { b: { c: 1 } }, d: 2, e: { f: 1, g: 2 }, empty: {}, h: { i: { j: 1 }, k: 1 } }
    const { res } = await run(varsUnset, before, { keys: ['a.b.c', 'd', 'e.f', 'h.i.j', 'nope', 'd.deeper', 'empty.x'] })
    assert.deepEqual(res.vars, { e: { g: 2 }, empty: {}, h: { k: 1 } })
    assert.deepEqual(res.meta, { touched: ['a.b.c', 'd', 'e.f', 'h.i.j'], missing: ['nope', 'd.deeper', 'empty.x'] })
    // An object path removes the whole subtree; `key` works as well; the root stays an object.
    assert.deepEqual((await run(varsUnset, { a: { b: { c: 1 } } }, { key: 'a' })).res.vars, {})
    assert.deepEqual(unsetVars({ a: { b: 1 } }, ['a.b']).vars, {})
    assert.deepEqual(before.a, { b: { c: 1 } }, 'input not mutated')
  })

  test('vars.unset validates its keys and rejects bad args', async () => {
    throwsVars(() => unsetVars({}, ['a..b']), { reason: 'vars_invalid_key', key: 'a..b' })
    throwsVars(() => unsetVars({}, ['$where']), { reason: 'vars_invalid_key' })
    for (const args of [{}, { keys: 'a' }, { keys: [1] }, { keys: [] }, { key: 3 }]) {
      const { err } = await runRejects(varsUnset, {}, args)
      assert.equal(err.reasonCode, 'bad_fn_args', JSON.stringify(args))
    }
  })
})

describe('key validation', () => {
  test('S-092 a key with an empty segment is refused (vars_invalid_key)', () => {
    for (const key of ['', '.a', 'a.', 'a..b', '.']) {
      throwsVars(() => setVars({}, { [key]: 1 }), { reason: 'vars_invalid_key', key, message: ['empty segment', JSON.stringify(key)] })
    }
    throwsVars(() => setVars({}, { a: { '': 1 } }), { reason: 'vars_invalid_key', key: 'a.' })
    throwsVars(() => incrVar({}, 'a..b'), { reason: 'vars_invalid_key' })
    throwsVars(() => parseKeyPath(42), { reason: 'vars_invalid_key', message: ['must be a string'] })
  })

  test('S-093 a segment with a leading "$" is refused, anywhere in the path or the value', () => {
    for (const key of ['$a', 'a.$b', 'a.b.$']) throwsVars(() => setVars({}, { [key]: 1 }), { reason: 'vars_invalid_key', key, message: ['"$"'] })
    throwsVars(() => setVars({}, { a: { $gt: 1 } }), { reason: 'vars_invalid_key', key: 'a.$gt' })
    throwsVars(() => setVars({}, { a: [{ ok: 1 }, { $x: 1 }] }), { reason: 'vars_invalid_key', key: 'a.$x' })
    // "$" elsewhere in a segment is fine.
    assert.deepEqual(setVars({}, { 'price$': 1, 'a.b$c': 2 }).vars, { price$: 1, a: { b$c: 2 } })
  })

  test('S-094 a "." inside a segment (a key of an object value) is refused; __proto__ is reserved', () => {
    throwsVars(() => setVars({}, { a: { 'b.c': 1 } }), { reason: 'vars_invalid_key', key: 'a.b.c', message: ['"." inside a segment'] })
    throwsVars(() => setVars({}, { a: [{ 'x.y': 1 }] }), { reason: 'vars_invalid_key' })
    throwsVars(() => setVars({}, { 'a.__proto__.polluted': 1 }), { reason: 'vars_invalid_key', message: ['__proto__'] })
    throwsVars(() => setVars({}, JSON.parse('{"a":{"__proto__":{"polluted":1}}}') as Json), { reason: 'vars_invalid_key' })
    assert.equal(({} as Json)['polluted'], undefined)
  })

  test('S-095 a NUL character in a key is refused, and the message escapes it', () => {
    const err = throwsVars(() => setVars({}, { 'a\0b': 1 }), { reason: 'vars_invalid_key', key: 'a\0b', message: ['NUL', '"a\\u0000b"'] })
    assert.ok(!err.message.includes('\0'))
    throwsVars(() => setVars({}, { a: { 'x\0': 1 } }), { reason: 'vars_invalid_key' })
    throwsVars(() => unsetVars({}, ['\0']), { reason: 'vars_invalid_key' })
  })
})

describe('limits', () => {
  test('S-096 at most 256 leaf keys after the write (exactly 256 is fine)', async () => {
    assert.equal(VARS_LIMITS.maxKeys, 256)
    const full = setVars({}, leaves(256)).vars
    assert.equal(countLeaves(full), 256)
    // Overwriting an existing key at the limit is fine; incr of an existing counter too.
    assert.equal(countLeaves(setVars(full, { k0: 'x' }).vars), 256)
    assert.equal(countLeaves(incrVar(full, 'k1').vars), 256)
    const { err, log } = await runRejects(varsSet, full, { kv: { extra: 'v' } })
    checkErr(err, { reason: 'vars_limit', key: 'extra', limit: 'maxKeys', message: ['257', '256', '"extra"'] })
    assert.equal(log.records.find((r) => r.event === 'vars.rejected')?.fields['limit'], 'maxKeys')
    throwsVars(() => incrVar(full, 'fresh'), { reason: 'vars_limit', limit: 'maxKeys' })
    throwsVars(() => mergeVars(full, { more: { x: 1 } }), { reason: 'vars_limit', limit: 'maxKeys' })
    throwsVars(() => setVars({}, leaves(257)), { reason: 'vars_limit', limit: 'maxKeys', message: ['and 254 more'] })
    // Nested leaves count; arrays and {} are one leaf each.
    assert.equal(countLeaves({ a: { b: 1, c: { d: [1, 2, 3] } }, e: {} }), 3)
    // Unset always works, even on variables already over the limit.
    assert.equal(countLeaves(unsetVars(leaves(300), ['k0']).vars), 299)
  })

  test('S-097 at most 16 levels, for the path and for nested keys of the value (exactly 16 is fine)', () => {
    assert.equal(VARS_LIMITS.maxDepth, 16)
    assert.deepEqual(parseKeyPath(deepPath(16)).length, 16)
    assert.equal(getVar(setVars({}, { [deepPath(16)]: 1 }).vars, deepPath(16)), 1)
    throwsVars(() => setVars({}, { [deepPath(17)]: 1 }), { reason: 'vars_limit', limit: 'maxDepth', key: deepPath(17), message: ['17', '16'] })
    assert.ok(setVars({}, { [deepPath(8)]: nested(8, 1) }).vars)
    throwsVars(() => setVars({}, { [deepPath(8)]: nested(9, 1) }), { reason: 'vars_limit', limit: 'maxDepth' })
    throwsVars(() => mergeVars({}, nested(17, 1) as Json), { reason: 'vars_limit', limit: 'maxDepth' })
    assert.ok(mergeVars({}, nested(16, 1) as Json).vars)
    throwsVars(() => incrVar({}, deepPath(17)), { reason: 'vars_limit', limit: 'maxDepth' })
    throwsVars(() => unsetVars({}, [deepPath(17)]), { reason: 'vars_limit', limit: 'maxDepth' })
    // Arrays are leaves: objects inside them do not add levels.
    assert.ok(setVars({}, { [deepPath(16)]: [nested(10, 1)] }).vars)
  })

  test('S-098 a path is at most 512 characters (exactly 512 is fine)', () => {
    assert.equal(VARS_LIMITS.maxPathChars, 512)
    const seg = 'x'.repeat(127)
    const p512 = [seg, seg, seg].join('.') + '.' + 'y'.repeat(128)
    assert.equal(p512.length, 512)
    assert.equal(getVar(setVars({}, { [p512]: 1 }).vars, p512), 1)
    const p513 = `z${p512}` // first segment 128 characters, path 513
    const err = throwsVars(() => setVars({}, { [p513]: 1 }), { reason: 'vars_limit', limit: 'maxPathChars', key: p513, message: ['513', '512'] })
    assert.ok(err.message.length < 300, 'a long key is shortened in the message')
    // Nested keys of a value count towards the full path.
    throwsVars(() => setVars({}, { [[seg, seg, seg].join('.')]: { [seg]: { yy: 1 } } }), { reason: 'vars_limit', limit: 'maxPathChars' })
    // Characters are code points: 512 two-unit emoji are 512 characters.
    const emoji = '😀'.repeat(100)
    const wide = [emoji, emoji, emoji, emoji, '😀'.repeat(108)].join('.')
    assert.equal([...wide].length, 512)
    assert.ok(setVars({}, { [wide]: 1 }).vars)
    throwsVars(() => setVars({}, { [`😀${wide}`]: 1 }), { reason: 'vars_limit', limit: 'maxPathChars', message: ['513'] })
  })

  test('S-099 a segment is at most 128 characters (exactly 128 is fine)', () => {
    assert.equal(VARS_LIMITS.maxSegmentChars, 128)
    assert.ok(setVars({}, { [`a.${'s'.repeat(128)}`]: 1 }).vars)
    throwsVars(() => setVars({}, { [`a.${'s'.repeat(129)}`]: 1 }), { reason: 'vars_limit', limit: 'maxSegmentChars', message: ['129', '128'] })
    throwsVars(() => setVars({}, { a: { ['s'.repeat(129)]: 1 } }), { reason: 'vars_limit', limit: 'maxSegmentChars' })
    throwsVars(() => mergeVars({}, { ['s'.repeat(129)]: 1 }), { reason: 'vars_limit', limit: 'maxSegmentChars' })
    assert.ok(setVars({}, { ['é'.repeat(128)]: 1 }).vars, '128 multi-byte characters are 128 characters')
  })

  test('the whole variables object is at most 1 MiB of JSON (a task document never nears 16 MiB)', () => {
    assert.equal(VARS_LIMITS.maxTotalBytes, 1024 * 1024)
    let vars: Record<string, unknown> = {}
    // 15 values of 60 KB fit (about 900 KB); 20 do not, though each value and the key count do.
    for (let i = 0; i < 15; i++) vars = setVars(vars, { [`k${i}`]: 'x'.repeat(60_000) }).vars
    let last = vars
    for (let i = 15; i < 20 && last === vars; i++) {
      try {
        last = setVars(vars, { [`k${i}`]: 'x'.repeat(60_000) }).vars
        vars = last
      } catch (err) {
        assert.equal((err as VarsError).limit, 'maxTotalBytes')
        assert.ok(!(err as Error).message.includes('xxxx'), 'the message never holds the value')
        return
      }
    }
    assert.fail('the total limit was never reached')
  })

  test('S-100 a value is at most 64 KiB of UTF-8 JSON (exact boundary, multi-byte characters)', () => {
    assert.equal(VARS_LIMITS.maxValueBytes, 65536)
    const ascii = 'a'.repeat(65536 - 2) // + 2 quotes = 65536 bytes
    assert.equal(jsonBytes(ascii), 65536)
    assert.ok(setVars({}, { v: ascii }).vars)
    throwsVars(() => setVars({}, { v: ascii + 'a' }), { reason: 'vars_limit', limit: 'maxValueBytes', key: 'v', message: ['65537', '65536'], hidden: [ascii.slice(0, 50)] })
    // "€" is 3 bytes in UTF-8: 21845 of them are 65537 bytes with the quotes, though only 21845 UTF-16 units.
    const euros = '€'.repeat(21845)
    assert.equal(euros.length, 21845)
    assert.equal(jsonBytes(euros), 65537)
    throwsVars(() => setVars({}, { v: euros }), { reason: 'vars_limit', limit: 'maxValueBytes', message: ['65537'], hidden: ['€€€'] })
    const exact = '€'.repeat(21844) + 'ab' // 65532 + 2 + 2 quotes
    assert.equal(jsonBytes(exact), 65536)
    assert.ok(setVars({}, { v: exact }).vars)
    // The whole JSON of an object value counts; merge measures each value it writes.
    throwsVars(() => setVars({}, { v: { a: 'x'.repeat(40000), b: 'y'.repeat(40000) } }), { reason: 'vars_limit', limit: 'maxValueBytes' })
    throwsVars(() => mergeVars({}, { v: { a: 'x'.repeat(70000) } }), { reason: 'vars_limit', limit: 'maxValueBytes', key: 'v' })
  })
})

describe('secret detector', () => {
  test('S-101 token formats (AWS, GitHub, Slack, JWT, private key) block the write with vars_secret_detected', async () => {
    const cases: [string, string][] = [
      [AWS_KEY, 'aws_access_key_id'],
      [GITHUB_TOKEN, 'github_token'],
      [SLACK_TOKEN, 'slack_token'],
      [JWT, 'jwt'],
      [PRIVATE_KEY, 'private_key'],
    ]
    for (const [secret, kind] of cases) {
      assert.equal(detectSecretString(secret), kind)
      assert.equal(detectSecretString(`Authorization: Bearer ${secret} (copied)`), kind, 'found inside a longer string')
      const { err } = await runRejects(varsSet, {}, { kv: { 'creds.api': secret }, block_secrets: true })
      checkErr(err, { reason: 'vars_secret_detected', key: 'creds.api', message: ['"creds.api"', kind], hidden: [secret, secret.slice(0, 12)] })
    }
  })

  test('S-102 high-entropy strings (length >= 20) are detected; nested and merged values are scanned', async () => {
    for (const s of [RANDOM_20, RANDOM_40, RANDOM_B64]) assert.equal(detectSecretString(s), 'high_entropy', s)
    assert.equal(isHighEntropyToken(RANDOM_20.slice(0, 19)), false, 'below 20 characters never counts')
    assert.ok(shannonEntropy(RANDOM_40) > 4.5)
    assert.equal(shannonEntropy('aaaa'), 0)
    assert.equal(shannonEntropy('ab'), 1)
    const { err } = await runRejects(varsMerge, {}, { data: { conn: { list: ['fine', { key: RANDOM_40 }] } }, block_secrets: true })
    checkErr(err, { reason: 'vars_secret_detected', key: 'conn.list.key', message: ['high_entropy'], hidden: [RANDOM_40] })
    const set = await runRejects(varsSet, {}, { key: 'k', value: { deep: { deeper: `token=${RANDOM_20}` } }, block_secrets: true })
    checkErr(set.err, { reason: 'vars_secret_detected', key: 'k.deep.deeper', hidden: [RANDOM_20] })
  })

  test('S-101 a connection string with a password and a password=… pair block the write too (as the logs mask them)', async () => {
    assert.equal(detectSecretString('mongodb://bob:VarsPW181@h/db'), 'url_credentials')
    assert.equal(detectSecretString('host=db user=app password=hunter2hunter2'), 'named_secret')
    assert.equal(detectSecretString('api_key: abcd1234'), 'named_secret')
    const { err } = await runRejects(varsSet, {}, { kv: { 'db.url': 'mongodb://bob:VarsPW181@h/db' }, block_secrets: true })
    checkErr(err, { reason: 'vars_secret_detected', key: 'db.url', message: ['"db.url"', 'url_credentials'], hidden: ['VarsPW181'] })
    for (const fine of ['mongodb://db.internal:27017/app', 'https://user@example.com/x', 'forgot your password? reset it', 'password policy: 12 characters']) {
      assert.equal(detectSecretString(fine), null, fine)
    }
  })

  test('S-103 normal strings are not flagged, and the detector is off unless block_secrets is true', async () => {
    const normal = [
      'The quick brown fox jumps over the lazy dog',
      'MyLongCamelCaseIdentifierName2024',
      'customer_account_identifier_v2_Production',
      'https://example.com/path/to/Resource?x=1&Y=2',
      '/Users/JohnSmith/Documents/Report2024Final.pdf',
      's3://My-Bucket/data/2024/05/01/Part-0001.parquet',
      '2024-05-01T12:34:56.789Z',
      '550e8400-e29b-41d4-a716-446655440000',
      'da39a3ee5e6b4b0d3255bfef95601890afd80709',
      'a.b.c dotted.names.are.fine',
      'ä'.repeat(30),
      '',
    ]
    for (const s of normal) assert.equal(detectSecretString(s), null, s)
    const { res } = await run(varsSet, {}, { kv: { notes: normal }, block_secrets: true })
    assert.deepEqual(res.vars, { notes: normal })
    // Without block_secrets (or with false) a secret-looking value is stored as asked.
    assert.deepEqual((await run(varsSet, {}, { kv: { k: AWS_KEY } })).res.vars, { k: AWS_KEY })
    assert.deepEqual((await run(varsSet, {}, { kv: { k: AWS_KEY }, block_secrets: false })).res.vars, { k: AWS_KEY })
    // Numbers and incr are never scanned.
    assert.ok((await run(varsIncr, {}, { key: 'n', by: 123456789, block_secrets: true })).res.vars)
  })

  test('S-104 a blocked secret: the message and the logs name the key, never the value', async () => {
    const { err, log } = await runRejects(varsSet, { prior: 1 }, { kv: { 'svc.token_value': GITHUB_TOKEN, other: 'ok' }, block_secrets: true })
    checkErr(err, { reason: 'vars_secret_detected', key: 'svc.token_value', hidden: [GITHUB_TOKEN] })
    const blocked = log.records.filter((r) => r.event === 'vars.secret_blocked')
    assert.equal(blocked.length, 1)
    assert.equal(blocked[0]?.level, 'warn')
    assert.deepEqual(blocked[0]?.fields, { fn: 'vars.set', key: 'svc.token_value', reason_code: 'vars_secret_detected' })
    assert.ok(!logText(log).includes(GITHUB_TOKEN.slice(4)), 'no part of the value is logged')
    assert.ok(!log.events().includes('vars.set'), 'nothing was written, so no write event')
  })
})

describe('logs', () => {
  test('S-105 structured log events name the touched keys and never the values', async () => {
    const secretish = 'value-that-must-not-be-logged-42'
    const set = await run(varsSet, {}, { kv: { 'a.b': secretish, c: { d: secretish } } })
    assert.deepEqual(set.log.records, [{ level: 'info', event: 'vars.set', fields: { keys: ['a.b', 'c.d'], count: 2, total_keys: 2 } }])
    const merged = await run(varsMerge, set.res.vars, { data: { a: { e: secretish } } })
    assert.deepEqual(merged.log.records, [{ level: 'info', event: 'vars.merged', fields: { keys: ['a.e'], count: 1, total_keys: 3 } }])
    const incr = await run(varsIncr, merged.res.vars, { key: 'n', by: 7 })
    assert.deepEqual(incr.log.records, [{ level: 'info', event: 'vars.incr', fields: { keys: ['n'], count: 1, total_keys: 4 } }])
    const unset = await run(varsUnset, incr.res.vars, { keys: ['a.b', 'zz'] })
    assert.deepEqual(unset.log.records, [{ level: 'info', event: 'vars.unset', fields: { keys: ['a.b'], count: 1, total_keys: 3 } }])
    for (const { log } of [set, merged, incr, unset]) assert.ok(!logText(log).includes(secretish))
    // A rejected write logs vars.rejected with the key and the reason, not the value.
    const bad = await runRejects(varsSet, {}, { kv: { v: secretish.repeat(3000) } })
    assert.deepEqual(bad.log.records, [
      { level: 'warn', event: 'vars.rejected', fields: { fn: 'vars.set', key: 'v', reason_code: 'vars_limit', limit: 'maxValueBytes' } },
    ])
    assert.ok(!bad.err.message.includes(secretish))
  })
})
