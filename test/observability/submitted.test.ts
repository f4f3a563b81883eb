/**
 * A task submitted through the store (what `flowkit submit` and `flowkit ui` do: the document
 * written, a coordinator takes it up) is created as far as its span and its duration go: it got a
 * "resumed" span without its node count, and no task duration.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Coordinator, MemoryBus, MemoryStore, Worker } from 'flowkit'
import { buildTask } from '../../src/coordinator/submit.ts'
import { noopHandler } from '../helpers/runtime.ts'
import { waitFor } from '../helpers/wait.ts'
import { memoryTracing, sample, scrape } from './helpers.ts'

test('a task submitted through the store gets a created span (node count, from its creation time) and a task duration, as createTask\'s', async () => {
  const { provider, spans } = memoryTracing()
  const bus = new MemoryBus()
  const store = new MemoryStore()
  const c = new Coordinator({ bus, store, observability: { tracing: provider }, config: { sweepIntervalSec: 0.2 } })
  const w = new Worker({ bus, store, handlers: { s: noopHandler() } })
  await c.start()
  await w.start()
  try {
    const graph = { nodes: [{ node_id: 'a', type: 's' }, { node_id: 'b', type: 's', depends_on: ['a'] }] }
    const viaApi = await c.createTask({ graph })
    const createdAt = Date.now() - 5_000
    const doc = buildTask({ graph }, { coordinatorFns: new Set(), rejectUnknownInputAdapters: false }, createdAt)
    await store.createTasks([doc])
    assert.equal((await c.waitForTask(viaApi)).status, 'finished')
    await waitFor(async () => (await store.getTask(doc.id))?.status === 'finished', { message: 'the submitted task never finished' })
    await waitFor(() => spans('flowkit.task').length === 2, { message: 'task spans' })
    const span = spans('flowkit.task').find((s) => s.attributes['flowkit.task.id'] === doc.id)
    assert.equal(span?.attributes['flowkit.task.resumed'], undefined)
    assert.equal(span?.attributes['flowkit.task.nodes'], 2)
    assert.equal(span?.attributes['flowkit.task.status'], 'finished')
    assert.ok(span !== undefined && span.startTime[0] * 1000 + span.startTime[1] / 1e6 <= createdAt + 1, 'starts at its creation')
    const m = await scrape(c.metricsHandler())
    assert.equal(sample(m, 'flowkit_tasks_created_total'), 2)
    assert.equal(sample(m, 'flowkit_task_duration_seconds_count', { status: 'finished' }), 2)
  } finally {
    await w.stop()
    await c.stop()
  }
})
