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
