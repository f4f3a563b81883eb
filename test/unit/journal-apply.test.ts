/**
 * applyJournal (model/journal.ts): the state a reader or a recovering coordinator gets from a
 * snapshot and the journal entries after it. The snapshot it is given stays as it was.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { type JournalEntry, type VersionedTask, applyJournal } from '../../src/model/journal.ts'
import { makeNodeState, makeTaskDoc } from '../helpers/fixtures.ts'

const T0 = 1_700_000_000_000

function entry(taskId: string, seq: number, overrides: Partial<JournalEntry> = {}): JournalEntry {
  return { task_id: taskId, seq, at_ms: T0 + seq, writer: 'c1', events: [], nodes: [], ...overrides }
}

test('applyJournal: batches of many entries add up per node; entries in any order, those the snapshot covers skipped; the snapshot is left unchanged', () => {
  const task = makeTaskDoc({ status: 'running' })
  task.nodes['a'] = makeNodeState('a', 'step', { status: 'running' })
  task.nodes['b'] = makeNodeState('b', 'step', { status: 'running' })
  const snap: VersionedTask = { ...task, v: 2, batches: { a: { s0: [1, { count: 1 }] } } }
  const before = structuredClone(snap)
  const entries = [
    entry(task.id, 5, { batches: [['a', 's3', 1, { count: 3 }]], nodes: [makeNodeState('a', 'step', { status: 'finished' })], task: { status: 'finished' } }),
    entry(task.id, 3, { batches: [['a', 's1', 1, { count: 1 }], ['b', 't1', 2, { count: 7 }], ['a', 's2', 1, { count: 2 }]] }),
    entry(task.id, 2, { batches: [['a', 'covered', 1, { count: 99 }]] }),
    entry(task.id, 4, { batches: [['b', 't2', 2, { count: 8 }]] }),
  ]
  const out = applyJournal(snap, entries)
  assert.equal(out.v, 5)
  assert.equal(out.status, 'finished')
  assert.equal(out.nodes['a']?.status, 'finished')
  assert.deepEqual(out.batches, {
    a: { s0: [1, { count: 1 }], s1: [1, { count: 1 }], s2: [1, { count: 2 }], s3: [1, { count: 3 }] },
    b: { t1: [2, { count: 7 }], t2: [2, { count: 8 }] },
  })
  assert.deepEqual(snap, before)
  // Applied again to the result: nothing new.
  assert.deepEqual(applyJournal(out, entries), out)
})
