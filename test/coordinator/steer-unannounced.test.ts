/**
 * A worker that does not take steered STARTs (a Python worker) may be unknown to a coordinator:
 * it announces once a minute, and one that announced before the coordinator started is not in
 * its registry until the next announce (the interop check: 6 of 14 nodes ran twice at one epoch).
 * It is known from its status events (LiveRoles.heard; end to end in steer-mixed.test.ts), and
 * before the coordinator has listened to announces for `steerWarmupSec` a START is steered only
 * past a known full worker.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { LiveRoles } from '../../src/coordinator/roles.ts'
import { Limits } from '../../src/coordinator/limits.ts'
import { Steering } from '../../src/coordinator/steer.ts'
import { coordinatorConfig } from '../../src/coordinator/wiring.ts'

test('before the coordinator has listened to announces for steerWarmupSec, a start is steered only while a known worker that takes them is full (an unknown one may not)', () => {
  const now = 1_000_000
  const roles = new LiveRoles(180_000)
  roles.seen({ worker_id: 'w', roles: ['step'], status: 'online', last_seen_ms: now, capacity: 4 }, true)
  const limits = new Limits(0, {})
  limits.capacityOf = (id) => roles.capacityOf(id)
  const steering = new Steering(coordinatorConfig({ steerAfterSec: 5 }), roles, limits, new Map())
  const idle = now + 10_000
  assert.equal(steering.target('step', idle), null, 'not listening yet')
  steering.listening(now)
  assert.equal(steering.target('step', idle), null, '10 s after the start, nobody known busy: the start may wait behind a worker not known yet')
  assert.equal(steering.target('step', now + 75_000), 'w', 'after the warm-up')
  roles.seen({ worker_id: 'busy', roles: ['step'], status: 'online', last_seen_ms: now, capacity: 1 }, true)
  limits.accepting(null, 'busy', now)
  assert.equal(steering.target('step', idle), 'w', 'within the warm-up, past a known worker that is full')
  const quick = new Steering(coordinatorConfig({ steerAfterSec: 5, steerWarmupSec: 0 }), roles, new Limits(0, {}), new Map())
  quick.listening(now)
  assert.equal(quick.target('step', idle), 'w', 'steerWarmupSec 0: at once')
})

test('heard: a worker reporting on a type is a live worker of it that takes no steered start until it announces that it does, and for the liveness window only', () => {
  const now = 1_000_000
  const roles = new LiveRoles(180_000)
  roles.seen({ worker_id: 'fk', roles: ['step'], status: 'online', last_seen_ms: now, capacity: 4 }, true)
  assert.equal(roles.allSteerable('step', now), true)
  roles.heard('fk', 'step', now) // announced as taking them: nothing changes
  assert.equal(roles.allSteerable('step', now), true)
  roles.heard('py', 'step', now)
  assert.equal(roles.allSteerable('step', now), false, 'heard, never announced')
  assert.equal(roles.allSteerable('other', now), true, 'only for the type it reported on')
  assert.equal(roles.allSteerable('step', now + 180_001), true, 'not heard within the liveness window')
  roles.heard('py', 'step', now + 1000)
  roles.seen({ worker_id: 'py', roles: ['step'], status: 'online', last_seen_ms: now + 2000, capacity: 1 })
  assert.equal(roles.allSteerable('step', now + 2000), false, 'the registry read at start says nothing of steered starts')
  roles.seen({ worker_id: 'py', roles: ['step'], status: 'online', last_seen_ms: now + 3000, capacity: 1 }, false)
  assert.equal(roles.allSteerable('step', now + 3000), false, 'announced without start_signal')
  roles.seen({ worker_id: 'py', roles: ['step'], status: 'online', last_seen_ms: now + 4000, capacity: 1 }, true)
  assert.equal(roles.allSteerable('step', now + 4000), true, 'announced as taking them after all')
})
