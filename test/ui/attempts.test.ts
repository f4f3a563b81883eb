/**
 * The node panel's attempts: every attempt, newest first, with the workers that ran it — from its
 * artifacts, and for the current attempt its lease holder (the new-user audit saw an empty worker
 * column for an attempt that failed before writing anything, while the panel named its holder).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { toTaskView } from '../../src/coordinator/view.ts'
import type { RoleHandler } from 'flowkit'
import { HANDED_BACK_HOLDER } from '../../src/ports/store.ts'
import { attemptsOf, withClaimHolders } from '../../src/ui/attempts.ts'
import { makeNodeState, makeTaskDoc } from '../helpers/fixtures.ts'
import { startRuntime } from '../helpers/runtime.ts'

test('an attempt that wrote nothing names its lease holder; earlier attempts keep the workers of their artifacts', () => {
  const node = makeNodeState('extract', 'extractor', { status: 'failed', attempt_epoch: 2, lease: { worker_id: 'w-2' }, last_error: { reason_code: 'type_error', error: 'boom', attempt_epoch: 2, permanent: true, at_ms: 1 } as never })
  const view = toTaskView(makeTaskDoc({ nodes: { extract: node, transform: makeNodeState('transform', 'processor') } }))
  const n = view.nodes.find((x) => x.node_id === 'extract')!
  const artifacts = [{ task_id: view.id, node_id: 'extract', batch_uid: 'b0', status: 'partial', meta: {}, attempt_epoch: 1, worker_id: 'w-1', created_at: 1, updated_at: 2 }] as never
  const rows = attemptsOf(n, artifacts, [])
  assert.deepEqual(rows.map((r) => [r.attempt_epoch, r.workers, r.error?.reason_code ?? null]), [[2, ['w-2'], 'type_error'], [1, ['w-1'], null]])
})

test('an earlier attempt that wrote nothing names the worker that claimed it (its id without the process instance)', async () => {
  const node = makeNodeState('extract', 'extractor', { status: 'running', attempt_epoch: 3, lease: { worker_id: 'w-3' } })
  const n = toTaskView(makeTaskDoc({ nodes: { extract: node } })).nodes.find((x) => x.node_id === 'extract')!
  const artifacts = [{ task_id: 't', node_id: 'extract', batch_uid: 'b0', status: 'partial', meta: {}, attempt_epoch: 1, worker_id: 'w-1', created_at: 1, updated_at: 2 }] as never
  const asked: number[] = []
  const holders: Record<number, string> = { 2: 'w-2#0lx1a2b3c-9f0e', 4: 'x' }
  const rows = await withClaimHolders(attemptsOf(n, artifacts, []), async (epoch) => {
    asked.push(epoch)
    return holders[epoch] ?? null
  })
  assert.deepEqual(rows.map((r) => [r.attempt_epoch, r.workers]), [[3, ['w-3']], [2, ['w-2']], [1, ['w-1']]])
  assert.deepEqual(asked, [2], 'only the attempts nothing else names')
  const handedBack = await withClaimHolders(attemptsOf(n, [], []), async () => HANDED_BACK_HOLDER)
  assert.deepEqual(handedBack.map((r) => r.workers), [['w-3'], [], []], 'an attempt handed back names no worker')
})

test('on a real run: the attempt that failed before writing anything names its worker', async () => {
  let calls = 0
  const flaky: RoleHandler = {
    async processBatch() {
      if (++calls === 1) throw new Error('transient hiccup')
      return { metrics: { rows: 1 } }
    },
  }
  const rt = await startRuntime({ handlers: { flaky } })
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'flaky', retry_policy: { max: 2, backoff_sec: 0 } }] } })
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })
    assert.equal(t.status, 'finished')
    const n = t.nodes[0]!
    assert.equal(n.attempt_epoch, 2)
    const artifacts = await rt.store.listArtifacts(id, { nodeId: 'n' })
    const rows = await withClaimHolders(attemptsOf(n, artifacts, await rt.store.listBatchMetrics(id, 'n')), (epoch) => rt.store.attemptHolder(id, 'n', epoch))
    const worker = rt.workers[0]!.workerId
    assert.deepEqual(rows.map((r) => [r.attempt_epoch, r.workers]), [[2, [worker]], [1, [worker]]])
  } finally {
    await rt.stop()
  }
})
