/**
 * The accept timeout's refinements must not strand a node (a review of the change found each):
 * a type is "busy" only when accepted runs hold every announced slot (STARTs lost, or claimed by
 * a worker that died, kept it busy for ever when dispatched nodes were counted); a node handed
 * back and dispatched again while its claim check was pending gets a timer; after a busy spell
 * the resends keep their spacing instead of all falling due at once.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryLogger, MemoryStore, TestClock, type RoleHandler } from 'flowkit'
import { envelopeOf, withBusFaults } from '../helpers/bus-faults.ts'
import { gate } from '../helpers/gate.ts'
import { startRuntime } from '../helpers/runtime.ts'
import { type Method, overrideStore } from '../helpers/store-proxy.ts'
import { waitFor } from '../helpers/wait.ts'

const GRAPH = { nodes: [{ node_id: 'a', type: 'job' }] }
const counting = (runs: { n: number }): RoleHandler => ({
  async processBatch() {
    runs.n++
    return { metrics: { n: 1 } }
  },
})

async function advance(clock: TestClock, ms: number, step = 10_000): Promise<void> {
  for (let t = 0; t < ms; t += step) await clock.advance(step)
}

test('STARTs claimed by a dead worker, more than the live capacity: handed back and run by the idle worker', async () => {
  const clock = new TestClock()
  const log = new MemoryLogger()
  const runs = { n: 0 }
  const rt = await startRuntime({ clock, logger: log, handlers: { job: counting(runs) }, worker: { concurrency: 1, leaseTtlSec: 3600, hbIntervalSec: 600 }, coordinator: { acceptTimeoutSec: 30 } })
  try {
    for (const id of ['t1', 't2']) await rt.store.claimAttempt({ task_id: id, node_id: 'a', attempt_epoch: 1, worker_id: 'w-dead#i' }, clock.now())
    await rt.coordinator.createTask({ id: 't1', graph: GRAPH })
    await rt.coordinator.createTask({ id: 't2', graph: GRAPH })
    await waitFor(() => log.records.filter((r) => r.event === 'worker.attempt_held_elsewhere').length === 2)
    await advance(clock, 200_000)
    for (const id of ['t1', 't2']) {
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10_000 })
      assert.equal(t.status, 'finished')
      assert.equal(t.nodes[0]?.attempt_epoch, 2)
    }
    assert.equal(runs.n, 2)
  } finally {
    await rt.stop()
  }
})

test('lost STARTs (first sends only), one idle worker of concurrency 1: resent and run', async () => {
  const clock = new TestClock()
  const seen = new Set<string>()
  const runs = { n: 0 }
  const rt = await startRuntime({
    clock,
    handlers: { job: counting(runs) },
    worker: { concurrency: 1 },
    coordinator: { acceptTimeoutSec: 30 },
    coordinatorBus: (b) =>
      withBusFaults(b, {
        produce: (rs) =>
          rs.filter((r) => {
            const e = envelopeOf(r.value)
            if (e?.['msg_type'] !== 'cmd') return true
            const k = String(e['task_id'])
            if (seen.has(k)) return true
            seen.add(k)
            return false
          }),
      }),
  })
  try {
    await rt.coordinator.createTask({ id: 't1', graph: GRAPH })
    await rt.coordinator.createTask({ id: 't2', graph: GRAPH })
    await advance(clock, 100_000)
    for (const id of ['t1', 't2']) assert.equal((await rt.coordinator.waitForTask(id, { timeoutMs: 10_000 })).status, 'finished')
    assert.equal(runs.n, 2)
  } finally {
    await rt.stop()
  }
})

test('a node handed back and dispatched again while its claim check is pending gets a timer (a lost START of the new attempt is resent)', async () => {
  const clock = new TestClock()
  const log = new MemoryLogger()
  const held = gate()
  const asked = gate()
  let calls = 0
  const store = overrideStore(new MemoryStore(), {
    attemptHolder: (orig: Method) => async (...a: unknown[]) => {
      if (++calls === 1) {
        asked.open()
        await held.wait()
      }
      return orig(...a)
    },
  })
  const runs = { n: 0 }
  let lost = 0
  const rt = await startRuntime({
    clock,
    logger: log,
    store,
    handlers: { job: counting(runs) },
    worker: { workerId: 'w-fixed', leaseTtlSec: 3600, hbIntervalSec: 600 },
    // (Not steered: a steered copy would reach the worker before the claim check this is about.)
    coordinator: { acceptTimeoutSec: 30, steerAfterSec: 0 },
    // The worker reads the START of epoch 1 only once the coordinator's claim check is pending.
    workerBus: (b) =>
      withBusFaults(b, {
        beforeHandle: async (topic) => {
          if (topic.includes('cmd')) await asked.wait()
        },
      }),
    // The first START of epoch 2 is lost.
    coordinatorBus: (b) =>
      withBusFaults(b, {
        produce: (rs) =>
          rs.filter((r) => {
            const e = envelopeOf(r.value)
            const drop = e?.['msg_type'] === 'cmd' && e['attempt_epoch'] === 2 && lost === 0
            if (drop) lost++
            return !drop
          }),
      }),
  })
  try {
    await store.claimAttempt({ task_id: 't', node_id: 'a', attempt_epoch: 1, worker_id: 'w-fixed#dead' }, clock.now())
    await rt.coordinator.createTask({ id: 't', graph: { nodes: [{ node_id: 'a', type: 'job', retry_policy: { max: 1 } }] } })
    await clock.advance(31_000) // the first accept timeout: the coordinator asks the store (held)
    await waitFor(() => log.records.some((r) => r.event === 'worker.restored_run_handed_back'))
    await waitFor(async () => (await rt.coordinator.getTask('t'))?.nodes[0]?.attempt_epoch === 2)
    held.open()
    await waitFor(() => calls >= 1)
    await advance(clock, 200_000)
    const t = await rt.coordinator.waitForTask('t', { timeoutMs: 10_000 })
    assert.equal(t.status, 'finished')
    assert.equal(lost, 1, 'the first START of epoch 2 was lost, and resent')
  } finally {
    held.open()
    asked.open()
    await rt.stop()
  }
})

test('after a long busy spell, a start is resent a step at a time (not the whole schedule at once)', async () => {
  const clock = new TestClock()
  const log = new MemoryLogger()
  const release = gate()
  const h: RoleHandler = {
    async processBatch(_b, ctx) {
      if (ctx.taskId === 'L') await release.wait()
      return { metrics: { n: 1 } }
    },
  }
  const rt = await startRuntime({
    clock,
    logger: log,
    handlers: { job: h },
    worker: { concurrency: 1, leaseTtlSec: 3600, hbIntervalSec: 600 },
    coordinator: { acceptTimeoutSec: 30, heartbeatSoftSec: 3000, heartbeatHardSec: 6000, leaseTtlSec: 3600 },
    // X's STARTs of epoch 1 never arrive.
    coordinatorBus: (b) =>
      withBusFaults(b, {
        produce: (rs) =>
          rs.filter((r) => {
            const e = envelopeOf(r.value)
            return !(e?.['task_id'] === 'X' && e['attempt_epoch'] === 1 && e['msg_type'] === 'cmd')
          }),
      }),
  })
  try {
    await rt.coordinator.createTask({ id: 'L', graph: GRAPH })
    await waitFor(async () => (await rt.coordinator.getTask('L'))?.nodes[0]?.accepted_at_ms != null)
    await rt.coordinator.createTask({ id: 'X', graph: GRAPH })
    await advance(clock, 600_000) // ten minutes with the only slot held
    release.open()
    await waitFor(async () => (await rt.coordinator.getTask('L'))?.status === 'finished')
    await advance(clock, 40_000)
    const x = (await rt.coordinator.getTask('X'))?.nodes[0]
    assert.equal(x?.attempt_epoch, 1, 'not replaced at once')
    assert.ok((x?.resends ?? 0) <= 2, `resends ${x?.resends} in the 40 s after the busy spell`)
    // And it still ends: resent, then handed back, then run.
    await advance(clock, 600_000)
    assert.equal((await rt.coordinator.waitForTask('X', { timeoutMs: 10_000 })).status, 'finished')
  } finally {
    release.open()
    await rt.stop()
  }
})

test('group instance ids: a clean id as is; ids that differ only in other characters or past 200 never share one', async () => {
  const { groupInstanceId } = await import('../../src/util/ids.ts')
  assert.equal(groupInstanceId('w-1.cmd.job'), 'w-1.cmd.job')
  const ids = ['工人一.cmd.job', '工人二.cmd.job', 'host:a.cmd.job', 'host/a.cmd.job', `${'x'.repeat(200)}a.cmd.job`, `${'x'.repeat(200)}b.cmd.job`]
  const mapped = ids.map(groupInstanceId)
  assert.equal(new Set(mapped).size, ids.length, mapped.join(' '))
  for (const m of mapped) assert.match(m, /^[a-zA-Z0-9._-]{1,200}$/)
})

test('a worker whose acceptances arrive after two accept timeouts (an overloaded bus or store): each hand-back doubles the next attempt\'s waits, so the node runs instead of being handed back for ever', async () => {
  const clock = new TestClock()
  const runs = { n: 0 }
  const DELAY = 200_000 // far more than two accept timeouts (10 s + 20 s): the attempt is handed back before its acceptance arrives
  const log = new MemoryLogger()
  // Each attempt's status events reach the coordinator DELAY after its START was sent (virtual
  // time): however slowly the worker gets to them in real time. (They were held DELAY from when
  // the worker sent them: on a loaded machine the test's clock ran ahead of the worker, and an
  // acceptance came an attempt too late, failing the node.)
  const startedAt = new Map<number, number>()
  const epochOf = (value: string): number => Number(envelopeOf(value)?.['attempt_epoch'])
  const rt = await startRuntime({
    clock,
    logger: log,
    handlers: { job: counting(runs) },
    worker: { concurrency: 4, leaseTtlSec: 3600, hbIntervalSec: 600 },
    coordinator: { acceptTimeoutSec: 10, heartbeatSoftSec: 3000, heartbeatHardSec: 3600, steerAfterSec: 0 },
    coordinatorBus: (b) =>
      withBusFaults(b, {
        produce: async (rs) => {
          for (const r of rs) {
            const epoch = epochOf(r.value)
            if (r.value.includes('"cmd":"TASK_START"') && !startedAt.has(epoch)) startedAt.set(epoch, clock.now())
          }
          return rs
        },
      }),
    workerBus: (b) =>
      withBusFaults(b, {
        produce: async (rs) => {
          const value = rs[0]?.value ?? ''
          const payload = envelopeOf(value)?.['payload'] as { kind?: string } | undefined
          if (payload?.kind !== undefined && ['TASK_ACCEPTED', 'BATCH_OK', 'TASK_DONE'].includes(payload.kind)) {
            const due = (startedAt.get(epochOf(value)) ?? clock.now()) + DELAY
            if (due > clock.now()) await clock.sleep(due - clock.now())
          }
          return rs
        },
      }),
  })
  try {
    await rt.coordinator.createTask({ id: 't1', graph: GRAPH })
    let t = await rt.coordinator.getTask('t1')
    for (let waited = 0; waited < 2_000_000 && t?.status !== 'finished'; waited += 10_000) {
      await clock.advance(10_000)
      t = await rt.coordinator.getTask('t1')
    }
    assert.equal(t?.status, 'finished')
    const epoch = t?.nodes[0]?.attempt_epoch ?? 0
    // Waits of 10 + 20 s, then 20 + 40, 40 + 80, 80 + 160: the fourth attempt's acceptance is in time.
    assert.ok(epoch <= 4, `finished at attempt ${epoch}`)
    assert.equal(log.records.filter((r) => r.event === 'node.handed_back').length, epoch - 1)
  } finally {
    // Status events still held by the delay are let go, so the worker can stop.
    let stopped = false
    const stop = rt.stop().finally(() => {
      stopped = true
    })
    for (let i = 0; i < 100 && !stopped; i++) await clock.advance(DELAY)
    await stop
  }
})

test('a START held up until its attempt was handed back (nobody claimed it) does not run when it finally arrives: the coordinator fenced the attempt; the next attempt runs once', async () => {
  const clock = new TestClock()
  const log = new MemoryLogger()
  const runs = { n: 0 }
  const held = gate()
  const rt = await startRuntime({
    clock,
    logger: log,
    handlers: { job: counting(runs) },
    worker: { concurrency: 2, leaseTtlSec: 3600, hbIntervalSec: 600 },
    coordinator: { acceptTimeoutSec: 30, steerAfterSec: 0 },
    // The worker gets no command until the test lets them go (a partition stuck behind a rebalance).
    workerBus: (b) => withBusFaults(b, { beforeHandle: async (_topic, ms) => (ms.some((m) => envelopeOf(m.value)?.['msg_type'] === 'cmd') ? held.wait() : undefined) }),
  })
  try {
    await rt.coordinator.createTask({ id: 't1', graph: GRAPH })
    // 30 + 60 + 120 + 240 s: sent four times, never claimed: handed back, a second attempt sent.
    await advance(clock, 500_000)
    await waitFor(() => log.records.some((r) => r.event === 'node.handed_back'))
    held.open()
    const t = await rt.coordinator.waitForTask('t1', { timeoutMs: 20_000 })
    assert.equal(t.status, 'finished')
    assert.equal(t.nodes[0]?.attempt_epoch, 2)
    assert.equal(runs.n, 1, 'the first attempt, handed back, did not run')
    assert.ok(log.records.some((r) => r.event === 'worker.attempt_held_elsewhere' && r.fields?.['attempt_epoch'] === 1))
  } finally {
    held.open()
    await rt.stop()
  }
})
