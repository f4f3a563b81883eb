import { test } from 'node:test'
import assert from 'node:assert/strict'
import { TestClock } from '../../src/clock.ts'
import { ErrorCode, FlowkitError } from '../../src/errors.ts'
import { MemoryLogger } from '../../src/log.ts'
import type { BusRecord } from '../../src/ports/bus.ts'
import type { WorkerStateDoc } from '../../src/ports/store.ts'
import { WorkerStateSaver } from '../../src/worker/state.ts'
import { StatusEmitter } from '../../src/worker/status-emitter.ts'

const rec = (v: string, key = 't1/n1'): BusRecord => ({ topic: 'status.step.v1', key, value: v })

/** Lets pending promise callbacks run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise<void>((r) => setImmediate(r))
}

/** A bus whose produce calls wait until the test releases (or fails) them, one by one. */
function gatedBus() {
  const calls: { values: string[]; release: () => void; fail: (err: unknown) => void }[] = []
  return {
    calls,
    produce(records: BusRecord[]): Promise<void> {
      return new Promise<void>((resolve, reject) => {
        calls.push({ values: records.map((r) => r.value), release: resolve, fail: reject })
      })
    },
  }
}

function watch(p: Promise<void>): { state: 'pending' | 'ok' | 'failed'; error?: unknown } {
  const s: { state: 'pending' | 'ok' | 'failed'; error?: unknown } = { state: 'pending' }
  p.then(
    () => {
      s.state = 'ok'
    },
    (err: unknown) => {
      s.state = 'failed'
      s.error = err
    },
  )
  return s
}

test('events queued while a produce is in flight go out together in the next produce, in order', async () => {
  const bus = gatedBus()
  const emitter = new StatusEmitter({ bus, clock: new TestClock(), log: new MemoryLogger() })
  const first = watch(emitter.send(rec('e1')))
  await settle()
  assert.deepEqual(bus.calls.map((c) => c.values), [['e1']])
  const rest = ['e2', 'e3', 'e4', 'e5'].map((v, i) => watch(emitter.send(rec(v, `t1/n${i % 2}`))))
  await settle()
  assert.equal(bus.calls.length, 1, 'no second produce while the first is in flight')
  assert.equal(first.state, 'pending', 'a caller waits for the produce carrying its event')
  bus.calls[0]!.release()
  await settle()
  assert.equal(first.state, 'ok')
  assert.deepEqual(bus.calls.map((c) => c.values), [['e1'], ['e2', 'e3', 'e4', 'e5']])
  assert.ok(rest.every((s) => s.state === 'pending'), 'each caller waits for its own produce')
  bus.calls[1]!.release()
  await settle()
  assert.ok(rest.every((s) => s.state === 'ok'))
  assert.equal(emitter.pending, 0)
})

test('records sent in the same tick share one produce', async () => {
  const batches: string[][] = []
  const emitter = new StatusEmitter({
    bus: { produce: async (rs) => void batches.push(rs.map((r) => r.value)) },
    clock: new TestClock(),
    log: new MemoryLogger(),
  })
  await Promise.all([emitter.send(rec('a')), emitter.send(rec('b')), emitter.send(rec('c'))])
  assert.deepEqual(batches, [['a', 'b', 'c']])
})

test('a failing produce is retried with capped backoff; events sent meanwhile follow in the next produce', async () => {
  const clock = new TestClock()
  const log = new MemoryLogger()
  const batches: string[][] = []
  let failures = 3
  const emitter = new StatusEmitter({
    bus: {
      async produce(rs) {
        batches.push(rs.map((r) => r.value))
        if (failures-- > 0) throw new FlowkitError(ErrorCode.BusUnavailable, 'broker down', { retryable: true })
      },
    },
    clock,
    log,
    retryInitialMs: 100,
    retryMaxMs: 150,
  })
  const a = watch(emitter.send(rec('a')))
  await settle()
  assert.deepEqual(batches, [['a']])
  const b = watch(emitter.send(rec('b')))
  await clock.advance(99)
  await settle()
  assert.equal(batches.length, 1, 'first retry after 100 ms')
  await clock.advance(1)
  await settle()
  assert.equal(batches.length, 2)
  await clock.advance(149)
  await settle()
  assert.equal(batches.length, 2, 'second retry after 150 ms (capped, not 200)')
  await clock.advance(1)
  await settle()
  await clock.advance(150)
  await settle()
  assert.deepEqual(batches, [['a'], ['a'], ['a'], ['a'], ['b']])
  assert.equal(a.state, 'ok')
  assert.equal(b.state, 'ok')
  assert.equal(log.records.filter((r) => r.event === 'worker.status_produce_retry').length, 3)
})

