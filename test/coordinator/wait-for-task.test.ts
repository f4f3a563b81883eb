/**
 * `Coordinator.waitForTask`'s own edges: a `timeoutMs` that is not a number is refused (NaN made
 * every poll a 1 ms timer, for ever), and a wait pending when the coordinator stops rejects with
 * CLOSED at once (it waited out its whole timeout, 60 s by default), as `watch` does. A wait
 * begun after the stop still reads the store.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Coordinator, ErrorCode, MemoryBus, MemoryStore, isFlowkitError } from 'flowkit'
import { holdingHandler, startRuntime } from '../helpers/runtime.ts'

test('waitForTask refuses a timeoutMs that is not a number (NaN, a string)', async () => {
  const c = new Coordinator({ bus: new MemoryBus(), store: new MemoryStore() })
  await c.start()
  try {
    const id = await c.createTask({ graph: { nodes: [{ node_id: 'n', type: 'nobody' }] } })
    for (const bad of [Number.NaN, '5' as unknown as number]) {
      await assert.rejects(c.waitForTask(id, { timeoutMs: bad }), (err: unknown) => isFlowkitError(err, ErrorCode.Config) && /timeoutMs must be a number of milliseconds/.test((err as Error).message))
    }
    await assert.rejects(c.waitForTask(id, { timeoutMs: 0 }), (err: unknown) => isFlowkitError(err, ErrorCode.Timeout))
  } finally {
    await c.stop()
  }
})

test('a waitForTask pending when the coordinator stops rejects with CLOSED at once; one begun after the stop reads the store', async () => {
  const { handler: hold, started } = holdingHandler()
  const rt = await startRuntime({ handlers: { hold } })
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'hold' }] } })
    await started.wait()
    // Many waits at once: all woken by the stop.
    const outcomes = Array.from({ length: 50 }, () =>
      rt.coordinator.waitForTask(id, { timeoutMs: 120_000 }).then(
        () => 'resolved',
        (err: unknown) => (isFlowkitError(err, ErrorCode.Closed) ? 'closed' : `rejected ${String(err)}`),
      ),
    )
    const stoppedAt = performance.now()
    await rt.coordinator.stop()
    assert.deepEqual(new Set(await Promise.all(outcomes)), new Set(['closed']))
    assert.ok(performance.now() - stoppedAt < 30_000, 'not at its timeout')
    // After the stop: the store is read (the task is still running there), up to the timeout.
    await assert.rejects(rt.coordinator.waitForTask(id, { timeoutMs: 300 }), (err: unknown) => isFlowkitError(err, ErrorCode.Timeout))
  } finally {
    await rt.stop()
  }
})
