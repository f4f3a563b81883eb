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
    // Submissions through the store count as created where they are taken up (flowkit submit's
    // tasks were counted nowhere: created_total stayed 0 on a deployment fed by the CLI).
    const metrics = (await rt.coordinator.observability?.registry?.getMetricsAsJSON()) ?? []
    const value = (name: string): unknown => metrics.find((m) => m.name === name)?.values[0]?.value
    assert.equal(value('flowkit_tasks_created_total'), 2)
    assert.equal(value('flowkit_tasks_adopted_total'), 2)
  } finally {
    await rt.stop()
  }
})

test('an adopt request carrying its task inline is checked as a submission: a graph this coordinator refuses never runs', async () => {
  const log = new MemoryLogger()
  const rt = await startRuntime({ logger: log, handlers: { ok: noopHandler() }, coordinator: { sweepIntervalSec: 3600 } })
  try {
    const topic = rt.coordinator.config.topicTasks
    // A well-formed task as another coordinator would hand it over (built where "mystery.fn" exists).
    const forged = buildTask({ graph: { nodes: [{ node_id: 'f', type: 'coordinator_fn', io: { fn: 'mystery.fn' } }] } }, { coordinatorFns: new Set(['mystery.fn']), rejectUnknownInputAdapters: false }, Date.now())
    await sendControl(rt.bus, topic, { ...controlRequest('adopt', forged.id, Date.now()), task: JSON.parse(JSON.stringify(forged)) })
    // A valid one goes the same way and runs (the check rebuilds it: same graph, same id).
    const good = buildTask({ graph: { nodes: [{ node_id: 'a', type: 'ok' }, { node_id: 'b', type: 'ok', depends_on: ['a'] }] } }, { coordinatorFns: new Set(), rejectUnknownInputAdapters: false }, Date.now())
    await rt.store.createTasks([good])
    await sendControl(rt.bus, topic, { ...controlRequest('adopt', good.id, Date.now()), task: JSON.parse(JSON.stringify(good)) })
    assert.equal((await rt.coordinator.waitForTask(good.id, { timeoutMs: 15_000 })).status, 'finished')
    await waitFor(() => log.records.some((r) => r.event === 'control.inline_task_refused' && r.fields['task_id'] === forged.id))
    const refused = log.records.find((r) => r.event === 'control.inline_task_refused')
    assert.match(String(refused?.fields['error']), /unknown coordinator function "mystery.fn"/)
    assert.equal(await rt.store.getTask(forged.id), null)
    assert.deepEqual(await rt.store.readJournal([forged.id]), [])
    assert.equal(await rt.coordinator.getTask(forged.id), null)
  } finally {
    await rt.stop()
  }
})
