/**
 * Issue 7, defect 10, end to end: a coordinator and a worker (each with its own KafkaBus, as two
 * processes would have) on a private broker that loses all its data while a task runs. Before the
 * fix every task stayed `running` for ever (the outbox and the consumers looped on "unknown
 * topic"); now the buses recreate the topics and resume:
 *
 * - a task submitted after the wipe finishes;
 * - a task whose node was running across the wipe: the events it had sent (accepted, heartbeats)
 *   were lost with the data, but the events sent after the wipe (its batch and FINISHED) reach
 *   the coordinator on the recreated status topic, and the task finishes too (at its first epoch
 *   when they arrive before the lease expires; otherwise the coordinator re-issues the node at a
 *   new epoch and it finishes then). The test reports which of the two happened.
 *
 * The store is in memory (the store does not lose anything here: only Kafka does).
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { MemoryLogger, MemoryStore, Worker } from 'flowkit'
import type { RoleHandler, TaskView } from 'flowkit'
import { KafkaBus } from '../../src/adapters/kafka/index.ts'
import { gate } from '../helpers/gate.ts'
import { privateKafkaSkip, startPrivateKafka } from '../helpers/private-kafka.ts'
import { sourceHandler, startRuntime } from '../helpers/runtime.ts'
import { waitFor } from '../helpers/wait.ts'

const DEADLINE_MS = 90_000
const summary = (t: TaskView): string => `task ${t.status}; ${t.nodes.map((n) => `${n.node_id}=${n.status}@${n.attempt_epoch}`).join(', ')}`

describe('D10 end to end: tasks finish after the broker lost its data', { skip: privateKafkaSkip(), timeout: 300_000 }, () => {
  it('a task submitted after the wipe finishes, and so does the one running across it', async (t) => {
    const kafka = await startPrivateKafka()
    t.after(() => kafka.stop())
    const logger = new MemoryLogger()
    const coordinatorBus = new KafkaBus({ brokers: kafka.brokers, clientId: 'd10-coordinator', logger })
    const workerBus = new KafkaBus({ brokers: kafka.brokers, clientId: 'd10-worker', logger })
    t.after(() => coordinatorBus.close())
    t.after(() => workerBus.close())

    const release = gate()
    // A failed assertion must not leave the held handler blocking the worker's stop.
    t.after(() => release.open())
    const entered = gate()
    const held: RoleHandler = {
      async *iterBatches() {
        yield { batch_uid: 'only', payload: { items: [1] } }
      },
      async processBatch() {
        entered.open()
        await release.wait()
        return { metrics: { count: 1 } }
      },
    }
    const rt = await startRuntime({
      bus: coordinatorBus,
      store: new MemoryStore(),
      logger,
      coordinator: { acceptTimeoutSec: 5, leaseTtlSec: 15 },
    })
    t.after(() => rt.stop())
    const worker = new Worker({
      bus: workerBus,
      store: rt.store,
      logger,
      handlers: { quick: sourceHandler(4, 2), held },
      config: { ...rt.workerBase, concurrency: 2, leaseTtlSec: 15, hbIntervalSec: 1 },
    })
    await worker.start()
    t.after(() => worker.stop())

    const before = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'q', type: 'quick' }] } })
    assert.equal((await rt.coordinator.waitForTask(before, { timeoutMs: DEADLINE_MS })).status, 'finished', 'the setup works before the wipe')

    const across = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'h', type: 'held' }] } })
    await entered.wait()

    await kafka.restart({ wipe: true })
    const restarted = performance.now()

    const after = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'q', type: 'quick' }] } })
    const afterView = await rt.coordinator.waitForTask(after, { timeoutMs: DEADLINE_MS })
    t.diagnostic(`task submitted after the wipe: ${summary(afterView)}, ${Math.round(performance.now() - restarted)} ms after the broker was back`)
    assert.equal(afterView.status, 'finished', summary(afterView))

    release.open()
    const acrossView = await rt.coordinator.waitForTask(across, { timeoutMs: DEADLINE_MS })
    t.diagnostic(`task running across the wipe: ${summary(acrossView)}`)
    assert.equal(acrossView.status, 'finished', summary(acrossView))

    await waitFor(() => logger.records.some((r) => r.event === 'bus.topics_recreated' && r.level === 'warn'), {
      timeoutMs: 1000,
      message: 'bus.topics_recreated logged',
    })
  })
})
