/**
 * `TaskView.cancelled` / `cancel_reason` say whether a cancel was requested. A task that stops
 * because a node failed (or its deadline passed) stops its other nodes the same way internally,
 * and its document says `coordinator.cancelled` (as the seed's does), but its view does not: a
 * client checking `cancelled` reported a plain failure as a user's cancel, and `flowkit status`
 * showed such a running task as "cancel requested".
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { PermanentError, type RoleHandler } from 'flowkit'
import { gate } from '../helpers/gate.ts'
import { startRuntime } from '../helpers/runtime.ts'

test('a task failed by its node is not shown as cancelled; a task the user cancelled is, with the reason', async () => {
  const started = gate()
  const handlers: Record<string, RoleHandler> = {
    bad: {
      async processBatch() {
        throw new PermanentError({ code: 'bad', message: 'x' })
      },
    },
    hold: {
      async processBatch(_b, ctx) {
        started.open()
        await ctx.sleep(60_000)
        return {}
      },
    },
  }
  const rt = await startRuntime({ handlers })
  try {
    const failed = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'a', type: 'bad' }, { node_id: 'b', type: 'hold' }] } })
    const f = await rt.coordinator.waitForTask(failed, { timeoutMs: 20_000 })
    assert.equal(f.status, 'failed')
    assert.match(f.error ?? '', /node a failed: bad/)
    assert.equal(f.cancelled, false)
    assert.equal(f.cancel_reason, null)
    assert.equal((await rt.store.getTask(failed))?.coordinator.cancelled, true, 'the document keeps the seed\'s flag')

    const cancelled = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'h', type: 'hold' }] } })
    await rt.coordinator.cancelTask(cancelled, { reason: 'no longer needed' })
    const c = await rt.coordinator.waitForTask(cancelled, { timeoutMs: 20_000 })
    assert.equal(c.status, 'cancelled')
    assert.equal(c.cancelled, true)
    assert.equal(c.cancel_reason, 'no longer needed')
  } finally {
    await rt.stop()
  }
})
