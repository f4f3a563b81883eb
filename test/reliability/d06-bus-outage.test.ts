/**
 * Defect 6a (issue 7): a short broker outage must not make a worker abandon its running node.
 * Every send of the worker (status events, BATCH_OK, TASK_DONE, heartbeats, ACCEPTED, announces)
 * is retried with backoff through an outage of several seconds, and the node then finishes with
 * exact metrics. The outage is injected by wrapping the worker's Bus (no driver is mocked), so the
 * same test runs on the memory bus and, with FLOWKIT_E2E_RUNTIME=real, on Kafka.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { type Bus, type BusRecord, ErrorCode, FlowkitError, MemoryLogger, type RoleHandler, Worker, protocol } from 'flowkit'
import { startRuntime } from '../helpers/runtime.ts'
import { gate } from '../helpers/gate.ts'
import { waitFor } from '../helpers/wait.ts'

interface Outage {
  bus: Bus
  /** Starts an outage of `ms` (wall clock): every produce fails until it is over. */
  begin(ms: number): void
  /** Starts an outage of `ms` at the first produce that carries a record of this kind. */
  armOn(kind: string, ms: number): void
  readonly down: boolean
  /** Payload kinds (status kind, announce kind) whose produce failed during the outage. */
  readonly failedKinds: Set<string>
  readonly failures: number
  /** Records produced successfully, by payload kind. */
  sent(kind: string): number
}

/** Wraps a bus so that its produce fails, as a broker outage makes it fail, for a while. */
function withOutage(inner: Bus): Outage {
  let until = 0
  let failures = 0
  const failedKinds = new Set<string>()
  const sent = new Map<string, number>()
  const armed = new Map<string, number>()
  const kindOf = (r: BusRecord): string => {
    const env = protocol.parseEnvelope(r.value)
    if (!env.ok) return '?'
    const p = env.value.payload
    return String(p['kind'] ?? p['reply'] ?? '?')
  }
  const bus = new Proxy(inner, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target) as unknown
      if (typeof value !== 'function') return value
      const fn = (value as (...args: unknown[]) => unknown).bind(target)
      if (prop !== 'produce') return fn
      return async (records: BusRecord[]) => {
        for (const r of records) {
          const ms = armed.get(kindOf(r))
          if (ms === undefined) continue
          armed.delete(kindOf(r))
          until = performance.now() + ms
        }
        if (performance.now() < until) {
          failures++
          for (const r of records) failedKinds.add(kindOf(r))
          throw new FlowkitError(ErrorCode.BusUnavailable, 'injected: broker unavailable', { retryable: true })
        }
        await fn(records)
        for (const r of records) sent.set(kindOf(r), (sent.get(kindOf(r)) ?? 0) + 1)
      }
    },
  })
  return {
    bus,
    begin(ms) {
      until = performance.now() + ms
    },
    armOn(kind, ms) {
      armed.set(kind, ms)
    },
    get down() {
      return performance.now() < until
    },
    failedKinds,
    get failures() {
      return failures
    },
    sent: (kind) => sent.get(kind) ?? 0,
  }
}

const OUTAGE_MS = 3000
const BATCHES = 12

