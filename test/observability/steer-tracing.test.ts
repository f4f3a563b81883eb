/**
 * A steered START (signals topic, keyed by the worker it names) carries its node attempt's trace
 * context, as the START itself does: the run it begins is a child of the attempt span. A review
 * found it sent without one (the headers were looked up by the record's key, the worker's id), so
 * the steered runs were root spans.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { type BusRecord, Coordinator, MemoryBus, MemoryLogger, MemoryStore, type RoleHandler, Worker } from 'flowkit'
import { gate } from '../helpers/gate.ts'
import { waitFor } from '../helpers/wait.ts'
import { isStart, memoryTracing, parentSpanId, spyBus } from './helpers.ts'

test('a steered START carries its attempt trace context; its run is a child of the attempt span', async () => {
  const { provider, spans } = memoryTracing()
  const bus = new MemoryBus()
  const store = new MemoryStore()
  const produced: BusRecord[] = []
  const logger = new MemoryLogger()
  const observability = { tracing: provider, metrics: false } as const
  const release = gate()
  const h: RoleHandler = {
    async processBatch(_b, ctx) {
      if (ctx.taskId === 'long') await release.wait(ctx.signal)
      return {}
    },
  }
  const c = new Coordinator({ bus: spyBus(bus, produced), store, logger, observability, config: { schedulerTickSec: 0.05, steerAfterSec: 0.3, steerWarmupSec: 0 } })
  const workers = [1, 2].map(() => new Worker({ bus: spyBus(bus, produced), store, logger, observability, handlers: { x: h }, config: { concurrency: 1 } }))
  await c.start()
  for (const w of workers) await w.start()
  try {
    await waitFor(async () => (await c.listWorkers()).filter((w) => w.status === 'online').length === 2)
    await c.createTask({ id: 'long', graph: { nodes: [{ node_id: 'a', type: 'x' }] } })
    const ids: string[] = []
    for (let i = 0; i < 8; i++) ids.push(await c.createTask({ id: `s-${i}`, graph: { nodes: [{ node_id: 'a', type: 'x' }] } }))
    for (const id of ids) assert.equal((await c.waitForTask(id, { timeoutMs: 30_000 })).status, 'finished')
    const steeredIds = new Set(logger.records.filter((r) => r.event === 'node.steered').map((r) => r.fields['task_id'] as string))
    assert.ok(steeredIds.size > 0, 'some were steered')
    const steerRecs = produced.filter((r) => isStart(r) && r.value.includes('target_worker_id'))
    assert.ok(steerRecs.length > 0)
    for (const r of steerRecs) assert.ok(parentSpanId(r.headers) !== undefined, 'the steered START has a traceparent')
    await provider.forceFlush()
    const attempts = new Map(spans('flowkit.node.attempt').map((s) => [s.spanContext().spanId, s]))
    const steeredRuns = spans('flowkit.worker.run').filter((r) => steeredIds.has(r.attributes['flowkit.task.id'] as string) && r.attributes['flowkit.worker.id'] !== undefined)
    for (const run of steeredRuns) {
      const parent = run.parentSpanContext?.spanId
      assert.ok(parent !== undefined && attempts.has(parent), `the steered run of ${String(run.attributes['flowkit.task.id'])} is a child of an attempt span`)
    }
  } finally {
    release.open()
    for (const w of workers) await w.stop()
    await c.stop()
  }
})
