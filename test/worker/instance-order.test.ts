/**
 * Instance ids of one worker id are ordered by their process's start, so that a worker hands back
 * only what an older instance (its dead predecessor) claimed, never a newer, live one's claim.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { heldByOlderInstance, instanceStamp, newInstanceId } from '../../src/worker/instance.ts'

test('instance ids carry their start time and are ordered, even when made in the same millisecond', () => {
  const at = Date.UTC(2026, 0, 1)
  const a = newInstanceId(at)
  const b = newInstanceId(at)
  assert.match(a, /^[0-9a-z]{9}-[0-9a-f-]{36}$/)
  assert.ok((instanceStamp(a) as number) >= at)
  assert.ok((instanceStamp(b) as number) > (instanceStamp(a) as number))
  assert.ok(b > a, 'fixed width: the text sorts as the stamp does')
  assert.equal(instanceStamp('0b9f3c1e-6f2a-4c55-9d7e-2a1b3c4d5e6f'), null, "an earlier flowkit's bare UUID has no stamp")
})

test("a claim is handed back only when it is an older instance's of the same worker id; a newer instance's, another worker's or an unknown holder's is held elsewhere", () => {
  const older = newInstanceId(1_000)
  const mine = newInstanceId(2_000_000_000_000)
  const newer = newInstanceId(2_000_000_000_001)
  assert.equal(heldByOlderInstance(`w#1#${older}`, 'w#1', mine), true, 'a predecessor (a worker id may hold #)')
  assert.equal(heldByOlderInstance(`w#1#${newer}`, 'w#1', mine), false, 'a live successor')
  assert.equal(heldByOlderInstance(`w#1#${mine}`, 'w#1', mine), false, 'this instance')
  assert.equal(heldByOlderInstance('w#1#0b9f3c1e-6f2a-4c55-9d7e-2a1b3c4d5e6f', 'w#1', mine), true, "an earlier flowkit's instance ran before this one")
  assert.equal(heldByOlderInstance(`w2#${older}`, 'w#1', mine), false, 'another worker id')
  assert.equal(heldByOlderInstance('flowkit:handed-back', 'w#1', mine), false, 'no worker (the coordinator fenced the attempt)')
  const sameMs = `${mine.slice(0, 9)}-0b9f3c1e-6f2a-4c55-9d7e-2a1b3c4d5e6f`
  assert.equal(heldByOlderInstance(`w#1#${sameMs}`, 'w#1', mine), false, 'started in the same millisecond: not known to be older')
})
