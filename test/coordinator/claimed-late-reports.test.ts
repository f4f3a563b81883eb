/**
 * A worker claimed and ran an attempt, but its reports do not reach the coordinator (with several
 * coordinators they can wait for tens of seconds in status partitions moving between them — an
 * audit on Kafka saw 13–49 s). The claimed attempt's second accept timeout handed it back, and a
 * live holder ran it to the end next to the next attempt: the node ran twice, no worker died.
 * Now the attempt is judged first (its complete artifact finishes the node), and a handed-back
 * attempt's holder is told to give it up. Here the worker's reports of attempt 1 are dropped.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryLogger, type RoleHandler, TestClock } from 'flowkit'
import { envelopeOf, withBusFaults } from '../helpers/bus-faults.ts'
import { gate } from '../helpers/gate.ts'
import { aroundClaims } from '../helpers/store-proxy.ts'
import { type Runtime, type RuntimeOptions, startRuntime } from '../helpers/runtime.ts'
import { waitFor } from '../helpers/wait.ts'

const GRAPH = { nodes: [{ node_id: 'a', type: 'job' }] }

async function advance(clock: TestClock, ms: number, step = 5_000): Promise<void> {
  for (let t = 0; t < ms; t += step) await clock.advance(step)
}

/** The worker's events about attempt 1 of task t1 never reach a coordinator. */
const dropFirstAttemptReports = (b: Parameters<typeof withBusFaults>[0]) =>
  withBusFaults(b, {
    produce: (rs) =>
      rs.filter((r) => {
        const e = envelopeOf(r.value)
        return !(e?.['msg_type'] === 'event' && e['task_id'] === 't1' && e['attempt_epoch'] === 1)
      }),
  })

/**
 * One worker of two slots whose leases do not run out here, 30 s accept timeouts, no steering
 * (a steered copy of a START would reach the worker by another way); `faults` wrap the worker's bus
 * or store. `body` gets the runtime, its clock and its log; the runtime is stopped after it.
 */
async function withRuntime(job: RoleHandler, faults: Pick<RuntimeOptions, 'workerBus' | 'workerStore'>, body: (rt: Runtime, clock: TestClock, log: MemoryLogger) => Promise<void>): Promise<void> {
  const clock = new TestClock()
  const log = new MemoryLogger()
  const rt = await startRuntime({ clock, logger: log, handlers: { job }, worker: { concurrency: 2, leaseTtlSec: 3600, hbIntervalSec: 600 }, coordinator: { acceptTimeoutSec: 30, steerAfterSec: 0 }, ...faults })
  try {
    await body(rt, clock, log)
  } finally {
    await rt.stop()
  }
}

/** A long job: until its signal aborts (or `endsAfterMs` of real time), then whether it was aborted. */
async function untilAborted(signal: AbortSignal, endsAfterMs?: number): Promise<boolean> {
  await new Promise<void>((resolve) => {
    if (signal.aborted) resolve()
    signal.addEventListener('abort', () => resolve(), { once: true })
    if (endsAfterMs !== undefined) setTimeout(resolve, endsAfterMs)
  })
  return signal.aborted
}

test('a claimed attempt whose holder finished but whose reports are lost: finished from its complete artifact, not run again', async () => {
  const runs: number[] = []
  const job: RoleHandler = {
    async processBatch(_batch, ctx) {
      runs.push(ctx.attemptEpoch)
      return { metrics: { n: 1 } }
    },
  }
  await withRuntime(job, { workerBus: dropFirstAttemptReports }, async (rt, clock, log) => {
    await rt.coordinator.createTask({ id: 't1', graph: GRAPH })
    await waitFor(async () => (await rt.store.getArtifact('t1', 'a', null))?.status === 'complete')
    // 30 s: resent (claimed, its holder may report late); 60 s later: judged.
    await advance(clock, 120_000)
    const t = await rt.coordinator.waitForTask('t1', { timeoutMs: 10_000 })
    assert.equal(t.status, 'finished')
    assert.equal(t.nodes[0]?.attempt_epoch, 1, 'not handed back')
    assert.deepEqual(runs, [1], 'the handler ran once')
    assert.ok(log.records.some((r) => r.event === 'node.recovered_complete'))
  })
})

