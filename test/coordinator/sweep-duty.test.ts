/**
 * The sweep's scan for tasks written by another process is bounded in duty: where it is slow (a
 * server that reads the whole tasks collection for it, as FerretDB on SQLite does), it runs less
 * often, so a large store is not kept busy by it; where it is fast it runs every tick. The journal
 * and outbox purge does not run at once when a coordinator starts.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { COORDINATOR_DEFAULTS, MemoryLogger, type Clock, type Store } from 'flowkit'
import { sweep } from '../../src/coordinator/sweep.ts'

/** A clock whose sleep moves time on at once (a simulation: no real waiting). */
class SimClock implements Clock {
  t = 1_000_000
  now(): number {
    return this.t
  }
  async sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) throw signal.reason
    this.t += ms
    await new Promise((r) => setImmediate(r))
  }
}

/**
 * Runs the sweep for `simulatedMs` with a scan that takes `scanMs` (and a coordinator that flushes
 * every tick while `busyUntil` has not passed); counts the scans and purges.
 */
async function simulate(scanMs: number, simulatedMs: number, busyUntil = 0): Promise<{ scans: number; purges: number; firstPurgeAt: number | null; scanTimes: number[] }> {
  const clock = new SimClock()
  const start = clock.t
  const stop = new AbortController()
  let scans = 0
  let purges = 0
  let firstPurgeAt: number | null = null
  const scanTimes: number[] = []
  const store = {
    async listTaskIds() {
      scans++
      scanTimes.push(clock.t - start)
      clock.t += scanMs
      if (clock.t - start >= simulatedMs) stop.abort()
      return []
    },
    async purgeBefore() {
      purges++
      firstPurgeAt ??= clock.t - start
      return { journal: 0, outbox: 0, workers: 0 }
    },
  } as unknown as Store
  await sweep(stop.signal, {
    config: { ...COORDINATOR_DEFAULTS, sweepIntervalSec: 1 },
    store,
    clock,
    log: new MemoryLogger(),
    known: () => true,
    adopt: async () => undefined,
    // A busy coordinator: one more flush at every look.
    flushes: () => (clock.t - start < busyUntil ? clock.t : 0),
  })
  return { scans, purges, firstPurgeAt, scanTimes }
}

test('a fast scan runs every sweep tick', async () => {
  const { scans } = await simulate(0, 100_000)
  assert.ok(scans >= 95, `${scans} scans in 100 s of 1 s ticks`)
})

test('a busy coordinator defers the scan for at most 6 ticks; once idle it scans at the next tick', async () => {
  const { scanTimes } = await simulate(0, 30_000, 20_000)
  const busy = scanTimes.filter((t) => t < 20_000)
  assert.ok(busy.length >= 2 && busy.length <= 4, `scans while busy at ${busy.join(', ')} ms`)
  for (let i = 1; i < busy.length; i++) assert.ok((busy[i] as number) - (busy[i - 1] as number) >= 6_000, `scans while busy at ${busy.join(', ')} ms`)
  assert.ok(scanTimes.filter((t) => t > 21_000).length >= 8, `scans once idle at ${scanTimes.join(', ')} ms`)
})

test('a slow scan runs less often: the scans take at most about 2 % of the time', async () => {
  // 500 ms per scan: at most one scan every 25 s, instead of one per 1.5 s.
  const { scans } = await simulate(500, 200_000)
  assert.ok(scans >= 6 && scans <= 9, `${scans} scans of 500 ms in 200 s`)
})

test('the journal and outbox purge does not run at once when the sweep starts, but within its first period', async () => {
  // Its first run is at a random point of the first 10 minutes: five sweeps all purging in their
  // first minute would happen about once in 100,000 runs of this test (it did every time before).
  const first: number[] = []
  for (let i = 0; i < 5; i++) {
    const { purges, firstPurgeAt } = await simulate(0, 700_000)
    assert.ok(purges >= 1 && firstPurgeAt !== null, 'purged within the first 10 minutes')
    assert.ok(firstPurgeAt <= 600_000 + 1_000, `first purge at ${firstPurgeAt} ms`)
    first.push(firstPurgeAt)
  }
  assert.ok(Math.max(...first) > 60_000, `first purges at ${first.join(', ')} ms`)
})
