/**
 * Defect 6c (issue 7): one failed announce ended the worker's announces for good (the loop
 * returned on the first failed send). Announces must keep their schedule after a failed send.
 * The worker runs on a TestClock (its announce schedule moves only when the test advances it);
 * the failures are injected by wrapping the Bus, so this runs on memory and on real Kafka.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { type Bus, type BusRecord, ErrorCode, FlowkitError, MemoryLogger, TestClock, Worker, protocol } from 'flowkit'
import { noopHandler, startRuntime } from '../helpers/runtime.ts'
import { waitFor } from '../helpers/wait.ts'

/** A bus whose next WORKER_ONLINE produce(s) fail with the errors queued by the test. */
function failingAnnounces(inner: Bus) {
  const failNext: FlowkitError[] = []
  const state = { attempts: 0, sent: 0 }
  const isAnnounce = (r: BusRecord) => {
    const env = protocol.parseEnvelope(r.value)
    return env.ok && env.value.payload['kind'] === 'WORKER_ONLINE'
  }
  const bus = new Proxy(inner, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target) as unknown
      if (typeof value !== 'function') return value
      const fn = (value as (...args: unknown[]) => unknown).bind(target)
      if (prop !== 'produce') return fn
      return async (records: BusRecord[]) => {
        const announces = records.filter(isAnnounce).length
        state.attempts += announces
        if (announces > 0) {
          const err = failNext.shift()
          if (err) throw err
        }
        await fn(records)
        state.sent += announces
      }
    },
  })
  return { bus, failNext, state }
}

test('defect 6c: one failed announce does not stop announces; they keep their schedule', async () => {
  const rt = await startRuntime()
  const clock = new TestClock()
  const logger = new MemoryLogger()
  const faulty = failingAnnounces(rt.bus)
  const every = 60_000
  const worker = new Worker({
    bus: faulty.bus,
    store: rt.store,
    clock,
    logger,
    handlers: { step: noopHandler() },
    config: { ...rt.workerBase, announceIntervalSec: every / 1000 },
  })
  await worker.start()
  try {
    assert.equal(faulty.state.sent, 1, 'WORKER_ONLINE at start')
    // The first repeats come sooner (a coordinator that subscribed just after the start learns of
    // the worker within seconds): 2, 4, 8, 16 and 32 s apart, then every interval.
    for (const [i, delay] of [2_000, 4_000, 8_000, 16_000, 32_000].entries()) {
      await clock.advance(delay - 1)
      assert.equal(faulty.state.attempts, i + 1, `no early announce before its time (${delay} ms)`)
      await clock.advance(1)
      await waitFor(() => faulty.state.sent === i + 2, { message: `the early announce after ${delay} ms did not go` })
    }
    const base = faulty.state.sent - 1

    // The next announce fails for good (an error no retry can fix).
    faulty.failNext.push(new FlowkitError(ErrorCode.BadMessage, 'injected: record refused'))
    await clock.advance(every)
    await waitFor(() => logger.events().includes('worker.announce_failed'), { message: 'the failed announce was not reported' })
    assert.equal(faulty.state.sent, base + 1)

    // The one after it still goes, at its time.
    await clock.advance(every - 1)
    assert.equal(faulty.state.attempts, base + 2, 'no announce before its time')
    await clock.advance(1)
    await waitFor(() => faulty.state.sent === base + 2, { message: 'announces stopped after one failed send' })

    // A send that fails for a while (a broker outage) is retried with backoff, and the schedule holds.
    faulty.failNext.push(
      new FlowkitError(ErrorCode.BusUnavailable, 'injected: broker unavailable', { retryable: true }),
      new FlowkitError(ErrorCode.BusUnavailable, 'injected: broker unavailable', { retryable: true }),
    )
    await clock.advance(every)
    await waitFor(() => faulty.state.attempts === base + 4, { message: 'the failed announce was not retried' })
    await clock.advance(100) // the retry backoff: 100 ms, then 200 ms
    await waitFor(() => faulty.state.attempts === base + 5, { message: 'the failed announce was not retried' })
    await clock.advance(200)
    await waitFor(() => faulty.state.attempts === base + 6 && faulty.state.sent === base + 3, { message: 'the announce was not retried to success' })
    await clock.advance(every - 300)
    await waitFor(() => faulty.state.sent === base + 4, { message: 'the schedule did not hold after a retried announce' })
  } finally {
    await worker.stop()
    await rt.stop()
  }
})
