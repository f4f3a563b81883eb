/**
 * Choosing where to steer an unaccepted START (coordinator/steer.ts): the live worker of its type
 * with the most free slots — its announced capacity less the accepted runs it holds and the STARTs
 * steered to it not yet accepted — among the workers that said they take a steered START; and the
 * copy it sends (the signals topic, the worker by name, the START's own dedup id and attempt).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Limits } from '../../src/coordinator/limits.ts'
import { LiveRoles } from '../../src/coordinator/roles.ts'
import { TaskRuntime } from '../../src/coordinator/runtime.ts'
import { Steering } from '../../src/coordinator/steer.ts'
import { coordinatorConfig } from '../../src/coordinator/wiring.ts'
import { startCommand } from '../../src/coordinator/commands.ts'
import { makeNodeSpec, makeNodeState, makeTaskDoc } from '../helpers/fixtures.ts'

/** Steering past its warm-up (the coordinator has listened to announces for long enough). */
function listeningSteering(...[config, ...rest]: ConstructorParameters<typeof Steering>): Steering {
  const s = new Steering({ ...config, steerWarmupSec: 0 }, ...rest)
  s.listening(0)
  return s
}

test('the target: most free slots among the live workers that take a steered start; steered and unaccepted starts hold a slot until accepted or expired', () => {
  const now = 1_000_000
  const config = coordinatorConfig({ acceptTimeoutSec: 30 })
  const roles = new LiveRoles(60_000)
  const seen = (id: string, capacity: number, steerable: boolean, at = now): void => {
    roles.seen({ worker_id: id, roles: ['step'], status: 'online', last_seen_ms: at, capacity }, steerable)
  }
  seen('big', 3, true)
  seen('small', 2, true)
  roles.seen({ worker_id: 'python', roles: ['other'], status: 'online', last_seen_ms: now, capacity: 50 }, false) // no start_signal: never chosen
  seen('silent', 50, true, now - 120_000) // not heard within the liveness window
  const limits = new Limits(0, {})
  const ids = ['n0', 'n1', 'n2']
  const doc = makeTaskDoc({
    status: 'running',
    graph: { schema_version: '1.0', nodes: ids.map((id) => makeNodeSpec(id, 'step')), edges: [], edges_ex: [] },
    nodes: Object.fromEntries(ids.map((id) => [id, makeNodeState(id, 'step', { status: 'running', attempt_epoch: 2, dispatched_at_ms: now - 10_000 })])),
  })
  const rt = new TaskRuntime(doc, 1)
  const steering = listeningSteering(config, roles, limits, new Map([[rt.id, rt]]))
  assert.equal(steering.target('step', now), 'big', '3 free against 2')
  assert.equal(steering.target('other', now), null, 'only a worker that does not take steered starts serves it')
  assert.equal(steering.target('nobody', now), null, 'nobody serves it')
  limits.accepting(null, 'big')
  limits.accepting(null, 'big')
  assert.equal(steering.target('step', now), 'small', 'big holds two accepted runs: 1 free against 2')

  const cmd = steering.steer(rt, 0, 'small', now)
  assert.ok(cmd !== null)
  const start = startCommand(config, rt, 0, 2, 0, now)
  assert.equal(cmd.topic, config.topicSignals)
  assert.equal(cmd.key, 'small')
  assert.equal(cmd.kind, 'STEER', 'not a START: an undeliverable copy does not fail the attempt')
  const env = cmd.decoded as { target_worker_id: string; dedup_id: string; attempt_epoch: number; payload: { cmd: string } }
  assert.equal(env.target_worker_id, 'small')
  assert.equal(env.payload.cmd, 'TASK_START')
  assert.equal(env.attempt_epoch, 2)
  assert.equal(env.dedup_id, (start.decoded as { dedup_id: string }).dedup_id, 'the START itself, one logical message')
  assert.notEqual(cmd.dedup_id, start.dedup_id, 'its own outbox row')

  // small: 2 − 1 steered; big: 3 − 2 accepted. A tie goes to the first heard.
  assert.equal(steering.target('step', now), 'big')
  steering.steer(rt, 1, 'big', now)
  assert.equal(steering.target('step', now), 'small')
  steering.steer(rt, 2, 'small', now)
  assert.equal(steering.target('step', now), null, 'every slot taken or promised')
  // n0 accepted (by whoever): its promise goes; n1 handed back: its promise goes too.
  rt.setNode(0, { ...rt.node(0), accepted_at_ms: now })
  assert.equal(steering.target('step', now), 'small')
  rt.setNode(1, { ...rt.node(1), status: 'queued' })
  assert.equal(steering.target('step', now), 'big', '1 free each: the first heard')
  limits.accepting(null, 'small')
  assert.equal(steering.target('step', now), 'big')
  // Promises not kept within the accept timeout are forgotten.
  limits.accepting(null, 'big')
  assert.equal(steering.target('step', now), null)
  assert.equal(steering.target('step', now + 30_000), 'small', "n2's promise to small expired")
})