test('defect 6a: a worker keeps its running node through a 3 s broker outage; the node finishes with exact metrics', async () => {
  const logger = new MemoryLogger()
  const rt = await startRuntime({ logger, coordinator: { leaseTtlSec: 60 } })
  const outage = withOutage(rt.bus)
  const inOutage = gate()
  let processed = 0
  const handler: RoleHandler = {
    async *iterBatches() {
      for (let i = 0; i < BATCHES; i++) yield { batch_uid: `b${i}`, payload: { items: [i, i, i] } }
    },
    async processBatch(batch, ctx) {
      if (batch.batch_uid === 'b4') {
        // The outage starts in the middle of the run, with the produce that carries this batch's
        // BATCH_OK (a heartbeat failing first would otherwise hold the BATCH_OKs back until the
        // broker is back: its batch is retried alone); the rest of the batches are handled during it.
        outage.armOn('BATCH_OK', OUTAGE_MS)
        inOutage.open()
      }
      ctx.throwIfCancelled()
      processed++
      return { metrics: { items: 3, batches: 1 }, meta: { i: batch.payload['items'] } }
    },
    async finalize() {
      return { metrics: { finalized: 1 } }
    },
  }
  const worker = new Worker({
    bus: outage.bus,
    store: rt.store,
    handlers: { step: handler },
    logger,
    config: { ...rt.workerBase, hbIntervalSec: 0.2, announceIntervalSec: 0.2, leaseTtlSec: 60 },
  })
  await worker.start()
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'step', retry_policy: { max: 1 } }] } })
    await inOutage.wait()
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 60_000 })
    const n = t.nodes.find((x) => x.node_id === 'n')!
    assert.equal(t.status, 'finished', `node ${n.status} @${n.attempt_epoch}`)
    assert.equal(n.attempt_epoch, 1, 'the node was not re-dispatched: the worker kept it')
    assert.equal(processed, BATCHES, 'each batch handled once')
    assert.equal(n.stats['items'], 3 * BATCHES)
    assert.equal(n.stats['batches'], BATCHES)
    assert.equal(n.stats['finalized'], 1)
    assert.ok(outage.failures > 0, 'the outage did make produce calls fail')
    assert.ok(outage.failedKinds.has('BATCH_OK'), 'BATCH_OK met the outage')
    assert.ok(outage.sent('TASK_HEARTBEAT') > 0, 'heartbeats went out')
    assert.ok(!logger.events().includes('worker.status_produce_failed'), 'no status event was given up')
    assert.ok(!logger.events().includes('worker.run_crashed'))
    // Announces keep going once the broker is back.
    const before = outage.sent('WORKER_ONLINE')
    await waitFor(() => outage.sent('WORKER_ONLINE') > before, {
      message: 'announces stopped after the outage',
    })
  } finally {
    await worker.stop()
    await rt.stop()
  }
})

test('defect 6a: TASK_ACCEPTED and TASK_DONE sent into a broker outage are retried until it ends; the node finishes once', async () => {
  const logger = new MemoryLogger()
  const rt = await startRuntime({ logger, coordinator: { leaseTtlSec: 60, acceptTimeoutSec: 60 } })
  const outage = withOutage(rt.bus)
  outage.armOn('TASK_ACCEPTED', 2000)
  outage.armOn('TASK_DONE', 2000)
  let processed = 0
  const worker = new Worker({
    bus: outage.bus,
    store: rt.store,
    handlers: { step: sourceOf(4, () => processed++) },
    logger,
    config: { ...rt.workerBase, hbIntervalSec: 0.2, leaseTtlSec: 60 },
  })
  await worker.start()
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'step', retry_policy: { max: 1 } }] } })
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 60_000 })
    const n = t.nodes.find((x) => x.node_id === 'n')!
    assert.equal(t.status, 'finished', `node ${n.status} @${n.attempt_epoch}`)
    assert.equal(n.attempt_epoch, 1)
    assert.equal(processed, 4)
    assert.equal(n.stats['items'], 4)
    assert.ok(outage.failedKinds.has('TASK_ACCEPTED') && outage.failedKinds.has('TASK_DONE'), [...outage.failedKinds].join(','))
    assert.ok(!logger.events().includes('worker.status_produce_failed'))
  } finally {
    await worker.stop()
    await rt.stop()
  }
})

function sourceOf(count: number, onBatch: () => void): RoleHandler {
  return {
    async *iterBatches() {
      for (let i = 0; i < count; i++) yield { batch_uid: `b${i}`, payload: {} }
    },
    async processBatch() {
      onBatch()
      return { metrics: { items: 1 } }
    },
  }
}
