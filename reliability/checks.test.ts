/**
 * The invariant checkers catch what they claim to (synthetic inputs, no services):
 *   node --conditions=flowkit-source --test reliability/checks.test.ts
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { JournalEntry, VersionedTask } from 'flowkit'
import { checkEffects } from './lib/check-effects.ts'
import { checkObserved } from './lib/check-observed.ts'
import { checkOwners } from './lib/check-owners.ts'
import { scanJournal } from './lib/check-store.ts'
import type { EffectLine } from './proc/handlers.ts'
import type { ObservedRecord } from './proc/observer.ts'

const fx = (epoch: number, batch: string, worker = 'w1', pid = 1, task = 't'): EffectLine => ({ task, node: 'src', epoch, batch, worker, pid, t: 0 })
const entry = (seq: number, events: string[], at_ms = seq, batches: JournalEntry['batches'] = []): JournalEntry => ({ task_id: 't', seq, at_ms, writer: 'c', events, nodes: [], batches })

test('effects: a retry at a new epoch is allowed; the same batch twice in one epoch, or two workers on one epoch, is not', () => {
  const ok = checkEffects([fx(1, 's0'), fx(1, 's1'), fx(2, 's0', 'w2', 2)], new Set(['t']))
  assert.deepEqual(ok.violations, [])
  assert.equal(ok.retried, 1)
  const twice = checkEffects([fx(1, 's0'), fx(1, 's0')], new Set(['t']))
  assert.equal(twice.violations.length, 1)
  const two = checkEffects([fx(1, 's0', 'w1', 1), fx(1, 's1', 'w1', 9)], new Set(['t']))
  assert.match(two.violations.join(), /run by 2 workers/, 'a restarted process (same worker id, new pid) is another worker')
  assert.equal(checkEffects([fx(1, 's0', 'w1', 1, 'flood-x')], new Set(['t'])).foreign.length, 1)
})

test('journal: an event of an older epoch applied after a newer dispatch is a stale change', () => {
  const clean = scanJournal([entry(1, ['dispatch src@1']), entry(2, ['TASK_ACCEPTED src@1', 'BATCH_OK src@1 s0'], 2, [['src', 's0', 1, {}]]), entry(3, ['dispatch src@2'])])
  assert.deepEqual(clean.stale, [])
  assert.equal(clean.understood, 4)
  const stale = scanJournal([entry(1, ['dispatch src@1']), entry(2, ['dispatch src@2']), entry(3, ['BATCH_OK src@1 s3'], 3, [['src', 's3', 1, {}]])])
  assert.equal(stale.stale.length, 2, 'the label and the counted batch')
  // A failure and a new dispatch in one flush, after the old epoch's batch: not stale.
  assert.deepEqual(scanJournal([entry(1, ['dispatch src@1']), entry(2, ['BATCH_OK src@1 s0', 'TASK_FAILED src@1', 'dispatch src@2'], 2, [['src', 's0', 1, {}]])]).stale, [])
})

test('observer: a stale event on the bus is counted, and a violation only when the journal shows it applied', () => {
  const doc = { id: 't', status: 'finished', nodes: {}, batches: {} } as unknown as VersionedTask
  const rec = (o: number, ts: number, kind: string, epoch: number, extra: Partial<ObservedRecord> = {}): ObservedRecord => ({ tp: 'x', p: 0, o, ts, at: ts, task: 't', node: 'src', epoch, kind, ...extra })
  const records = [rec(0, 10, 'TASK_START', 1), rec(1, 20, 'TASK_START', 2), rec(2, 30, 'BATCH_OK', 1, { batch: 's0', worker: 'w1' })]
  const docs = new Map([['t', doc]])
  const fenced = checkObserved(records, docs, new Map([['t', [entry(1, ['dispatch src@2'], 15)]]]), new Map())
  assert.equal(fenced.staleDelivered, 1)
  assert.deepEqual(fenced.staleApplied, [])
  const applied = checkObserved(records, docs, new Map([['t', [entry(1, ['dispatch src@2'], 15), entry(2, ['BATCH_OK src@1 s0'], 35)]]]), new Map())
  assert.equal(applied.staleApplied.length, 1)
  const dual = checkObserved([rec(0, 1, 'TASK_ACCEPTED', 1, { worker: 'a' }), rec(1, 2, 'TASK_ACCEPTED', 1, { worker: 'b' })], docs, new Map(), new Map())
  assert.equal(dual.dualAccepted.length, 1)
})

test('owners: after a claim entry by X, an entry by another writer before the next claim is a fenced write that landed', () => {
  const by = (seq: number, writer: string, events: string[] = [`BATCH_OK src@1 s${seq}`]): JournalEntry => ({ task_id: 't', seq, at_ms: seq, writer, events, nodes: [] })
  const claim = (seq: number, writer: string): JournalEntry => by(seq, writer, [`owner ${writer} generation ${seq}`])
  // Created by A (no claim), handed to B (claim), back to A after B was killed (claim): clean.
  const clean = checkOwners(new Map([['t', [by(1, 'A'), by(2, 'A'), claim(3, 'B'), by(4, 'B'), claim(5, 'A'), by(6, 'A')]]]))
  assert.deepEqual(clean.violations, [])
  assert.equal(clean.claims, 2)
  assert.equal(clean.handovers, 2)
  assert.equal(clean.movedTasks, 1)
  assert.equal(clean.writers, 2)
  // Before any claim, any writer may write (the creating coordinator, a zombie before the heir's claim).
  assert.deepEqual(checkOwners(new Map([['t', [by(1, 'A'), by(2, 'Z'), claim(3, 'B')]]])).violations, [])
  // The zombie A writes after B claimed (entries out of order in the input: sorted by seq).
  const fenced = checkOwners(new Map([['t', [by(5, 'A'), claim(3, 'B'), by(1, 'A'), by(4, 'B')]]]))
  assert.equal(fenced.violations.length, 1)
  assert.match(fenced.violations[0] as string, /seq 5 written by A after B claimed the task at seq 3/)
})
