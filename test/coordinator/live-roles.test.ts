/**
 * The coordinator's table of live workers (src/coordinator/roles.ts) stays bounded under a flood
 * of announces with made-up worker ids, and keeps the workers that matter: those heard recently.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { LiveRoles, MAX_KNOWN_WORKERS } from '../../src/coordinator/roles.ts'

test('a flood of announces with new worker ids keeps the table bounded; live workers heard recently stay known', () => {
  const roles = new LiveRoles(30_000)
  let now = 1_000_000
  roles.seen({ worker_id: 'real', roles: ['etl'], status: 'online', last_seen_ms: now })
  for (let i = 0; i < 20_000; i++) {
    now += 1
    roles.seen({ worker_id: `forged-${i}`, roles: [`r${i % 7}`], status: 'online', last_seen_ms: now })
    // The real worker keeps announcing (every 2,000 forged ones here).
    if (i % 2_000 === 0) roles.seen({ worker_id: 'real', roles: ['etl'], status: 'online', last_seen_ms: now })
  }
  assert.ok(roles.size <= MAX_KNOWN_WORKERS, `${roles.size} workers kept`)
  assert.ok(roles.knows('etl', now), 'the real worker, heard recently, is still known')
  // Offline and silent workers go first.
  const quiet = new LiveRoles(1_000)
  quiet.seen({ worker_id: 'gone', roles: ['old'], status: 'offline', last_seen_ms: 0 })
  for (let i = 0; i <= MAX_KNOWN_WORKERS; i++) quiet.seen({ worker_id: `w${i}`, roles: ['x'], status: 'online', last_seen_ms: 10_000 + i })
  assert.ok(quiet.size <= MAX_KNOWN_WORKERS)
  assert.equal(quiet.knows('old', 10_000), false)
  assert.equal(quiet.knows('x', 10_000 + MAX_KNOWN_WORKERS), true)
})

test('a type is full when every live worker serving it holds as many runs (of any of its types) as it announced; not when one announced none', () => {
  const roles = new LiveRoles(30_000)
  const now = 1_000_000
  roles.seen({ worker_id: 'a', roles: ['etl', 'load'], status: 'online', last_seen_ms: now, capacity: 8 })
  roles.seen({ worker_id: 'b', roles: ['etl'], status: 'online', last_seen_ms: now, capacity: 4 })
  roles.seen({ worker_id: 'gone', roles: ['etl'], status: 'offline', last_seen_ms: now, capacity: 100 })
  roles.seen({ worker_id: 'silent', roles: ['etl'], status: 'online', last_seen_ms: now - 60_000, capacity: 100 })
  const held = new Map<string, number>()
  const isFull = (w: string, capacity: number): boolean => (held.get(w) ?? 0) >= capacity
  assert.equal(roles.full('etl', now, isFull), false, 'idle workers')
  held.set('a', 8)
  assert.equal(roles.full('load', now, isFull), true, "a's eight slots are taken (whatever their types): load waits")
  assert.equal(roles.full('etl', now, isFull), false, 'b has room for etl')
  held.set('b', 4)
  assert.equal(roles.full('etl', now, isFull), true, 'online workers heard within the liveness window only')
  assert.equal(roles.full('nobody', now, isFull), false, 'no live worker: not full (unknown)')
  // A peer that does not announce its capacity (e.g. another implementation): unknown, never full.
  roles.seen({ worker_id: 'py', roles: ['etl'], status: 'online', last_seen_ms: now })
  assert.equal(roles.full('etl', now, isFull), false)
})
