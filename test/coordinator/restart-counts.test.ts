/**
 * A coordinator stopped and started again (the same object) counts its tasks' accepted runs again
 * as it loads them: the per-worker counts are cleared with the rest of its limits. A review found
 * them left over — the run counted twice, the worker "full" for ever once it ended — so a START
 * lost on the way afterwards was never resent or steered (`node.start_queued` at every timeout)
 * and its task never ended.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryLogger, TestClock, type Bus, type RoleHandler } from 'flowkit'
import { Limits } from '../../src/coordinator/limits.ts'
import { gate } from '../helpers/gate.ts'
import { startRuntime } from '../helpers/runtime.ts'
import { overrideMethods } from '../helpers/store-proxy.ts'
import { waitFor } from '../helpers/wait.ts'

test('Limits.clear forgets the accepted runs per worker and when each was full', () => {
  const limits = new Limits(0, {})
  limits.capacityOf = () => 1
  limits.accepting(null, 'w', 1_000)
  assert.equal(limits.acceptedBy('w'), 1)
  limits.clear()
  assert.equal(limits.acceptedBy('w'), 0)
  assert.equal(limits.fullSince('w', 1, 0), false, 'nor that it was full')
})

test('a START lost after the coordinator was stopped and started again is resent: the worker is not counted busy for ever', async () => {
  const clock = new TestClock()
  const logger = new MemoryLogger()
  const release = gate()
  let dropNext = false
  const h: RoleHandler = {
    async processBatch(_b, ctx) {
      if (ctx.taskId === 'long') await release.wait(ctx.signal)
      return {}
    },
  }
  // The coordinator's next START of task "lost" does not reach the bus.
  const coordinatorBus = (b: Bus): Bus =>
    overrideMethods(b, {
      produce: (f) => async (...a: unknown[]) => {
        let recs = a[0] as { topic: string; value: string }[]
        if (dropNext) {
          const before = recs.length
          recs = recs.filter((r) => !(String(r.value).includes('"cmd":"TASK_START"') && String(r.value).includes('"lost"')))
          if (recs.length < before) dropNext = false
        }
        return f(recs, ...a.slice(1))
      },
    })
  const rt = await startRuntime({ clock, logger, coordinatorBus, handlers: { x: h }, worker: { concurrency: 1, leaseTtlSec: 3600, hbIntervalSec: 600 }, coordinator: { acceptTimeoutSec: 30 } })
  try {
    await rt.coordinator.createTask({ id: 'long', graph: { nodes: [{ node_id: 'a', type: 'x' }] } })
    await waitFor(async () => (await rt.coordinator.getTask('long'))?.nodes[0]?.accepted_at_ms != null, { message: 'accepted' })
    await rt.coordinator.stop()
    await rt.coordinator.start()
    await waitFor(() => logger.records.some((r) => r.event === 'node.adopted' || r.event === 'coordinator.acquired'), { message: 'taken up again' })
    release.open()
    assert.equal((await rt.coordinator.waitForTask('long', { timeoutMs: 20_000 })).status, 'finished')
    // The worker is idle now; a START lost on the way:
    dropNext = true
    await rt.coordinator.createTask({ id: 'lost', graph: { nodes: [{ node_id: 'a', type: 'x' }] } })
    await waitFor(() => !dropNext, { message: 'the START was dropped' })
    for (let s = 0; s < 600; s += 10) await clock.advance(10_000)
    const t = await rt.coordinator.getTask('lost')
    assert.equal(t?.status, 'finished', `the lost START was resent or steered and ran (status ${t?.status})`)
  } finally {
    release.open()
    await rt.stop()
  }
})
