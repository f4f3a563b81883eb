/**
 * A coordinator started anew (a new process) while STARTs wait in the queue of a busy worker.
 * The steering audit on real Kafka + FerretDB found each restart reporting the whole queued
 * backlog `node.not_accepted` and resending it a few seconds after the start (84 of them, then
 * 80 at the next restart): the new process knew nothing of the workers' load (the registry it
 * reads holds no run counts, load reports come when slots change), and the resend schedule from
 * the dispatch was long past. Now it reads each live worker's saved run state at start, and judges
 * a loaded START only after watching the workers for one accept timeout.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Coordinator, MemoryLogger, TestClock, protocol, type Bus, type RoleHandler } from 'flowkit'
import { gate } from '../helpers/gate.ts'
import { startRuntime } from '../helpers/runtime.ts'
import { overrideMethods } from '../helpers/store-proxy.ts'
import { waitFor } from '../helpers/wait.ts'

test('a coordinator started anew does not report STARTs queued behind a busy worker as unaccepted', async () => {
  const clock = new TestClock()
  const logger = new MemoryLogger()
  const release = gate()
  const ran: string[] = []
  const h: RoleHandler = {
    async processBatch(_b, ctx) {
      ran.push(ctx.taskId)
      if (ctx.taskId === 'foreign') await release.wait(ctx.signal)
      return {}
    },
  }
  // The worker's load is known to a coordinator only from what it says (its run is another
  // coordinator's: here a START of a task this store does not hold) — no periodic announce, and
  // once the first coordinator heard it full, nothing more on the announce topic.
  let mute = false
  const workerBus = (b: Bus): Bus =>
    overrideMethods(b, {
      produce: (f) => async (...a: unknown[]) => f((a[0] as { topic: string }[]).filter((r) => !(mute && r.topic.includes('announce'))), ...a.slice(1)),
    })
  const rt = await startRuntime({
    workerBus,
    clock,
    logger,
    handlers: { x: h },
    worker: { concurrency: 1, leaseTtlSec: 3600, hbIntervalSec: 600, announceIntervalSec: 3600 },
    coordinator: { acceptTimeoutSec: 30, steerAfterSec: 0, workerLivenessSec: 3600 },
  })
  let c2: Coordinator | null = null
  try {
    const env = protocol.makeEnvelope({
      msg_type: 'cmd', role: 'coordinator', task_id: 'foreign', node_id: 'n', step_type: 'x', attempt_epoch: 1,
      ts_ms: clock.now(), dedup_id: 'foreign-1',
      payload: { cmd: 'TASK_START', input_ref: null, input_inline: null, batching: null, cancel_token: 't' },
    })
    await rt.bus.produce([{ topic: rt.cmdTopic('x'), key: 'foreign:n', value: protocol.encode(env) }])
    await waitFor(() => ran.includes('foreign'), { message: 'the other run never started' })
    await waitFor(async () => ((await rt.store.getWorkerState(rt.workers[0]!.workerId))?.active_runs.length ?? 0) === 1, { message: 'its run state saved' })
    await waitFor(() => logger.records.some((r) => r.event === 'coordinator.worker_load'), { message: 'its load report heard' })
    mute = true
    const id = await rt.coordinator.createTask({ id: 'queued', graph: { nodes: [{ node_id: 'a', type: 'x' }] } })
    for (let s = 0; s < 60; s += 5) await clock.advance(5_000)
    const notAccepted = (): number => logger.records.filter((r) => r.event === 'node.not_accepted').length
    assert.equal(notAccepted(), 0, 'queued behind a full worker: not unaccepted')

    await rt.coordinator.stop()
    c2 = new Coordinator({ bus: rt.bus, store: rt.store, clock, logger, config: rt.coordinatorBase })
    await c2.start()
    const restarted = clock.now()
    for (let s = 0; s < 25; s += 5) await clock.advance(5_000)
    assert.equal(notAccepted(), 0, 'not judged before watching the workers for an accept timeout (30 s)')
    while (clock.now() < restarted + 120_000) await clock.advance(5_000)
    assert.equal(notAccepted(), 0, 'nor after the restart')
    release.open()
    const t = await c2.waitForTask(id, { timeoutMs: 20_000 })
    assert.equal(t.status, 'finished')
    assert.deepEqual([t.nodes.find((n) => n.node_id === 'a')?.attempt_epoch, t.nodes.find((n) => n.node_id === 'a')?.resends ?? 0], [1, 0])
  } finally {
    release.open()
    await c2?.stop()
    await rt.stop()
  }
})
