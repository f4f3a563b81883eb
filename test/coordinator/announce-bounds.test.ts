/**
 * Worker announces are input from the bus: a made-up worker id of 800,000 characters was stored
 * in the registry as it came, and every WORKER_OFFLINE read the whole registry to find the
 * worker's roles (200 of them took 4.1 s with 10,000 registered ids).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryLogger, MemoryStore, SystemClock, type BusMessage } from 'flowkit'
import { onAnnounce } from '../../src/coordinator/discovery.ts'
import { LiveRoles } from '../../src/coordinator/roles.ts'
import { makeEnvelope } from '../../src/protocol/messages.ts'
import { overrideStore } from '../helpers/store-proxy.ts'

let offset = 0
function announce(payload: Record<string, unknown>): BusMessage {
  const env = makeEnvelope({ msg_type: 'event', role: 'worker', dedup_id: `d${offset}`, task_id: '*', node_id: '*', step_type: '*', attempt_epoch: 0, ts_ms: Date.now(), payload })
  return { topic: 'workers.announce.v1', key: null, value: JSON.stringify(env), partition: 0, offset: offset++, timestamp: Date.now() }
}

test('an announce with an oversized worker id is refused (logged, not stored); roles and version are bounded', async () => {
  const store = new MemoryStore()
  const log = new MemoryLogger()
  const clock = new SystemClock()
  await onAnnounce(store, clock, log, announce({ kind: 'WORKER_ONLINE', worker_id: 'w'.repeat(800_000), capabilities: { roles: ['a'] } }))
  await onAnnounce(store, clock, log, announce({ kind: 'WORKER_ONLINE', worker_id: 'w\ud800', capabilities: { roles: ['a'] } }))
  assert.deepEqual(await store.listWorkers(), [])
  assert.equal(log.records.filter((r) => r.event === 'bus.message_malformed').length, 2)
  const roles = [...Array.from({ length: 1000 }, (_, i) => `r${i}`), 'x'.repeat(10_000)]
  await onAnnounce(store, clock, log, announce({ kind: 'WORKER_ONLINE', worker_id: 'w1', capabilities: { roles }, version: 'v'.repeat(100_000) }))
  const [w] = await store.listWorkers()
  assert.equal(w?.roles.length, 256)
  assert.equal(w?.version.length, 128)
})

test('a WORKER_OFFLINE of a worker this coordinator heard from keeps its roles and capacity without reading the registry', async () => {
  const inner = new MemoryStore()
  let listings = 0
  const store = overrideStore(inner, {
    listWorkers: (original) => async (...args: unknown[]) => {
      listings++
      return original(...args)
    },
  })
  const log = new MemoryLogger()
  const clock = new SystemClock()
  const live = new LiveRoles(60_000)
  const seen = (w: Parameters<LiveRoles['seen']>[0]) => live.seen(w)
  const known = (id: string) => live.get(id)
  await onAnnounce(store, clock, log, announce({ kind: 'WORKER_ONLINE', worker_id: 'w1', capabilities: { roles: ['a', 'b'] }, capacity: { tasks: 8 }, version: '1.2' }), seen, known)
  await onAnnounce(store, clock, log, announce({ kind: 'WORKER_OFFLINE', worker_id: 'w1' }), seen, known)
  assert.equal(listings, 0)
  const [w] = await inner.listWorkers()
  assert.deepEqual([w?.status, w?.roles, w?.capacity, w?.version], ['offline', ['a', 'b'], 8, '1.2'])
  // One it never heard from (it started after the worker's announce): looked up in the registry.
  await inner.upsertWorker({ worker_id: 'w2', roles: ['c'], capacity: 2, version: '', status: 'online', last_seen_ms: 1 })
  await onAnnounce(store, clock, log, announce({ kind: 'WORKER_OFFLINE', worker_id: 'w2' }), seen, known)
  assert.equal(listings, 1)
  assert.deepEqual((await inner.listWorkers()).find((x) => x.worker_id === 'w2')?.roles, ['c'])
})

test('a worker whose configured id coordinators would refuse does not start: a clear config error', async () => {
  const { MemoryBus, Worker } = await import('flowkit')
  const handlers = { a: { async processBatch() { return {} } } }
  assert.throws(() => new Worker({ bus: new MemoryBus(), store: new MemoryStore(), handlers, config: { workerId: 'w'.repeat(257) } }), /workerId must be 1 to 256 characters/)
  assert.throws(() => new Worker({ bus: new MemoryBus(), store: new MemoryStore(), handlers, config: { workerId: '' } }), /workerId must be 1 to 256 characters/)
})
