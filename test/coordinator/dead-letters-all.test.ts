/**
 * Retrying every dead letter at once (`requeueDeadLetters`, behind `flowkit dlq retry --all`):
 * the rows go back to pending, oldest first and at most `limit`, except the TASK_STARTs whose
 * attempts ended, which stay dead letters with why; a task is read once for all its rows.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryStore } from 'flowkit'
import { requeueDeadLetters } from '../../src/coordinator/dead-letters.ts'
import { makeEnvelope } from '../../src/protocol/messages.ts'
import { makeNodeState, makeTaskDoc } from '../helpers/fixtures.ts'
import { overrideMethods } from '../helpers/store-proxy.ts'

const start = (taskId: string, nodeId: string, epoch: number): string =>
  JSON.stringify(makeEnvelope({ msg_type: 'cmd', role: 'coordinator', task_id: taskId, node_id: nodeId, step_type: 'extractor', attempt_epoch: epoch, dedup_id: `start-${taskId}-${nodeId}-${epoch}`, ts_ms: 1, payload: { cmd: 'TASK_START' } }))

test('retry all: every dead letter goes back to pending but the STARTs of attempts that ended; each task read once; oldest first, at most limit requeued', async () => {
  const inner = new MemoryStore()
  await inner.init()
  let reads = 0
  const store = overrideMethods(inner, {
    getTask: (f) => async (...a: unknown[]) => {
      reads++
      return f(...a)
    },
  })
  const live = makeTaskDoc({ status: 'running', nodes: { extract: makeNodeState('extract', 'extractor', { status: 'running', attempt_epoch: 2 }), transform: makeNodeState('transform', 'processor', { status: 'running', attempt_epoch: 1 }) } })
  const ended = makeTaskDoc({ status: 'failed' })
  await inner.createTasks([live, ended])
  const parked = { attempts: 5, error: 'broker down' }
  let at = 1_000
  const rows: [string, string][] = [
    ['live-start', start(live.id, 'extract', 2)],
    ['old-epoch', start(live.id, 'transform', 0)],
    ['live-start-2', start(live.id, 'transform', 1)],
    ['ended-task', start(ended.id, 'extract', 1)],
    ['gone-task', start('no-such-task', 'extract', 1)],
    ['cancel', '{"msg_type":"cmd","payload":{"cmd":"TASK_CANCEL"}}'],
    ['not-json', 'not json at all'],
  ]
  const ids = new Map<string, string>()
  for (const [name, value] of rows) {
    await inner.outboxEnqueue({ topic: 'cmd.extractor.v1', key: name, value, dedup_id: name }, at++, parked)
    ids.set((await inner.outboxList({ status: 'failed' })).find((r) => r.key === name)?.id as string, name)
  }
  const firstTwo = await requeueDeadLetters(store, 5_000, 2)
  assert.deepEqual(firstTwo.requeued.map((id) => ids.get(id)), ['live-start', 'live-start-2'], 'two requeued, the oldest first')
  assert.deepEqual(firstTwo.stale.map((s) => ids.get(s.id)), ['old-epoch'], 'the stale one met on the way')
  const rest = await requeueDeadLetters(store, 5_000)
  assert.deepEqual(rest.requeued.map((id) => ids.get(id)), ['cancel', 'not-json'])
  assert.deepEqual(
    rest.stale.map((s) => [ids.get(s.id), s.reason]),
    [
      ['old-epoch', 'it starts attempt 0 of node transform, which is now running at attempt 1'],
      ['ended-task', `its task ${ended.id} has ended (failed)`],
      ['gone-task', 'its task no-such-task is not in the store'],
    ],
  )
  assert.equal(reads, 1 + 3, 'one read per task and call (the live task in the first; it, the ended and the missing one in the second)')
  const pending = (await inner.outboxList({ status: 'pending' })).map((r) => ids.get(r.id))
  assert.deepEqual(pending.sort(), ['cancel', 'live-start', 'live-start-2', 'not-json'])
  assert.deepEqual((await inner.outboxList({ status: 'failed' })).map((r) => ids.get(r.id)), ['old-epoch', 'ended-task', 'gone-task'], 'the stale ones stay dead letters')
  assert.deepEqual(await requeueDeadLetters(store, 6_000), { requeued: [], stale: rest.stale }, 'run again: nothing more to requeue')
})

test('retry all with a limit gets past stale dead letters at the head (the limit counts rows requeued, not rows looked at)', async () => {
  const store = new MemoryStore()
  await store.init()
  const live = makeTaskDoc({ status: 'running', nodes: { extract: makeNodeState('extract', 'extractor', { status: 'running', attempt_epoch: 1 }), transform: makeNodeState('transform', 'processor') } })
  const ended = makeTaskDoc({ status: 'failed' })
  await store.createTasks([live, ended])
  const parked = { attempts: 5, error: 'broker down' }
  for (let i = 0; i < 3; i++) await store.outboxEnqueue({ topic: 'cmd.extractor.v1', key: `stale-${i}`, value: start(ended.id, 'extract', 1), dedup_id: `stale-${i}` }, 1_000 + i, parked)
  await store.outboxEnqueue({ topic: 'cmd.extractor.v1', key: 'live', value: start(live.id, 'extract', 1), dedup_id: 'live' }, 2_000, parked)
  const r = await requeueDeadLetters(store, 5_000, 2)
  assert.equal(r.requeued.length, 1, 'the live dead letter behind three stale ones')
  assert.equal(r.stale.length, 3)
})
