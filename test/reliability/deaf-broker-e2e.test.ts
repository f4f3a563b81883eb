/**
 * A broker restart longer than the lease, end to end on a private Kafka broker (a coordinator and
 * a worker, each with its own KafkaBus, as two processes would have): the worker is healthy all
 * along, but its heartbeats cannot reach the coordinator while the broker is down. Before the
 * coordinator knew it was cut off (hearing.ts) it judged the lease lost during the outage and ran
 * the node again at a new epoch once the broker was back (the worker-faults audit: a 20 s restart
 * with 10 s leases ran every node twice). Now it logs `coordinator.deaf`, judges no lease while
 * cut off, and the node ends at its first epoch, its handler run once.
 *
 * The store is in memory (only the broker goes away here).
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { MemoryLogger, MemoryStore, Worker } from 'flowkit'
import type { RoleHandler } from 'flowkit'
import { KafkaBus } from '../../src/adapters/kafka/index.ts'
import { gate } from '../helpers/gate.ts'
import { privateKafkaSkip, startPrivateKafka } from '../helpers/private-kafka.ts'
import { startRuntime } from '../helpers/runtime.ts'
import { waitFor } from '../helpers/wait.ts'

const LEASE_SEC = 10
/** Longer than a lease plus the judge's longest wait for the status backlog (max(5 s, lease)). */
const OUTAGE_MS = 2 * LEASE_SEC * 1000 + 4_000

describe('a broker restart longer than the lease, end to end', { skip: privateKafkaSkip(), timeout: 300_000 }, () => {
  it('a healthy worker\'s lease is not judged lost while the coordinator cannot hear it: the node runs once, at its first epoch', async (t) => {
    const kafka = await startPrivateKafka()
    t.after(() => kafka.stop())
    const logger = new MemoryLogger()
    const coordinatorBus = new KafkaBus({ brokers: kafka.brokers, clientId: 'deaf-coordinator', logger })
    const workerBus = new KafkaBus({ brokers: kafka.brokers, clientId: 'deaf-worker', logger })
    t.after(() => coordinatorBus.close())
    t.after(() => workerBus.close())

    const release = gate()
    t.after(() => release.open())
    const entered = gate()
    let runs = 0
    const held: RoleHandler = {
      async *iterBatches() {
        yield { batch_uid: 'only', payload: {} }
      },
      async processBatch() {
        runs++
        entered.open()
        await release.wait()
        return { metrics: { count: 1 } }
      },
    }
    const rt = await startRuntime({ bus: coordinatorBus, store: new MemoryStore(), logger, coordinator: { leaseTtlSec: LEASE_SEC } })
    t.after(() => rt.stop())
    const worker = new Worker({
      bus: workerBus,
      store: rt.store,
      logger,
      handlers: { held },
      config: { ...rt.workerBase, leaseTtlSec: LEASE_SEC, hbIntervalSec: 1 },
    })
    await worker.start()
    t.after(() => worker.stop())

    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'h', type: 'held' }] } })
    await entered.wait()
    await waitFor(async () => (await rt.coordinator.getTask(id))?.nodes[0]?.accepted_at_ms != null, { timeoutMs: 30_000, message: 'accepted' })

    await kafka.halt()
    const down = performance.now()
    await waitFor(() => performance.now() - down > OUTAGE_MS, { timeoutMs: OUTAGE_MS + 10_000, intervalMs: 200 })
    await kafka.start()
    const back = Date.now()
    // Heard again: a heartbeat sent after the restart renewed the lease (or the node moved on).
    await waitFor(async () => {
      const n = (await rt.coordinator.getTask(id))?.nodes[0]
      return (n?.last_event_at_ms ?? 0) > back || (n?.attempt_epoch ?? 1) > 1
    }, { timeoutMs: 90_000, intervalMs: 200, message: 'the worker heard again after the restart' })
    release.open()
    const view = await rt.coordinator.waitForTask(id, { timeoutMs: 90_000 })
    const node = view.nodes[0]
    t.diagnostic(`task ${view.status}; h=${node?.status}@${node?.attempt_epoch}; handler runs ${runs}`)
    assert.equal(view.status, 'finished')
    assert.equal(node?.attempt_epoch, 1, 'not handed to a new attempt')
    assert.equal(runs, 1, 'the handler ran once')
    assert.deepEqual(logger.records.filter((r) => r.event === 'node.lease_expired' || r.event === 'node.heartbeat_lost').map((r) => r.event), [], 'no lease judged lost')
    assert.ok(logger.records.some((r) => r.event === 'coordinator.deaf'), 'the coordinator knew it was cut off')
  })
})
