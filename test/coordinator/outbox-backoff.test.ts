/**
 * S-028 / S-032 through the dispatcher itself (the unit test of outboxBackoffMs checks the formula
 * only): a send that keeps failing is attempted again after waits that double from
 * outboxBackoffMinMs up to outboxBackoffMaxMs and stay there, with jitter; after the maximum
 * attempts it is parked as a dead letter. Time is a TestClock: the gaps are exact.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryBus, MemoryLogger, MemoryStore, OutboxDispatcher, TestClock } from 'flowkit'
import { waitFor } from '../helpers/wait.ts'

/** A bus whose produce always fails, noting the clock's time of each attempt. */
function failingBus(clock: TestClock): { bus: MemoryBus; attempts: number[] } {
  const bus = new MemoryBus()
  const attempts: number[] = []
  bus.setInterceptor(() => {
    attempts.push(clock.now())
    throw new Error('broker down')
  })
  return { bus, attempts }
}

async function gapsWith(random: () => number): Promise<{ gaps: number[]; dead: number; store: MemoryStore }> {
  const clock = new TestClock()
  const { bus, attempts } = failingBus(clock)
  const store = new MemoryStore()
  const out = new OutboxDispatcher(store, bus, clock, new MemoryLogger(), { maxAttempts: 6, backoffMinMs: 40, backoffMaxMs: 160, tickMs: 5, random })
  out.start()
  try {
    let dead = 0
    out.send([{ topic: 'cmd.x.v1', key: 'k', value: '{}', dedup_id: 'd-1', task_id: 't-1', onDead: () => dead++ }])
    // 5 ms a step: an attempt lands on the first tick at or after its due time.
    for (let i = 0; i < 400 && dead === 0; i++) await clock.advance(5)
    return { gaps: attempts.slice(1).map((t, i) => t - (attempts[i] as number)), dead, store }
  } finally {
    await out.stop({ discard: true })
  }
}

test('S-028/S-032 failed sends back off exponentially up to the cap, with jitter, then park as a dead letter', async () => {
  // No jitter (factor 1.0): 40, 80, 160, then capped at 160.
  const plain = await gapsWith(() => 0.5)
  assert.equal(plain.dead, 1, 'parked after the last attempt')
  assert.equal(plain.gaps.length, 5, 'six attempts in all')
  for (const [i, want] of [40, 80, 160, 160, 160].entries()) {
    const got = plain.gaps[i] as number
    assert.ok(got >= want && got < want + 10, `gap ${i + 1}: ${got} ms, want ${want} (+ one tick)`)
  }
  const [row] = await plain.store.outboxList({ status: 'failed' })
  assert.equal(row?.dedup_id, 'd-1')
  assert.equal(row?.attempts, 6)
  assert.equal(row?.task_id, 't-1', 'parked with its task: retention deletes it with the task (Store.purgeTasks)')
  // Jitter: the low end of the ±20 % (never over the cap).
  const low = await gapsWith(() => 0)
  for (const [i, want] of [32, 64, 128, 128, 128].entries()) {
    const got = low.gaps[i] as number
    assert.ok(got >= want && got < want + 10, `jittered gap ${i + 1}: ${got} ms, want ${want} (+ one tick)`)
  }
})

test('a requeued dead letter whose send fails again is logged and counted as a retry (outbox.retry), as a queued command is (it was retried silently)', async () => {
  const clock = new TestClock()
  const { bus, attempts } = failingBus(clock)
  const store = new MemoryStore()
  const log = new MemoryLogger()
  const out = new OutboxDispatcher(store, bus, clock, log, { maxAttempts: 2, backoffMinMs: 40, backoffMaxMs: 160, tickMs: 5, random: () => 0.5 })
  out.start()
  try {
    let dead = 0
    out.send([{ topic: 'cmd.x.v1', key: 'k', value: '{}', dedup_id: 'd-2', task_id: 't-2', onDead: () => dead++ }])
    for (let i = 0; i < 100 && dead === 0; i++) await clock.advance(5)
    assert.equal(dead, 1)
    const retriesBefore = log.records.filter((r) => r.event === 'outbox.retry').length
    const [row] = await store.outboxList({ status: 'failed' })
    assert.ok(row !== undefined && (await store.outboxRequeue(row.id, clock.now())))
    out.pollSoon()
    const sent = attempts.length
    for (let i = 0; i < 400 && attempts.length === sent; i++) await clock.advance(5)
    assert.ok(attempts.length > sent, 'the requeued row was sent again')
    await waitFor(() => log.records.filter((r) => r.event === 'outbox.retry').length > retriesBefore, { message: 'no outbox.retry for the requeued row' })
    const retry = log.records.filter((r) => r.event === 'outbox.retry').at(-1)
    assert.equal(retry?.level, 'warn')
    assert.equal(retry?.fields['records'], 1)
    assert.equal(retry?.fields['dedup_id'], 'd-2')
  } finally {
    await out.stop({ discard: true })
  }
})
