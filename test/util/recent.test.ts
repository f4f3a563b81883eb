import assert from 'node:assert/strict'
import { test } from 'node:test'
import { RecentMap, RecentSet } from '../../src/util/recent.ts'

test('RecentSet keeps the last max keys and forgets the oldest first', () => {
  const s = new RecentSet<string>(3)
  for (const k of ['a', 'b', 'c', 'd']) s.add(k)
  assert.equal(s.size, 3)
  assert.deepEqual(['a', 'b', 'c', 'd'].map((k) => s.has(k)), [false, true, true, true])
  s.add('e')
  assert.equal(s.has('b'), false)
  assert.equal(s.has('e'), true)
})

test('RecentSet: a key added again becomes the newest; a deleted key is not forgotten twice', () => {
  const s = new RecentSet<string>(3)
  s.add('a').add('b').add('c')
  s.add('a') // newest again: b goes next
  s.add('d')
  assert.deepEqual(['a', 'b', 'c', 'd'].map((k) => s.has(k)), [true, false, true, true])
  s.delete('c')
  s.add('c') // re-added after a delete: its old ring slot must not forget it
  s.add('e')
  s.add('f')
  assert.equal(s.has('c'), true)
  assert.equal(s.size, 3)
})

test('RecentSet: a key re-added exactly when it would be forgotten stays', () => {
  const s = new RecentSet<string>(2)
  s.add('a').add('b').add('a')
  assert.deepEqual([s.has('a'), s.has('b'), s.size], [true, true, 2])
})

test('RecentMap forgets values with their keys; the size stays at the bound after many insertions', () => {
  const m = new RecentMap<string, number>(2)
  m.set('a', 1).set('b', 2).set('c', 3)
  assert.deepEqual([m.get('a'), m.get('b'), m.get('c'), m.size], [undefined, 2, 3, 2])
  m.set('b', 20).set('d', 4)
  assert.deepEqual([m.get('b'), m.get('c'), m.get('d')], [20, undefined, 4])
  m.delete('b')
  m.set('e', 5).set('f', 6)
  assert.deepEqual([m.has('d'), m.get('e'), m.get('f'), m.size], [false, 5, 6, 2])
  // Many insertions past the bound: the size stays at the bound.
  const big = new RecentSet<number>(10_000)
  for (let i = 0; i < 50_000; i++) big.add(i)
  assert.equal(big.size, 10_000)
  assert.equal(big.has(39_999), false)
  assert.equal(big.has(40_000), true)
  assert.throws(() => new RecentSet(0), /positive integer/)
})
