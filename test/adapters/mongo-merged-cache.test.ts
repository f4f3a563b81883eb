/**
 * The merged task states a MongoDB store keeps (mongo/merged-cache.ts) are held by weight (node
 * states plus batch ledger entries), so a few big tasks cannot hold much memory.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MergedTasks, weightOf } from '../../src/adapters/mongo/merged-cache.ts'
import type { VersionedTask } from '../../src/model/journal.ts'
import { makeNodeState, makeTaskDoc } from '../helpers/fixtures.ts'

function task(id: string, nodes: number, batches = 0): VersionedTask {
  const t = makeTaskDoc({ id, status: 'running' })
  t.nodes = Object.fromEntries(Array.from({ length: nodes }, (_, i) => [`n${i}`, makeNodeState(`n${i}`, 'step')]))
  const ledger = Object.fromEntries(Array.from({ length: batches }, (_, i) => [`b${i}`, [1, { count: 1 }] as [number, Record<string, unknown>]]))
  return { ...t, v: 10, ...(batches > 0 ? { batches: { n0: ledger } } : {}) }
}

test('merged states: weighed by nodes and batches; past the budget the oldest go, the newest always stays', () => {
  assert.equal(weightOf(task('a', 3)), 4)
  assert.equal(weightOf(task('a', 3, 10)), 14)
  const m = new MergedTasks(100)
  m.set('a', task('a', 29)) // 30
  m.set('b', task('b', 29)) // 60
  m.set('c', task('c', 9, 20)) // 90
  assert.deepEqual(m.size, { tasks: 3, weight: 90 })
  // Set again (a newer state): its weight replaced, it becomes the newest.
  m.set('a', task('a', 19)) // 90 - 30 + 20 = 80
  assert.deepEqual(m.size, { tasks: 3, weight: 80 })
  m.set('d', task('d', 39)) // 120: b (the oldest now) goes
  assert.equal(m.get('b'), undefined)
  assert.deepEqual(m.size, { tasks: 3, weight: 90 })
  assert.ok(m.get('a') !== undefined && m.get('c') !== undefined && m.get('d') !== undefined)
  // A task heavier than the budget alone: kept, every other goes.
  m.set('big', task('big', 500))
  assert.deepEqual(m.size, { tasks: 1, weight: 501 })
  assert.ok(m.get('big') !== undefined)
  m.delete('big')
  m.delete('missing')
  assert.deepEqual(m.size, { tasks: 0, weight: 0 })
})
