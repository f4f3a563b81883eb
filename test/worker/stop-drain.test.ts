/**
 * `Worker.stop({ drain: true })`: the running node finishes (no hand-back), and its reports are
 * retried as usual however long the drain takes. A stop without drain bounds what is left to
 * report to one retry window from the start of the stop (a stop with the broker down took
 * minutes otherwise); a drain starts that window only once its runs ended.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { ErrorCode, FlowkitError, MemoryLogger, TestClock } from 'flowkit'
import type { Bus, RoleHandler } from 'flowkit'
import { gate } from '../helpers/gate.ts'
import { startRuntime } from '../helpers/runtime.ts'
import { waitFor } from '../helpers/wait.ts'

test('a drain outlasting the stop window: the node finishes at its first epoch, its report retried through a broker outage after the window', async () => {
  const clock = new TestClock()
  const logger = new MemoryLogger()
  const entered = gate()
  const release = gate()
  const step: RoleHandler = {
    async processBatch() {
      entered.open()
      await release.wait()
      return { metrics: { count: 1 } }
    },
  }
  let down = false
  const flaky = (bus: Bus): Bus =>
    new Proxy(bus, {
      get(target, prop) {
        if (prop === 'produce') {
          return (records: Parameters<Bus['produce']>[0]) => (down ? Promise.reject(new FlowkitError(ErrorCode.BusUnavailable, 'broker down', { retryable: true })) : target.produce(records))
        }
        const v = Reflect.get(target, prop, target)
        return typeof v === 'function' ? v.bind(target) : v
      },
    })
  const rt = await startRuntime({ clock, logger, handlers: { step }, workerBus: flaky, worker: { hbIntervalSec: 1, leaseTtlSec: 120 } })
  const release2 = (): void => release.open()
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'a', type: 'step' }] } })
    await entered.wait()
    const worker = rt.workers[0]
    assert.ok(worker)
    const stopped = worker.stop({ drain: true })
    // The drain lasts past one retry window (30 s) from the start of the stop.
    for (let i = 0; i < 40; i++) await clock.advance(1000)
    down = true
    release2()
    for (let i = 0; i < 30; i++) await clock.advance(100)
    down = false
    await waitFor(
      async () => {
        await clock.advance(500)
        return (await rt.coordinator.getTask(id))?.status === 'finished'
      },
      { timeoutMs: 20_000, message: 'the drained node finishes once the broker is back' },
    )
    await stopped
    const t = await rt.coordinator.getTask(id)
    assert.equal(t?.nodes[0]?.attempt_epoch, 1, 'finished at its first epoch: no hand-back, no retry')
    assert.deepEqual(
      logger.records.filter((r) => r.event === 'worker.status_produce_failed').map((r) => r.fields),
      [],
      'no report given up',
    )
  } finally {
    release2()
    await rt.stop()
  }
})

test('an idle worker stopped while the broker is down returns within seconds (its offline announce is not retried for a whole window)', async () => {
  const clock = new TestClock()
  const logger = new MemoryLogger()
  let down = false
  const produced: string[] = []
  const flaky = (bus: Bus): Bus =>
    new Proxy(bus, {
      get(target, prop) {
        if (prop === 'produce') {
          return (records: Parameters<Bus['produce']>[0]) => {
            produced.push(...records.map((r) => r.topic))
            return down ? Promise.reject(new FlowkitError(ErrorCode.BusUnavailable, 'broker down', { retryable: true })) : target.produce(records)
          }
        }
        const v = Reflect.get(target, prop, target)
        return typeof v === 'function' ? v.bind(target) : v
      },
    })
  const rt = await startRuntime({ clock, logger, handlers: { step: { processBatch: async () => ({}) } }, workerBus: flaky })
  let done = false
  try {
    const worker = rt.workers[0]
    assert.ok(worker)
    await waitFor(() => produced.length > 0, { message: 'the worker announced itself' })
    down = true
    const stopped = worker.stop().then(() => {
      done = true
    })
    for (let i = 0; i < 10 && !done; i++) {
      await clock.advance(1000)
      for (let j = 0; j < 20 && !done; j++) await new Promise((r) => setImmediate(r))
    }
    assert.ok(done, 'stopped within 10 s of clock, not after the 30 s retry window')
    await stopped
    assert.ok(produced.length > 1, 'the offline announce was tried')
  } finally {
    down = false
    // (A stop still retrying: let its window pass, so that the runtime stops.)
    for (let i = 0; i < 40 && !done; i++) await clock.advance(1000)
    await rt.stop()
  }
})
