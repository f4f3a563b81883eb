import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import type { WorkerStateDoc } from '../../src/ports/store.ts'
import { WorkerStateSaver } from '../../src/worker/state.ts'
import { MemoryLogger } from '../../src/log.ts'
import { waitFor } from '../helpers/wait.ts'

function saver(minIntervalMs: number) {
  let version = 0
  const writes: { v: number; at: number }[] = []
  const s = new WorkerStateSaver({
    store: {
      async saveWorkerState(state: WorkerStateDoc) {
        writes.push({ v: state.updated_at_ms, at: performance.now() })
        return true
      },
    },
    log: new MemoryLogger(),
    snapshot: () => ({ worker_id: 'w', active_runs: [], updated_at_ms: version }),
    enabled: () => true,
    minIntervalMs,
  })
  return { s, writes, change: () => { version++; s.request() }, version: () => version }
}

describe('worker state saver', () => {
  test('a change after a quiet time is written at once', async () => {
    const { writes, change } = saver(10_000)
    change()
    await waitFor(() => writes.length === 1, { message: 'the first change was not written', timeoutMs: 2000 })
  })

  test('a burst of changes is written at most once per interval, and the last change is written', async () => {
    const { writes, change, version } = saver(100)
    for (let i = 0; i < 50; i++) {
      change()
      await new Promise((r) => setImmediate(r))
    }
    await waitFor(() => writes.at(-1)?.v === version(), { message: 'the last change was never written', timeoutMs: 5000 })
    assert.ok(writes.length < 10, `${writes.length} writes for 50 changes`)
    for (let i = 1; i < writes.length; i++) assert.ok((writes[i]?.at ?? 0) - (writes[i - 1]?.at ?? 0) >= 95, 'writes closer than the interval')
  })

  test('flush does not wait out the interval: it writes what is pending now', async () => {
    const { s, writes, change, version } = saver(60_000)
    change()
    await waitFor(() => writes.length === 1, { timeoutMs: 2000 })
    change()
    const t0 = performance.now()
    await s.flush()
    assert.equal(writes.at(-1)?.v, version())
    assert.ok(performance.now() - t0 < 5000, 'flush waited for the interval')
  })
})
