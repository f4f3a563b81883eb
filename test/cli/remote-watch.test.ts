/**
 * `flowkit ui` follows a task from the store (src/cli/remote.ts): the first snapshot of a task
 * page says which nodes wait for a worker, as getTask (each progress event after it) does —
 * it did not, and the page flipped hundreds of nodes a second after it opened.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryBus, MemoryStore, createLogger } from 'flowkit'
import { pollTask } from '../../src/cli/follow.ts'
import { RemoteCoordinator } from '../../src/cli/remote.ts'
import { makeTaskDoc } from '../helpers/fixtures.ts'
import { overrideStore } from '../helpers/store-proxy.ts'

test("flowkit ui: a task's first snapshot marks waiting_for_worker as getTask does", async () => {
  const store = new MemoryStore()
  const remote = new RemoteCoordinator({ store, bus: new MemoryBus(), controlTopic: 'ctl', logger: createLogger({ level: 'silent' }), pollMs: 20 })
  const t = makeTaskDoc({ status: 'running' })
  // Dispatched, never accepted, and no worker of its type is known.
  t.nodes['extract'] = { ...t.nodes['extract']!, status: 'running', attempt_epoch: 1, dispatched_at_ms: t.created_at_ms, accepted_at_ms: null }
  await store.createTask(t)
  const viaGet = await remote.getTask(t.id)
  assert.equal(viaGet?.nodes.find((n) => n.node_id === 'extract')?.waiting_for_worker, true)
  const ac = new AbortController()
  for await (const e of remote.watch(t.id, { signal: ac.signal })) {
    assert.equal(e.type, 'snapshot')
    if (e.type !== 'snapshot') break
    assert.equal(e.task.nodes.find((n) => n.node_id === 'extract')?.waiting_for_worker, true)
    assert.equal(e.task.nodes.find((n) => n.node_id === 'transform')?.waiting_for_worker, undefined)
    ac.abort()
    break
  }
})

test('following a task from the store: after a read that took d, the next comes 3 d later at the earliest (the period when reads are quick)', async () => {
  const store = new MemoryStore()
  const t = makeTaskDoc({ status: 'running' })
  await store.createTask(t)
  let now = 1_000_000
  let readMs = 1_000 // a big task on a slow server
  const waits: number[] = []
  const slow = overrideStore(store, {
    getTask: (original) => async (...args: unknown[]) => {
      now += readMs
      return original(...args)
    },
  })
  const clock = {
    now: () => now,
    sleep: async (ms: number) => {
      waits.push(ms)
      now += ms
      readMs = 10 // quick from now on
    },
  }
  let polls = 0
  for await (const _ of pollTask(slow, t.id, { intervalMs: 500, clock, notFound: (id) => new Error(`no ${id}`) })) {
    if (++polls === 3) break
  }
  assert.deepEqual(waits, [3_000, 500])
})
