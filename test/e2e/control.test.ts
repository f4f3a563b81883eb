/**
 * Control requests (src/coordinator/control.ts): another process reaches the coordinator that owns
 * a task through the control topic — `adopt` loads a task written to the store at once (no wait
 * for the sweep), `cancel` cancels it; malformed requests are logged and skipped.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryLogger, type RoleHandler } from 'flowkit'
import { buildTask } from '../../src/coordinator/submit.ts'
import { controlRequest, sendControl } from '../../src/coordinator/control.ts'
import { noopHandler, startRuntime } from '../helpers/runtime.ts'
import { waitFor } from '../helpers/wait.ts'

const forever: RoleHandler = {
  async processBatch(_b, ctx) {
    await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }))
    return { metrics: {} }
  },
}

test('an adopt request loads a task another process wrote, without waiting for the sweep; a cancel request cancels it', async () => {
  const log = new MemoryLogger()
  // A sweep far away: only the request can make the coordinator pick the tasks up in time.
  const rt = await startRuntime({ logger: log, handlers: { ok: noopHandler(), slow: forever }, coordinator: { sweepIntervalSec: 3600 } })
  try {
    const topic = rt.coordinator.config.topicControl
    const opts = { coordinatorFns: new Set<string>(), rejectUnknownInputAdapters: false }
    const quick = buildTask({ graph: { nodes: [{ node_id: 'a', type: 'ok' }] } }, opts, Date.now())
    const slow = buildTask({ graph: { nodes: [{ node_id: 'a', type: 'slow' }] } }, opts, Date.now())
    await rt.store.createTasks([quick, slow])
    await sendControl(rt.bus, topic, { ...controlRequest('adopt', quick.id, Date.now()) })
    await sendControl(rt.bus, topic, { ...controlRequest('adopt', slow.id, Date.now()) })
    assert.equal((await rt.coordinator.waitForTask(quick.id, { timeoutMs: 15_000 })).status, 'finished')
    await waitFor(async () => (await rt.coordinator.getTask(slow.id))?.nodes[0]?.status === 'running', { message: 'slow task adopted and running' })
    await rt.bus.produce([{ topic, key: 'x', value: '{not json' }])
    await sendControl(rt.bus, topic, controlRequest('cancel', slow.id, Date.now(), 'stopped by the operator'))
    const t = await rt.coordinator.waitForTask(slow.id, { timeoutMs: 15_000 })
    assert.equal(t.status, 'cancelled')
    assert.ok(log.records.some((r) => r.event === 'control.malformed'), 'the malformed request was logged and skipped')
  } finally {
    await rt.stop()
  }
})