/** An emitter whose bus is down (every produce fails, retryable; `seen` sees each attempt), retrying for 30 s. */
function brokerDown(clock: TestClock, seen: (records: readonly BusRecord[]) => void): StatusEmitter {
  return new StatusEmitter({
    bus: {
      async produce(rs) {
        seen(rs)
        throw new FlowkitError(ErrorCode.BusUnavailable, 'broker down', { retryable: true })
      },
    },
    clock,
    log: new MemoryLogger(),
    retryInitialMs: 100,
    retryMaxMs: 2000,
    retryForMs: 30_000,
  })
}

test('a produce failing past the retry window fails its callers with the error', async () => {
  const clock = new TestClock()
  let calls = 0
  const emitter = brokerDown(clock, () => {
    calls++
  })
  const a = watch(emitter.send(rec('a')))
  for (let i = 0; i < 40 && a.state === 'pending'; i++) {
    await clock.advance(1000)
    await settle()
  }
  assert.equal(a.state, 'failed')
  assert.equal((a.error as FlowkitError).code, ErrorCode.BusUnavailable)
  assert.ok(calls > 5 && calls < 30, `retried a bounded number of times (${calls})`)
  assert.ok(clock.now() - Date.UTC(2026, 0, 1) <= 31_000, 'gave up within the retry window')
})

test('a record the bus refuses fails only its own caller; a closed bus is not retried', async () => {
  const batches: string[][] = []
  const emitter = new StatusEmitter({
    bus: {
      async produce(rs) {
        batches.push(rs.map((r) => r.value))
        if (rs.some((r) => r.value === 'bad')) throw new FlowkitError(ErrorCode.BadMessage, 'refused')
      },
    },
    clock: new TestClock(),
    log: new MemoryLogger(),
  })
  const results = ['a', 'bad', 'c'].map((v) => watch(emitter.send(rec(v))))
  await settle()
  assert.deepEqual(results.map((r) => r.state), ['ok', 'failed', 'ok'])
  assert.deepEqual(batches, [['a', 'bad', 'c'], ['a'], ['bad'], ['c']])

  let calls = 0
  const closed = new StatusEmitter({
    bus: {
      async produce() {
        calls++
        throw new FlowkitError(ErrorCode.Closed, 'bus closed')
      },
    },
    clock: new TestClock(),
    log: new MemoryLogger(),
  })
  await assert.rejects(closed.send(rec('x')), { code: ErrorCode.Closed })
  assert.equal(calls, 1)
})

test('close() fails queued and in-flight events and stops retrying', async () => {
  const bus = gatedBus()
  const emitter = new StatusEmitter({ bus, clock: new TestClock(), log: new MemoryLogger() })
  const a = watch(emitter.send(rec('a')))
  await settle()
  const b = watch(emitter.send(rec('b')))
  emitter.close(new Error('killed'))
  await settle()
  assert.equal(a.state, 'failed')
  assert.equal(b.state, 'failed')
  await assert.rejects(emitter.send(rec('c')), /killed/)
  bus.calls[0]!.release()
  await settle()
  assert.equal(bus.calls.length, 1, 'nothing more is produced')
})

