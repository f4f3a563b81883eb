/**
 * A store briefly out of reach (the steering audit restarted FerretDB for 5 s) is a warning in the
 * loops that try again at their next tick (the sweep, the outbox dispatcher); it was logged at
 * error level (ECONNREFUSED) though everything recovered. A failure that is not retryable stays
 * an error.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ErrorCode, FlowkitError, MemoryLogger, MemoryStore, type Store } from 'flowkit'
import { startRuntime } from '../helpers/runtime.ts'
import { overrideStore } from '../helpers/store-proxy.ts'
import { waitFor } from '../helpers/wait.ts'

async function levelsDuring(failure: () => Error): Promise<Record<string, string[]>> {
  const logger = new MemoryLogger()
  let failing = false
  const fail = (f: (...a: unknown[]) => unknown) => (...a: unknown[]) => (failing ? Promise.reject(failure()) : f(...a))
  const store: Store = overrideStore(new MemoryStore(), { listTaskIds: fail, outboxClaimDue: fail })
  const rt = await startRuntime({ store, logger, coordinator: { sweepIntervalSec: 0.2, outboxDispatchTickSec: 0.05 } })
  try {
    failing = true
    const seen = (e: string): boolean => logger.records.some((r) => r.event === e)
    await waitFor(() => seen('coordinator.sweep_failed') && seen('outbox.dispatch_error'), { timeoutMs: 20_000, message: 'both loops failed' })
    failing = false
    const out: Record<string, string[]> = {}
    for (const r of logger.records) if (r.event === 'coordinator.sweep_failed' || r.event === 'outbox.dispatch_error') out[r.event] = [...new Set([...(out[r.event] ?? []), r.level])]
    return out
  } finally {
    failing = false
    await rt.stop()
  }
}

test('the sweep and the outbox log a retryable store failure (an outage) as a warning', async () => {
  const levels = await levelsDuring(() => new FlowkitError(ErrorCode.StoreUnavailable, 'connect ECONNREFUSED 127.0.0.1:27017', { retryable: true }))
  assert.deepEqual(levels, { 'coordinator.sweep_failed': ['warn'], 'outbox.dispatch_error': ['warn'] })
})

test('a failure that is not retryable stays an error', async () => {
  const levels = await levelsDuring(() => new Error('a bug'))
  assert.deepEqual(levels, { 'coordinator.sweep_failed': ['error'], 'outbox.dispatch_error': ['error'] })
})
