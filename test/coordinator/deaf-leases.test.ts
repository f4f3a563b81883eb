/**
 * A coordinator that cannot hear its workers does not judge their leases. When its own store
 * writes fail (a store outage: the status events wait behind the flush that retries them) or its
 * bus membership is not confirmed (a broker restart), the heartbeats that would renew a lease do
 * not reach it, and a lease that runs out says nothing about its holder. Found by the
 * worker-faults audit on real Kafka + FerretDB: a 20 s store or broker outage with 10 s leases
 * expired every running node and ran all of them again although their workers were fine.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { type Bus, ErrorCode, FlowkitError, MemoryBus, MemoryLogger, MemoryStore, type RoleHandler, type SubscribeOptions, type Subscription } from 'flowkit'
import { startRuntime } from '../helpers/runtime.ts'
import { overrideMethods, overrideStore } from '../helpers/store-proxy.ts'
import { waitFor } from '../helpers/wait.ts'

test('a store outage on the coordinator longer than the lease does not expire a healthy worker\'s lease: the node runs once', async () => {
  const logger = new MemoryLogger()
  let failing = false
  const fail = (f: (...a: unknown[]) => unknown) => (...a: unknown[]) =>
    failing ? Promise.reject(new FlowkitError(ErrorCode.StoreUnavailable, 'store down (test)', { retryable: true })) : f(...a)
  // The coordinator's writes fail; the worker's calls (artifacts, claims) go through.
  const store = overrideStore(new MemoryStore(), { appendJournal: fail, writeSnapshot: fail, insertBatchMetrics: fail })
  let runs = 0
  let release = false
  const slow: RoleHandler = {
    async *iterBatches() {
      runs++
      for (let i = 0; !release; i++) {
        yield { batch_uid: `b${i}`, payload: {} }
        await new Promise((r) => setTimeout(r, 100))
      }
    },
    async processBatch() {
      return { metrics: { n: 1 } }
    },
  }
  const rt = await startRuntime({
    bus: new MemoryBus(),
    store,
    logger,
    coordinator: { leaseTtlSec: 2, heartbeatSoftSec: 1, heartbeatHardSec: 3 },
    worker: { leaseTtlSec: 2, hbIntervalSec: 0.5 },
    handlers: { slow },
  })
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'slow' }] } })
    await waitFor(async () => (await rt.coordinator.getTask(id))?.nodes[0]?.accepted_at_ms != null, { message: 'accepted' })
    failing = true
    const outageStart = performance.now()
    // More than three lease lengths and twice the hard heartbeat limit without a write, once the
    // coordinator has noticed it is cut off.
    await waitFor(() => performance.now() - outageStart > 6_500 && logger.records.some((r) => r.event === 'coordinator.deaf'), { timeoutMs: 20_000, message: 'the coordinator noticed it was cut off' })
    failing = false
    const outageEnd = Date.now()
    // The worker renews its lease once the coordinator hears it again; then the run ends.
    await waitFor(async () => ((await rt.coordinator.getTask(id))?.nodes[0]?.last_event_at_ms ?? 0) > outageEnd + 2_500 || runs > 1, { timeoutMs: 20_000, message: 'reports heard again after the outage' })
    release = true
    const view = await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })
    assert.equal(view.status, 'finished')
    assert.equal(runs, 1, 'the handler ran once')
    assert.equal(view.nodes[0]?.attempt_epoch, 1, 'not handed to a new attempt')
    assert.deepEqual(logger.records.filter((r) => r.event === 'node.lease_expired' || r.event === 'node.heartbeat_lost').map((r) => r.event), [], 'no lease judged lost')
    assert.ok(logger.records.some((r) => r.event === 'coordinator.hearing_again'))
  } finally {
    failing = false
    release = true
    await rt.stop()
  }
})

/** A broker outage as the coordinator and the workers see it (memory bus): records held, membership unconfirmed. */
class BrokerOutage {
  down = false
  since = 0
  #open: () => void = () => undefined
  #held: Promise<void> = Promise.resolve()

