/**
 * Per-type limits (`maxRunningByType`) are looked up by the node's type: a type named like an
 * Object member (`toString`, `constructor`, `hasOwnProperty`) found the inherited member as its
 * limit, every comparison with it was false, and its nodes stayed queued for ever.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Limits } from '../../src/coordinator/limits.ts'

test('a node type named like an Object member has no per-type limit unless one is set for it', () => {
  const limits = new Limits(0, { other: 4 })
  for (const type of ['toString', 'constructor', 'hasOwnProperty', '__proto__', 'valueOf']) {
    assert.equal(limits.canRun(type), true, type)
    limits.take(type)
    assert.equal(limits.canRun(type), true, `${type}, one running`)
  }
  const capped = new Limits(0, { toString: 1 })
  assert.equal(capped.canRun('toString'), true)
  capped.take('toString')
  assert.equal(capped.canRun('toString'), false, 'its own limit applies')
  assert.equal(capped.canRun('constructor'), true)
  assert.equal(new Limits(0, {}).limited, false)
  assert.equal(capped.limited, true)
})