/** Waits (polling, with a deadline) until `cond` holds. */
async function until(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`)
    await new Promise<void>((r) => setTimeout(r, 5))
  }
}

test('a held record goes out with the next record of its key, before it, in one produce', async () => {
  const batches: string[][] = []
  const emitter = new StatusEmitter({
    bus: { produce: async (rs) => void batches.push(rs.map((r) => r.value)) },
    clock: new TestClock(),
    log: new MemoryLogger(),
    holdMs: 60_000, // only the next record of its key releases it here
  })
  const accepted = watch(emitter.send(rec('accepted', 't1/n1'), true))
  const other = watch(emitter.send(rec('other run', 't2/n1')))
  await settle()
  assert.deepEqual(batches, [['other run']], 'a record of another key neither waits for it nor releases it')
  assert.equal(accepted.state, 'pending')
  assert.equal(other.state, 'ok')
  assert.equal(emitter.pending, 1, 'a held record counts as pending')
  await emitter.send(rec('batch ok', 't1/n1'))
  assert.deepEqual(batches, [['other run'], ['accepted', 'batch ok']])
  await settle()
  assert.equal(accepted.state, 'ok')
  assert.equal(emitter.pending, 0)
})

test('a held record goes out on its own once holdMs passed, or at once when released', async () => {
  const batches: string[][] = []
  const emitter = new StatusEmitter({
    bus: { produce: async (rs) => void batches.push(rs.map((r) => r.value)) },
    clock: new TestClock(),
    log: new MemoryLogger(),
    holdMs: 20,
  })
  const sentAt = Date.now()
  await emitter.send(rec('alone'), true)
  assert.ok(Date.now() - sentAt >= 15, 'held for about holdMs')
  assert.deepEqual(batches, [['alone']])

  const slow = new StatusEmitter({
    bus: { produce: async (rs) => void batches.push(rs.map((r) => r.value)) },
    clock: new TestClock(),
    log: new MemoryLogger(),
    holdMs: 60_000,
  })
  const a = watch(slow.send(rec('a', 'k1'), true))
  const b = watch(slow.send(rec('b', 'k2'), true))
  slow.release('k2')
  await until(() => b.state === 'ok', 'the released record')
  assert.equal(a.state, 'pending', 'release(key) sends that key only')
  slow.release()
  await until(() => a.state === 'ok', 'every held record')
  assert.deepEqual(batches.slice(1), [['b'], ['a']])
})

test('holdMs 0 holds nothing; close() fails held records', async () => {
  const batches: string[][] = []
  const direct = new StatusEmitter({
    bus: { produce: async (rs) => void batches.push(rs.map((r) => r.value)) },
    clock: new TestClock(),
    log: new MemoryLogger(),
    holdMs: 0,
  })
  await direct.send(rec('x'), true)
  assert.deepEqual(batches, [['x']])

  const emitter = new StatusEmitter({
    bus: { produce: async (rs) => void batches.push(rs.map((r) => r.value)) },
    clock: new TestClock(),
    log: new MemoryLogger(),
    holdMs: 60_000,
  })
  const held = watch(emitter.send(rec('held'), true))
  emitter.close(new Error('killed'))
  await settle()
  assert.equal(held.state, 'failed')
  assert.equal(emitter.pending, 0)
  assert.deepEqual(batches, [['x']], 'nothing more is produced')
})

test('run state is written in the background, one write at a time, coalescing changes', async () => {
  const writes: { n: number; release: () => void; fail: (e: unknown) => void }[] = []
  let current = 0
  const log = new MemoryLogger()
  const saver = new WorkerStateSaver({
    store: {
      saveWorkerState: (doc: WorkerStateDoc) =>
        new Promise<boolean>((resolve, reject) => writes.push({ n: doc.updated_at_ms, release: () => resolve(true), fail: reject })),
    },
    log,
    snapshot: () => ({ worker_id: 'w', active_runs: [], updated_at_ms: current }),
    enabled: () => true,
  })
  current = 1
  saver.request()
  current = 2
  saver.request()
  current = 3
  saver.request()
  await settle()
  assert.deepEqual(writes.map((w) => w.n), [1], 'one write in flight')
  writes[0]!.fail(new Error('store down'))
  await settle()
  assert.deepEqual(writes.map((w) => w.n), [1, 3], 'changes made meanwhile: one more write, latest state')
  assert.ok(log.events().includes('worker.state_save_failed'))
  writes[1]!.release()
  await saver.flush()
  assert.equal(writes.length, 2)
  current = 4
  saver.request()
  await settle()
  writes[2]!.release()
  await saver.flush()
  assert.deepEqual(writes.map((w) => w.n), [1, 3, 4])
})

test('finishBy (a stopping worker): every batch, in flight or queued after, fails by that time instead of each retrying its own 30 s in turn', async () => {
  const clock = new TestClock()
  const batches: string[][] = []
  const emitter = brokerDown(clock, (rs) => {
    batches.push(rs.map((r) => r.value))
  })
  const a = watch(emitter.send(rec('a')))
  await settle()
  await clock.advance(5_000)
  await settle()
  emitter.finishBy(clock.now() + 3_000)
  const b = watch(emitter.send(rec('b', 't1/n2')))
  // Within the bound and one capped backoff (2 s) past it, both have failed: `a` was 25 s short
  // of its own window, and `b` would have waited for `a`, then retried 30 s of its own.
  for (let i = 0; i < 50; i++) {
    await clock.advance(100)
    await settle()
  }
  assert.equal(a.state, 'failed', 'the batch in flight stops retrying at the bound')
  assert.equal(b.state, 'failed', 'a batch queued after it fails by the bound too')
  assert.ok(batches.some((v) => v.includes('b')), 'b was tried at least once')
  emitter.finishBy(Number.POSITIVE_INFINITY)
  const c = watch(emitter.send(rec('c', 't1/n3')))
  await clock.advance(10_000)
  await settle()
  assert.equal(c.state, 'pending', 'without the bound a batch retries its own window again (a worker started again)')
})