  start(): void {
    this.#held = new Promise<void>((r) => (this.#open = r))
    this.since = Date.now()
    this.down = true
  }

  end(): void {
    this.down = false
    this.#open()
  }

  async #gate(): Promise<void> {
    if (this.down) await this.#held
  }

  /** What the coordinator sees: its sends and deliveries wait, its membership is not confirmed. */
  coordinator = (bus: Bus): Bus =>
    overrideMethods(bus, {
      produce: (f) => async (...a: unknown[]) => {
        await this.#gate()
        return f(...a)
      },
      subscribe: (f) => async (...a: unknown[]) => {
        const options = { ...(a[0] as SubscribeOptions) }
        const batch = options.batchHandler
        if (batch) {
          options.batchHandler = async (msgs) => {
            await this.#gate()
            return batch(msgs)
          }
        }
        const one = options.handler
        if (one) {
          options.handler = async (m) => {
            await this.#gate()
            return one(m)
          }
        }
        const sub = (await f(options)) as Subscription
        return overrideMethods(sub, { confirmedAt: (g) => () => (this.down ? this.since : g()) })
      },
    })

  /** What a worker sees: a producer buffers and retries while the broker is away (its records go out after). */
  worker = (bus: Bus): Bus =>
    overrideMethods(bus, {
      produce: (f) => async (...a: unknown[]) => {
        await this.#gate()
        return f(...a)
      },
    })
}

test('a broker outage longer than the lease (the coordinator\'s membership unconfirmed) does not expire a healthy worker\'s lease: the node runs once', async () => {
  const logger = new MemoryLogger()
  const outage = new BrokerOutage()
  let runs = 0
  let release = false
  const slow: RoleHandler = {
    async *iterBatches() {
      runs++
      for (let i = 0; !release; i++) {
        yield { batch_uid: `b${i}`, payload: {} }
        await new Promise((r) => setTimeout(r, 100))
      }
    },
    async processBatch() {
      return { metrics: { n: 1 } }
    },
  }
  const rt = await startRuntime({
    bus: new MemoryBus(),
    store: new MemoryStore(),
    logger,
    coordinator: { leaseTtlSec: 2, heartbeatSoftSec: 1, heartbeatHardSec: 3, ownershipConfirmSec: 1 },
    worker: { leaseTtlSec: 2, hbIntervalSec: 0.5 },
    handlers: { slow },
    coordinatorBus: outage.coordinator,
    workerBus: outage.worker,
  })
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'slow' }] } })
    await waitFor(async () => (await rt.coordinator.getTask(id))?.nodes[0]?.accepted_at_ms != null, { message: 'accepted' })
    outage.start()
    const outageStart = performance.now()
    await waitFor(() => performance.now() - outageStart > 6_500, { timeoutMs: 20_000 })
    outage.end()
    const outageEnd = Date.now()
    await waitFor(async () => ((await rt.coordinator.getTask(id))?.nodes[0]?.last_event_at_ms ?? 0) > outageEnd + 2_500 || runs > 1, { timeoutMs: 20_000, message: 'reports heard again after the outage' })
    release = true
    const view = await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })
    assert.equal(view.status, 'finished')
    assert.equal(runs, 1, 'the handler ran once')
    assert.equal(view.nodes[0]?.attempt_epoch, 1, 'not handed to a new attempt')
    assert.deepEqual(logger.records.filter((r) => r.event === 'node.lease_expired' || r.event === 'node.heartbeat_lost').map((r) => r.event), [], 'no lease judged lost')
    assert.ok(logger.records.some((r) => r.event === 'coordinator.deaf' && r.fields?.['why'] === 'bus membership not confirmed'))
  } finally {
    outage.end()
    release = true
    await rt.stop()
  }
})
