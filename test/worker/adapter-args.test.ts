/**
 * A START naming an upstream twice in `from_nodes` (a peer coordinator's: this one refuses such a
 * graph) reads that upstream once: the pull waited for it to end twice and never ended.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { checkAdapter } from '../../src/worker/input.ts'

test('an input adapter naming an upstream twice reads it once', () => {
  const r = checkAdapter('pull.from_artifacts', { from_nodes: ['a', 'b', 'a'] }, { strict: false, defaultPollMs: 100 })
  assert.ok(r.ok)
  assert.deepEqual(r.spec.fromNodes, ['a', 'b'])
})
