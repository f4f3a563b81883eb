/**
 * A cancel's flag reaches the task document (what Python workers poll) in the background: the
 * flush does not wait for that snapshot. It did, and on FerretDB (a snapshot update takes 100+ ms
 * under load) a burst of cancels stalled every task of the coordinator for seconds.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { RoleHandler } from 'flowkit'
import { noopHandler, startRuntime } from '../helpers/runtime.ts'
import { gate } from '../helpers/gate.ts'
import { gatedSnapshots } from '../helpers/gated-snapshots.ts'
import { waitFor } from '../helpers/wait.ts'

test('a cancel does not hold the flush for its snapshot: other tasks finish and the cancel goes out while snapshot writes hang', async () => {
  const { store, inner, snapshots, held } = gatedSnapshots()
  const started = gate()
  const hold: RoleHandler = {
    async processBatch(_b, ctx) {
      started.open()
      await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }))
      ctx.throwIfCancelled()
      return {}
    },
  }
  const rt = await startRuntime({ store, handlers: { hold, step: noopHandler() }, worker: { concurrency: 4 } })
  try {
    const a = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'h', type: 'hold' }] } })
    await started.wait()
    await rt.coordinator.cancelTask(a, { reason: 'test' })
    const chain = { nodes: [{ node_id: 'x', type: 'step' }, { node_id: 'y', type: 'step', depends_on: ['x'] }] }
    const b = await rt.coordinator.createTask({ graph: chain })
    // With every snapshot write hanging: the other task runs to its end, the cancel reaches the run.
    assert.equal((await rt.coordinator.waitForTask(b, { timeoutMs: 5000 })).status, 'finished')
    assert.equal((await rt.coordinator.waitForTask(a, { timeoutMs: 5000 })).status, 'cancelled')
    await waitFor(() => held() > 0)
    assert.equal((await inner.getRunView(a, 'h'))?.cancelled, false, 'the document is not written yet')
    snapshots.open()
    await waitFor(async () => (await inner.getRunView(a, 'h'))?.cancelled === true)
  } finally {
    snapshots.open()
    await rt.stop()
  }
})
