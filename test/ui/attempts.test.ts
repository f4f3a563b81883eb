/**
 * The node panel's attempts: every attempt, newest first, with the workers that ran it — from its
 * artifacts, and for the current attempt its lease holder (the new-user audit saw an empty worker
 * column for an attempt that failed before writing anything, while the panel named its holder).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { toTaskView } from '../../src/coordinator/view.ts'
import { attemptsOf } from '../../src/ui/attempts.ts'
import { makeNodeState, makeTaskDoc } from '../helpers/fixtures.ts'

test('an attempt that wrote nothing names its lease holder; earlier attempts keep the workers of their artifacts', () => {
  const node = makeNodeState('extract', 'extractor', { status: 'failed', attempt_epoch: 2, lease: { worker_id: 'w-2' }, last_error: { reason_code: 'type_error', error: 'boom', attempt_epoch: 2, permanent: true, at_ms: 1 } as never })
  const view = toTaskView(makeTaskDoc({ nodes: { extract: node, transform: makeNodeState('transform', 'processor') } }))
  const n = view.nodes.find((x) => x.node_id === 'extract')!
  const artifacts = [{ task_id: view.id, node_id: 'extract', batch_uid: 'b0', status: 'partial', meta: {}, attempt_epoch: 1, worker_id: 'w-1', created_at: 1, updated_at: 2 }] as never
  const rows = attemptsOf(n, artifacts, [])
  assert.deepEqual(rows.map((r) => [r.attempt_epoch, r.workers, r.error?.reason_code ?? null]), [[2, ['w-2'], 'type_error'], [1, ['w-1'], null]])
})
