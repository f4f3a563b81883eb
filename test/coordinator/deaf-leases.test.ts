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
import { type RuntimeOptions, startRuntime } from '../helpers/runtime.ts'
import { overrideMethods, overrideStore } from '../helpers/store-proxy.ts'
import { waitFor } from '../helpers/wait.ts'

/** What both outages do to the coordinator, and how it must come through them. */
interface Outage {
  start(): void
  end(): void
}

/**
 * One node of a handler that streams batches until released runs; once it is accepted, `outage`
 * lasts more than three lease lengths (2 s) and twice the hard heartbeat limit (or `outageMs`), and ends once the
 * coordinator noticed it was cut off; the run is released once the coordinator has heard its
 * worker for a lease length again. Returns how many times the handler ran and the task's view.
 */
async function throughOutage(outage: Outage, logger: MemoryLogger, options: Pick<RuntimeOptions, 'store' | 'coordinatorBus' | 'workerBus'> & { coordinator?: Record<string, unknown>; outageMs?: number }) {
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
    ...options,
    logger,
    coordinator: { leaseTtlSec: 2, heartbeatSoftSec: 1, heartbeatHardSec: 3, ...options.coordinator },
    worker: { leaseTtlSec: 2, hbIntervalSec: 0.5 },
    handlers: { slow },
  })
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'slow' }] } })
    await waitFor(async () => (await rt.coordinator.getTask(id))?.nodes[0]?.accepted_at_ms != null, { message: 'accepted' })
    outage.start()
    const outageStart = performance.now()
    await waitFor(() => performance.now() - outageStart > (options.outageMs ?? 6_500) && logger.records.some((r) => r.event === 'coordinator.deaf'), { timeoutMs: 20_000, message: 'the coordinator noticed it was cut off' })
    outage.end()
    const outageEnd = Date.now()
    // The worker renews its lease once the coordinator hears it again; then the run ends.
    await waitFor(async () => ((await rt.coordinator.getTask(id))?.nodes[0]?.last_event_at_ms ?? 0) > outageEnd + 2_500 || runs > 1, { timeoutMs: 20_000, message: 'reports heard again after the outage' })
    release = true
    return { runs, view: await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 }) }
  } finally {
    outage.end()
    release = true
    await rt.stop()
  }
}

function assertRanOnce(logger: MemoryLogger, out: Awaited<ReturnType<typeof throughOutage>>, why: string): void {
  assert.equal(out.view.status, 'finished')
  assert.equal(out.runs, 1, 'the handler ran once')
  assert.equal(out.view.nodes[0]?.attempt_epoch, 1, 'not handed to a new attempt')
  assert.deepEqual(logger.records.filter((r) => r.event === 'node.lease_expired' || r.event === 'node.heartbeat_lost').map((r) => r.event), [], 'no lease judged lost')
  assert.ok(logger.records.some((r) => r.event === 'coordinator.deaf' && r.fields?.['why'] === why))
  assert.ok(logger.records.some((r) => r.event === 'coordinator.hearing_again'))
}

test('a store outage on the coordinator longer than the lease does not expire a healthy worker\'s lease: the node runs once', async () => {
  const logger = new MemoryLogger()
  let failing = false
  const fail = (f: (...a: unknown[]) => unknown) => (...a: unknown[]) =>
    failing ? Promise.reject(new FlowkitError(ErrorCode.StoreUnavailable, 'store down (test)', { retryable: true })) : f(...a)
  // The coordinator's writes fail; the worker's calls (artifacts, claims) go through.
  const store = overrideStore(new MemoryStore(), { appendJournal: fail, writeSnapshot: fail, insertBatchMetrics: fail })
  const outage: Outage = {
    start() {
      failing = true
    },
    end() {
      failing = false
    },
  }
  assertRanOnce(logger, await throughOutage(outage, logger, { store }), 'store writes failing')
})

test('a coordinator store that hangs (calls neither answer nor fail) longer than the lease does not expire a healthy worker\'s lease', async () => {
  const logger = new MemoryLogger()
  let hung: Promise<void> | null = null
  let answer: () => void = () => undefined
  const hang = (f: (...a: unknown[]) => unknown) => async (...a: unknown[]) => {
    if (hung !== null) await hung
    return f(...a)
  }
  // A frozen server (SIGSTOP): the coordinator's writes wait for it; the worker's calls go through.
  const store = overrideStore(new MemoryStore(), { appendJournal: hang, writeSnapshot: hang, insertBatchMetrics: hang })
  const outage: Outage = {
    start() {
      hung = new Promise<void>((r) => (answer = r))
    },
    end() {
      hung = null
      answer()
    },
  }
  // Longer than a lease after the judge's longest wait for the status backlog (5 s): the judge
  // gives up waiting for events held behind the hung flush while the store still hangs.
  assertRanOnce(logger, await throughOutage(outage, logger, { store, outageMs: 10_000 }), 'store not answering')
})

/** A broker outage as the coordinator and the workers see it (memory bus): records held, membership unconfirmed. */
class BrokerOutage implements Outage {
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
  const out = await throughOutage(outage, logger, { coordinatorBus: outage.coordinator, workerBus: outage.worker, coordinator: { ownershipConfirmSec: 1 } })
  assertRanOnce(logger, out, 'bus membership not confirmed')
})
