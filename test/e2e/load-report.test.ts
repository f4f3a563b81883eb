/**
 * A worker says when its slots fill up and free again (a load report on the announce topic), so a
 * coordinator whose tasks share it with another coordinator's knows it is busy: a coordinator
 * counts only its own tasks' runs, and took a worker full of another's for an idle one (its STARTs
 * queued behind it were reported not accepted, resent, and past the whole schedule replaced).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Coordinator, MemoryBus, MemoryLogger, TestClock, type RoleHandler } from 'flowkit'
import { gate } from '../helpers/gate.ts'
import { startRuntime } from '../helpers/runtime.ts'
import { idOn } from '../helpers/task-ids.ts'
import { waitFor } from '../helpers/wait.ts'

test('a worker busy with another coordinator\'s run: the starts queued behind it are not reported unaccepted, resent or replaced', async () => {
  const clock = new TestClock()
  const logger = new MemoryLogger()
  const release = gate()
  const ran: string[] = []
  const h: RoleHandler = {
    async processBatch(_b, ctx) {
      ran.push(ctx.taskId)
      if (ctx.taskId.startsWith('long')) await release.wait()
      return { metrics: { count: 1 } }
    },
  }
  // (A long liveness window: the test clock runs past the resend schedule in a few milliseconds,
  // faster than a real store lets the coordinator take in the worker's periodic announces.)
  const coordinator = { acceptTimeoutSec: 30, steerAfterSec: 0, workerLivenessSec: 3600 }
  const rt = await startRuntime({ bus: new MemoryBus(), clock, logger, coordinator })
  const other = new Coordinator({ bus: rt.bus, store: rt.store, clock, logger: new MemoryLogger(), config: { ...rt.coordinatorBase, ...coordinator, coordinatorId: 'other' } })
  await other.start()
  try {
    await waitFor(() => rt.coordinator.ownership.partitions.length > 0 && other.ownership.partitions.length > 0, { message: 'both coordinators own partitions' })
    await rt.addWorker({ step: h }, { concurrency: 1, leaseTtlSec: 3600, hbIntervalSec: 600 })
    const count = other.ownership.of
    const long = idOn('long', other.ownership.partitions[0] as number, count)
    const mine = idOn('queued', rt.coordinator.ownership.partitions[0] as number, count)
    await other.createTask({ id: long, graph: { nodes: [{ node_id: 'n', type: 'step' }] } })
    await waitFor(() => ran.includes(long), { message: "the other coordinator's run holds the worker's only slot" })
    // The worker's report of its full slots has reached this coordinator (before its clock runs).
    await waitFor(() => logger.records.some((r) => r.event === 'coordinator.worker_load' && r.fields['running'] === 1), { message: 'the load report heard' })
    await rt.coordinator.createTask({ id: mine, graph: { nodes: [{ node_id: 'n', type: 'step' }] } })
    assert.equal(rt.coordinator.ownsTask(mine), true)
    // Past the whole resend schedule (30 + 60 + 120 + 240 s).
    for (let s = 0; s < 500; s += 10) await clock.advance(10_000)
    const mineEvents = logger.records.filter((r) => r.fields['task_id'] === mine).map((r) => r.event)
    assert.equal(mineEvents.filter((e) => e === 'node.not_accepted').length, 0, 'not reported unaccepted')
    assert.equal(mineEvents.filter((e) => e === 'node.start_resent').length, 0, 'not resent')
    assert.ok(mineEvents.includes('node.start_queued'), 'queued behind a busy worker')
    release.open()
    const t = await rt.coordinator.waitForTask(mine, { timeoutMs: 20_000 })
    assert.equal(t.status, 'finished')
    assert.equal(t.nodes[0]?.attempt_epoch, 1, 'never replaced')
    assert.deepEqual(ran.filter((id) => id === mine), [mine], 'run once')
  } finally {
    release.open()
    await other.stop()
    await rt.stop()
  }
})