test('a claimed attempt still running whose reports are lost: handed back, and its holder is told to give it up', async () => {
  const started: number[] = []
  const ended: number[] = []
  let firstAborted = false
  const job: RoleHandler = {
    async processBatch(_batch, ctx) {
      started.push(ctx.attemptEpoch)
      if (ctx.attemptEpoch === 1) {
        firstAborted = await untilAborted(ctx.signal)
        throw new Error('stopped')
      }
      ended.push(ctx.attemptEpoch)
      return { metrics: { n: 1 } }
    },
  }
  await withRuntime(job, { workerBus: dropFirstAttemptReports }, async (rt, clock) => {
    await rt.coordinator.createTask({ id: 't1', graph: GRAPH })
    await waitFor(() => started.length === 1)
    await advance(clock, 120_000)
    const t = await rt.coordinator.waitForTask('t1', { timeoutMs: 10_000 })
    assert.equal(t.status, 'finished')
    assert.equal(t.nodes[0]?.attempt_epoch, 2, 'handed back: a second attempt')
    await waitFor(() => firstAborted, { timeoutMs: 10_000 })
    assert.deepEqual(ended, [2], 'only the second attempt ran to its end')
  })
})

test('the holder already runs the next attempt when the CANCEL of the old one comes (signals and commands are separate topics): the old run is stopped as superseded', async () => {
  const started: number[] = []
  const ended: number[] = []
  let firstAborted = false
  const cancelHeld = gate()
  let cancelsSeen = 0
  const isCancelSignal = (value: string): boolean => (envelopeOf(value)?.['payload'] as Record<string, unknown> | undefined)?.['sig'] === 'CANCEL'
  const job: RoleHandler = {
    async processBatch(_batch, ctx) {
      started.push(ctx.attemptEpoch)
      // Attempt 1 stops when told, or ends by itself after 4 s.
      if (ctx.attemptEpoch === 1) firstAborted = await untilAborted(ctx.signal, 4000)
      ended.push(ctx.attemptEpoch)
      return { metrics: { n: 1 } }
    },
  }
  const workerBus = (b: Parameters<typeof withBusFaults>[0]) =>
    withBusFaults(dropFirstAttemptReports(b), {
      // The worker's signals consumer is behind its command consumer: CANCEL(1) comes after START 2.
      beforeHandle: async (_topic, msgs) => {
        if (msgs.some((m) => isCancelSignal(m.value))) {
          cancelsSeen++
          await cancelHeld.wait()
        }
      },
    })
  await withRuntime(job, { workerBus }, async (rt, clock, log) => {
    try {
      await rt.coordinator.createTask({ id: 't1', graph: GRAPH })
      await waitFor(() => started.length === 1)
      await advance(clock, 120_000)
      await waitFor(() => started.includes(2) && cancelsSeen > 0)
      cancelHeld.open()
      const t = await rt.coordinator.waitForTask('t1', { timeoutMs: 10_000 })
      assert.equal(t.nodes[0]?.attempt_epoch, 2)
      await waitFor(() => ended.includes(1), { timeoutMs: 10_000 })
      assert.ok(firstAborted, 'attempt 1 was stopped, not run to its end next to attempt 2')
      assert.ok(log.records.some((r) => r.event === 'worker.attempt_superseded'))
    } finally {
      cancelHeld.open()
    }
  })
})

test('the CANCEL of a handed-back attempt comes while its holder is still between its claim and its start: the attempt is not run, its cancel confirmed', async () => {
  const started: number[] = []
  const claimed = gate()
  const answer = gate()
  const job: RoleHandler = {
    async processBatch(_batch, ctx) {
      started.push(ctx.attemptEpoch)
      return { metrics: { n: 1 } }
    },
  }
  // The claim of attempt 1 is written at once, its answer held back (a slow store round trip).
  const workerStore = (store: Parameters<typeof aroundClaims>[0]) =>
    aroundClaims(store, async (claims, claim) => {
      const res = await claim()
      if (claims.some((c) => c.task_id === 't1' && c.attempt_epoch === 1)) {
        claimed.open()
        await answer.wait()
      }
      return res
    })
  await withRuntime(job, { workerStore }, async (rt, clock, log) => {
    try {
      await rt.coordinator.createTask({ id: 't1', graph: GRAPH })
      await claimed.wait()
      await advance(clock, 120_000)
      // The hand-back's CANCEL reaches the worker before its claim answers.
      await waitFor(() => log.records.some((r) => r.event === 'worker.cancel_unknown_run' && r.fields['task_id'] === 't1' && r.fields['attempt_epoch'] === 1))
      answer.open()
      const t = await rt.coordinator.waitForTask('t1', { timeoutMs: 10_000 })
      assert.equal(t.status, 'finished')
      assert.equal(t.nodes[0]?.attempt_epoch, 2)
      assert.deepEqual(started, [2], 'attempt 1 never ran')
      assert.ok(log.records.some((r) => r.event === 'worker.start_cancelled'))
    } finally {
      answer.open()
    }
  })
})