test('no copy for a START whose variables are too large to inline before the task document holds them', () => {
  const config = coordinatorConfig({})
  const roles = new LiveRoles(60_000)
  roles.seen({ worker_id: 'w', roles: ['step'], status: 'online', last_seen_ms: 1, capacity: 1 }, true)
  const doc = makeTaskDoc({
    status: 'running',
    graph: { schema_version: '1.0', nodes: [makeNodeSpec('n', 'step')], edges: [], edges_ex: [] },
    nodes: { n: makeNodeState('n', 'step', { status: 'running', attempt_epoch: 1 }) },
  })
  const rt = new TaskRuntime(doc, 1)
  rt.change({ vars: { big: 'x'.repeat(300 * 1024) } })
  const steering = listeningSteering(config, roles, new Limits(0, {}), new Map([[rt.id, rt]]))
  assert.equal(rt.varsStored(), false)
  assert.equal(steering.steer(rt, 0, 'w', 1), null)
})

test('a worker is steered to only once it has had a free slot for a while (2 s, or steerAfterSec if shorter): not in the moment between two runs of a backlog', () => {
  const now = 1_000_000
  const roles = new LiveRoles(60_000)
  roles.seen({ worker_id: 'w', roles: ['step'], status: 'online', last_seen_ms: now, capacity: 1 }, true)
  const limits = new Limits(0, {})
  limits.capacityOf = (id) => roles.capacityOf(id)
  const steering = listeningSteering(coordinatorConfig({ steerAfterSec: 5 }), roles, limits, new Map())
  assert.equal(steering.target('step', now), 'w', 'never full: idle')
  limits.accepting(null, 'w', now)
  assert.equal(steering.target('step', now), null, 'full')
  limits.accepting('w', null, now + 100) // its run ended; its next START is on its way
  assert.equal(steering.target('step', now + 200), null, 'free for 100 ms only')
  assert.equal(steering.target('step', now + 2_101), 'w', 'free for 2 s')
  const quick = listeningSteering(coordinatorConfig({ steerAfterSec: 0.5 }), roles, limits, new Map())
  assert.equal(quick.target('step', now + 601), 'w', 'free for steerAfterSec')
})

test('a type one of whose live workers does not take steered starts (a Python worker: no attempt claims) is not steered at all', () => {
  const now = 1_000_000
  const roles = new LiveRoles(60_000)
  roles.seen({ worker_id: 'fk', roles: ['step'], status: 'online', last_seen_ms: now, capacity: 4 }, true)
  const steering = listeningSteering(coordinatorConfig({}), roles, new Limits(0, {}), new Map())
  assert.equal(steering.target('step', now), 'fk')
  roles.seen({ worker_id: 'py', roles: ['step'], status: 'online', last_seen_ms: now, capacity: 4 }, false)
  assert.equal(steering.target('step', now), null, 'the copy left in its partition would run there again')
  roles.seen({ worker_id: 'py', roles: ['step'], status: 'offline', last_seen_ms: now + 1 })
  assert.equal(steering.target('step', now + 1), 'fk', 'once it is gone')
})
