/**
 * Defect 6e, worker half (issue 7): leases must not depend on the worker's clock. The worker
 * states its lease as a duration (every TASK_ACCEPTED / TASK_HEARTBEAT has
 * `lease_deadline_ts_ms - ts_ms` = leaseTtlSec exactly, from one reading of its clock), and nothing
 * in the worker expires or refuses work by comparing its clock with a coordinator's timestamp (a
 * cancel signal's `deadline_ts_ms` is not used). The worker here runs on a clock hours away from
 * the coordinator's, which also moves on at every reading (as a busy machine's clock does between
 * two reads). The events are read at the bus, so this runs on memory and on real Kafka.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { type Bus, type BusRecord, type Clock, MemoryLogger, type RoleHandler, SystemClock, Worker, protocol } from 'flowkit'
import { startRuntime } from '../helpers/runtime.ts'
import { gate } from '../helpers/gate.ts'
import { waitFor } from '../helpers/wait.ts'

/** A system clock `offsetMs` away, that moves 1 ms on every reading. */
function skewedClock(offsetMs: number): Clock {
  const sys = new SystemClock()
  let reads = 0
  return { now: () => sys.now() + offsetMs + reads++, sleep: (ms, signal) => sys.sleep(ms, signal) }
}

/** Records the lease events (and CANCELLED) a worker produces. */
function recordEvents(inner: Bus) {
  const events: { kind: string; node: string; ts: number; payload: Record<string, unknown> }[] = []
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
          if (!env.ok || typeof env.value.payload['kind'] !== 'string') continue
          events.push({ kind: env.value.payload['kind'], node: env.value.node_id, ts: env.value.ts_ms, payload: env.value.payload })
        }
      }
    },
  })
  return { bus, events }
}

const HOUR = 3600_000
const LEASE_SEC = 2

describe('defect 6e: a worker whose clock is hours off', () => {
  for (const offset of [-6 * HOUR, 6 * HOUR]) {
    const label = offset < 0 ? 'behind' : 'ahead'
    test(`defect 6e: a worker ${label} by 6 h states its lease as a duration, keeps a node past several lease lengths and honours a cancel`, async () => {
      const logger = new MemoryLogger()
      const rt = await startRuntime({ logger })
      const rec = recordEvents(rt.bus)
      const heartbeats = (node: string) => rec.events.filter((e) => e.kind === 'TASK_HEARTBEAT' && e.node === node).length
      const cancelledStarted = gate()
      const handler: RoleHandler = {
        async processBatch(_b, ctx) {
          if (ctx.nodeId === 'long') {
            // Runs for more than twice its lease: only heartbeats keep it.
            await waitFor(() => heartbeats('long') >= 20, { timeoutMs: 60_000, message: 'heartbeats stopped' })
          } else {
            cancelledStarted.open()
            await ctx.sleep(120_000) // ends when the run is cancelled
          }
          return { metrics: { count: 1 } }
        },
      }
      const worker = new Worker({
        bus: rec.bus,
        store: rt.store,
        clock: skewedClock(offset),
        logger,
        handlers: { step: handler },
        config: { ...rt.workerBase, leaseTtlSec: LEASE_SEC, hbIntervalSec: 0.25, cancelGraceMs: 60_000 },
      })
      await worker.start()
      try {
        const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'long', type: 'step' }] } })
        const t = await rt.coordinator.waitForTask(id, { timeoutMs: 60_000 })
        const n = t.nodes.find((x) => x.node_id === 'long')!
        assert.equal(t.status, 'finished')
        assert.equal(n.attempt_epoch, 1, 'the lease never expired: the node was not re-dispatched')
        const leases = rec.events.filter((e) => e.kind === 'TASK_ACCEPTED' || e.kind === 'TASK_HEARTBEAT')
        assert.ok(leases.length >= 21)
        for (const e of leases) {
          assert.equal((e.payload['lease_deadline_ts_ms'] as number) - e.ts, LEASE_SEC * 1000, `${e.kind}: the lease is stated as its length`)
        }

        // A cancel: the coordinator's signal carries a deadline on its own clock, hours away from
        // the worker's; the worker cancels at once all the same (and its grace is far longer).
        const c = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'cancelled', type: 'step' }] } })
        await cancelledStarted.wait()
        await rt.coordinator.cancelTask(c, { reason: 'user asked' })
        await waitFor(() => rec.events.some((e) => e.kind === 'CANCELLED' && e.node === 'cancelled'), {
          timeoutMs: 30_000,
          message: 'the worker never cancelled the run',
        })
        const tc = await rt.coordinator.waitForTask(c, { timeoutMs: 30_000 })
        assert.equal(tc.status, 'cancelled')
      } finally {
        await worker.stop()
        await rt.stop()
      }
    })
  }
})
