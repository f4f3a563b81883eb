/**
 * Defect 6d, worker half (issue 7): stopping a worker (a deploy) must not burn the node's retry
 * budget. The worker reports the runs it gives up as CANCELLED with the exact reason
 * `worker_stopping`, which the coordinator treats as a hand-back; every other cancel keeps its
 * own reason. What the worker sends is read at the bus (a wrapper records the produced events),
 * so this runs on memory and on real Kafka.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { type Bus, type BusRecord, MemoryLogger, type RoleHandler, Worker, protocol } from 'flowkit'
import { startRuntime } from '../helpers/runtime.ts'
import { gate } from '../helpers/gate.ts'
import { waitFor } from '../helpers/wait.ts'

/** Records the CANCELLED events a worker produces (node id → reasons). */
function recordCancels(inner: Bus) {
  const cancels: { node: string; reason: unknown }[] = []
  const bus = new Proxy(inner, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target) as unknown
      if (typeof value !== 'function') return value
      const fn = (value as (...args: unknown[]) => unknown).bind(target)
      if (prop !== 'produce') return fn
      return async (records: BusRecord[]) => {
        await fn(records)
        for (const r of records) {
          const env = protocol.parseEnvelope(r.value)
          if (env.ok && env.value.payload['kind'] === 'CANCELLED') cancels.push({ node: env.value.node_id, reason: env.value.payload['reason'] })
        }
      }
    },
  })
  return { bus, cancels }
}

test('defect 6d: Worker.stop() reports the runs it gives up as CANCELLED with reason worker_stopping (cooperative or past the grace)', async () => {
  const logger = new MemoryLogger()
  const rt = await startRuntime({ logger })
  const rec = recordCancels(rt.bus)
  const started = new Set<string>()
  const never = gate()
  const handler: RoleHandler = {
    async processBatch(_b, ctx) {
      started.add(ctx.nodeId)
      if (ctx.nodeId === 'stubborn') await never.wait() // ignores the cancel: abandoned after the grace
      else await never.wait(ctx.signal)
      return {}
    },
  }
  const worker = new Worker({ bus: rec.bus, store: rt.store, handlers: { step: handler }, logger, config: { ...rt.workerBase, concurrency: 2, cancelGraceMs: 200 } })
  await worker.start()
  try {
    await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'polite', type: 'step' }, { node_id: 'stubborn', type: 'step' }] } })
    await waitFor(() => started.size === 2, { timeoutMs: 30_000, message: 'both nodes never started' })
    await worker.stop()
    const byNode = Object.fromEntries(rec.cancels.map((c) => [c.node, c.reason]))
    assert.deepEqual(byNode, { polite: 'worker_stopping', stubborn: 'worker_stopping' })
    assert.equal(rec.cancels.length, 2, 'one CANCELLED per run')
  } finally {
    never.open()
    await worker.stop()
    await rt.stop()
  }
})

test('defect 6d: a run cancelled for another reason keeps that reason in its CANCELLED, even when the worker then stops', async () => {
  const logger = new MemoryLogger()
  const rt = await startRuntime({ logger })
  const rec = recordCancels(rt.bus)
  const started = new Set<string>()
  const release = gate()
  const handler: RoleHandler = {
    async processBatch(_b, ctx) {
      started.add(ctx.nodeId)
      await release.wait() // notices the cancel only once released
      ctx.throwIfCancelled()
      return {}
    },
  }
  const worker = new Worker({ bus: rec.bus, store: rt.store, handlers: { step: handler }, logger, config: { ...rt.workerBase, cancelGraceMs: 30_000 } })
  await worker.start()
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'step' }] } })
    await waitFor(() => started.has('n'), { timeoutMs: 30_000, message: 'the node never started' })
    await rt.coordinator.cancelTask(id, { reason: 'user asked' })
    await waitFor(() => logger.records.some((r) => r.event === 'node.cancel_requested' && r.fields['node_id'] === 'n'), {
      timeoutMs: 30_000,
      message: 'the cancel never reached the run',
    })
    const stopped = worker.stop()
    release.open()
    await stopped
    assert.equal(rec.cancels.length, 1)
    assert.notEqual(rec.cancels[0]?.reason, 'worker_stopping', 'not a hand-back: the node was cancelled')
    assert.equal(rec.cancels[0]?.reason, 'user asked', 'the reason the coordinator gave')
  } finally {
    release.open()
    await worker.stop()
    await rt.stop()
  }
})
