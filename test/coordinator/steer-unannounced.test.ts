/**
 * A worker that does not take steered STARTs (a Python worker) may be unknown to a coordinator:
 * it announces once a minute, and one that announced before the coordinator started is not in
 * its registry until the next announce. The interop check found a TS coordinator started after a
 * Python worker steering that worker's queued STARTs: 6 of 14 nodes ran twice at one epoch.
 * Now such a worker is known from its status events (LiveRoles.heard), and before the coordinator
 * has listened to announces for `steerWarmupSec` a START is steered only past a known full worker.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryLogger, TestClock, type Bus, type RoleHandler, type Store } from 'flowkit'
import { LiveRoles } from '../../src/coordinator/roles.ts'
import { Limits } from '../../src/coordinator/limits.ts'
import { Steering } from '../../src/coordinator/steer.ts'
import { coordinatorConfig } from '../../src/coordinator/wiring.ts'
import { gate } from '../helpers/gate.ts'
import { startRuntime } from '../helpers/runtime.ts'
import { aroundClaims, overrideMethods } from '../helpers/store-proxy.ts'
import { waitFor } from '../helpers/wait.ts'

test('a worker never heard announcing, seen only in its status events, keeps its type from being steered: nothing runs twice', async () => {
  const clock = new TestClock()
  const logger = new MemoryLogger()
  const release = gate()
  const runs = new Map<string, string[]>()
  const note = (task: string, who: string): void => void runs.set(task, [...(runs.get(task) ?? []), who])
  const py: RoleHandler = {
    async processBatch(_b, ctx) {
      note(ctx.taskId, 'py')
      await release.wait(ctx.signal)
      return { metrics: { count: 1 } }
    },
  }
  const fk: RoleHandler = {
    async processBatch(_b, ctx) {
      note(ctx.taskId, 'fk')
      return { metrics: { count: 1 } }
    },
  }
  let stores = 0
  let buses = 0
  const rt = await startRuntime({
    clock,
    logger,
    worker: { concurrency: 1, leaseTtlSec: 3600, hbIntervalSec: 600 },
    // No warm-up: what keeps the type from being steered is what the coordinator heard.
    coordinator: { steerAfterSec: 1, steerWarmupSec: 0, acceptTimeoutSec: 3600 },
    // The first worker stands for a Python one: its claims always succeed (it makes none) …
    workerStore: (s: Store) => (stores++ === 0 ? aroundClaims(s, async (cs) => cs.map(() => true)) : s),
    // … and the coordinator never hears it announce (it announced before the coordinator started).
    workerBus: (b: Bus) =>
      buses++ !== 0
        ? b
        : overrideMethods(b, {
            produce: (f) => async (...a: unknown[]) => f((a[0] as { topic: string }[]).filter((r) => !r.topic.includes('announce'))),
          }),
  })
  try {
    const pyWorker = await rt.addWorker({ x: py })
    await rt.addWorker({ x: fk })
    await waitFor(async () => (await rt.coordinator.listWorkers()).some((w) => w.status === 'online'), { message: 'the flowkit worker online' })
    assert.ok(!(await rt.coordinator.listWorkers()).some((w) => w.worker_id === pyWorker.workerId), 'the other worker is not known from an announce')
    const ids: string[] = []
    for (let i = 0; i < 12; i++) ids.push(await rt.coordinator.createTask({ id: `t-${i}`, graph: { nodes: [{ node_id: 'a', type: 'x' }] } }))
    await waitFor(() => [...runs.values()].some((r) => r.includes('py')), { message: 'the unannounced worker holds one' })
    for (let s = 0; s < 20; s++) await clock.advance(1_000)
    assert.equal(logger.records.filter((r) => r.event === 'node.steered').length, 0, 'nothing steered')
    release.open()
    for (const id of ids) assert.equal((await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })).status, 'finished')
    assert.deepEqual(ids.filter((id) => (runs.get(id)?.length ?? 0) !== 1), [], 'each ran once')
  } finally {
    release.open()
    await rt.stop()
  }
})

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
