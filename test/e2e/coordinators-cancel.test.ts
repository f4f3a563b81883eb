/**
 * Cancel requests with several coordinators (docs/scaling.md, src/coordinator/cancel-request.ts):
 * a request is written into the task before it is acknowledged and applied once the task's queued
 * events are in, so it neither holds the owners' partition it came from nor gets lost when the
 * task moves (a coordinator killed, stopped, or joined) before it was applied.
 * Runs on the memory runtime and again on real Kafka + the MongoDB-protocol server.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { Coordinator, type Bus, type BusRecord, type RoleHandler, type Store } from 'flowkit'
import { sendControl, controlRequest } from '../../src/coordinator/control.ts'
import { startRuntime, type Runtime } from '../helpers/runtime.ts'
import { overrideStore } from '../helpers/store-proxy.ts'
import { type Gate, gate } from '../helpers/gate.ts'
import { idOn } from '../helpers/task-ids.ts'
import { waitFor } from '../helpers/wait.ts'

const ONE = { nodes: [{ node_id: 'a', type: 'step' }] }

/** Two batches counting 1 each; a task's handler waits at its first batch until its gate opens. */
function heldHandler(gates: Map<string, Gate>, seen: Map<string, number>): RoleHandler {
  return {
    async *iterBatches() {
      yield { batch_uid: 'b0', payload: {} }
      yield { batch_uid: 'b1', payload: {} }
    },
    async processBatch(batch, ctx) {
      const key = `${ctx.taskId}/${ctx.nodeId}/${ctx.attemptEpoch}/${batch.batch_uid}`
      seen.set(key, (seen.get(key) ?? 0) + 1)
      await gates.get(ctx.taskId)?.wait(ctx.signal)
      return { metrics: { count: 1 } }
    },
  }
}

function newCoordinator(rt: Runtime, store: Store = rt.store): Coordinator {
  return new Coordinator({ bus: rt.bus, store, config: { ...rt.coordinatorBase, discoveryWindowSec: 0.5 } })
}

/**
 * A workers' bus that, while `on`, sends the status records of `taskId` to the owners' topic as
 * another coordinator forwards them (`{op: 'status', task_id, topic, value}`): as if a coordinator
 * that does not own the task had read them from the status topic.
 */
function forwardingBus(bus: Bus): { bus: Bus; forward(taskId: string, ownersTopic: string): void } {
  let only: string | null = null
  let ownersTopic = ''
  const wrapped: Bus = {
    ensureTopics: (t) => bus.ensureTopics(t),
    partitionCount: (t) => bus.partitionCount(t),
    subscribe: (o) => bus.subscribe(o),
    close: () => bus.close(),
    produce: (records: BusRecord[]) =>
      bus.produce(
        records.map((r) => {
          if (only === null || !r.topic.endsWith('status.step.v1') || !r.value.includes(`"task_id":"${only}"`)) return r
          return { topic: ownersTopic, key: only, value: JSON.stringify({ op: 'status', task_id: only, topic: r.topic, value: r.value, ...(r.headers === undefined ? {} : { headers: r.headers }) }) }
        }),
      ),
  }
  return {
    bus: wrapped,
    forward: (taskId, topic) => {
      only = taskId
      ownersTopic = topic
    },
  }
}

/** A bus whose owners' subscriptions report when a batch holding a cancel request is handed to them. */
function watchedBus(bus: Bus): { bus: Bus; delivered: Promise<void> } {
  let seen!: () => void
  const delivered = new Promise<void>((r) => {
    seen = r
  })
  const wrapped: Bus = {
    ensureTopics: (t) => bus.ensureTopics(t),
    partitionCount: (t) => bus.partitionCount(t),
    produce: (r) => bus.produce(r),
    close: () => bus.close(),
    subscribe: (o) => {
      const h = o.batchHandler
      if (o.name !== 'coordinator-owners' || h === undefined) return bus.subscribe(o)
      return bus.subscribe({
        ...o,
        batchHandler: (msgs) => {
          if (msgs.some((m) => m.value.includes('"op":"cancel"'))) seen()
          return h(msgs)
        },
      })
    },
  }
  return { bus: wrapped, delivered }
}

describe('cancel requests with several coordinators', () => {
  test('a cancel request waiting for its task recovery does not hold the reports forwarded behind it: a recovered node is finished with all its metrics', async () => {
    const gates = new Map<string, Gate>()
    const seen = new Map<string, number>()
    let fwd: ReturnType<typeof forwardingBus> | null = null
    const rt = await startRuntime({
      handlers: { step: heldHandler(gates, seen) },
      worker: { concurrency: 8 },
      coordinator: { discoveryWindowSec: 0.5 },
      workerBus: (b) => {
        fwd = forwardingBus(b)
        return fwd.bus
      },
    })
    const ownersTopic = rt.coordinatorBase.topicTasks as string
    let heir: Coordinator | null = null
    try {
      // Two tasks on one owners' partition: the one to cancel, and one whose reports come behind.
      const count = rt.coordinator.ownership.of
      const doomed = idOn('doomed', 3, count)
      const ok = idOn('ok', 3, count)
      gates.set(doomed, gate())
      gates.set(ok, gate())
      await rt.coordinator.createTask({ id: doomed, graph: ONE })
      await rt.coordinator.createTask({ id: ok, graph: ONE })
      await waitFor(async () => seen.has(`${doomed}/a/1/b0`) && seen.has(`${ok}/a/1/b0`))
      await waitFor(async () => (await rt.coordinator.getTask(ok))?.nodes.find((n) => n.node_id === 'a')?.lease.worker_id != null)
      await rt.coordinator.kill()
      // While no coordinator runs: a cancel of the first task; then the second one's node ends and
      // its reports reach the owners' topic behind the cancel (read and sent on by another coordinator).
      await sendControl(rt.bus, ownersTopic, controlRequest('cancel', doomed, Date.now(), 'stop it'), count)
      if (fwd === null) throw new Error('no worker bus')
      ;(fwd as ReturnType<typeof forwardingBus>).forward(ok, ownersTopic)
      gates.get(ok)?.open()
      await waitFor(async () => (await rt.store.getArtifact(ok, 'a', null))?.status === 'complete')
      // The new owner's first list of active tasks misses the task to cancel (submitted just then,
      // say): the cancel request loads it, and its recovery ends after the other task's.
      let listed = false
      const store = overrideStore(rt.store, {
        listTaskIds: (orig) => async (...args) => {
          const ids = (await orig(...args)) as string[]
          if (listed) return ids
          listed = true
          return ids.filter((id) => id !== doomed)
        },
        getTask: (orig) => async (...args) => {
          if (args[0] === doomed) await new Promise((r) => setTimeout(r, 300))
          return orig(...args)
        },
      })
      heir = newCoordinator(rt, store)
      await heir.start()
      const t = await heir.waitForTask(ok, { timeoutMs: 30_000 })
      assert.equal(t.status, 'finished')
      assert.deepEqual(t.nodes[0]?.stats, { count: 2 }, 'the reports forwarded behind the cancel are counted')
      const c = await heir.waitForTask(doomed, { timeoutMs: 30_000 })
      assert.equal(c.status, 'cancelled')
      assert.equal(c.nodes[0]?.status, 'cancelled')
    } finally {
      for (const g of gates.values()) g.open()
      await heir?.stop()
      await rt.stop()
    }
  })

  for (const how of ['another coordinator joins', 'it is killed', 'it stops'] as const) {
    test(`cancel requests taken by a coordinator that is recovering its tasks are applied when ${how} before it applied them`, async () => {
      const gates = new Map<string, Gate>()
      const seen = new Map<string, number>()
      const rt = await startRuntime({ handlers: { step: heldHandler(gates, seen) }, worker: { concurrency: 16 }, coordinator: { discoveryWindowSec: 0.5 } })
      const started: Coordinator[] = []
      try {
        // One task per owners' partition, each node held on the worker.
        const count = rt.coordinator.ownership.of
        const ids: string[] = []
        for (let p = 0; p < count; p++) {
          const id = idOn(`victim-${how.split(' ')[1]}`, p, count)
          gates.set(id, gate())
          ids.push(await rt.coordinator.createTask({ id, graph: ONE }))
        }
        await waitFor(async () => ids.every((id) => seen.has(`${id}/a/1/b0`)))
        await rt.coordinator.kill()
        // A coordinator that recovers them (long discovery window) receives a cancel for each.
        const watched = watchedBus(rt.bus)
        const first = new Coordinator({ bus: watched.bus, store: rt.store, config: { ...rt.coordinatorBase, discoveryWindowSec: 3 } })
        started.push(first)
        await first.start()
        for (const id of ids) await sendControl(rt.bus, rt.coordinatorBase.topicTasks as string, controlRequest('cancel', id, Date.now(), 'stop it'), count)
        await watched.delivered
        const next = newCoordinator(rt)
        if (how === 'it is killed') await first.kill()
        if (how === 'it stops') {
          // Stops in time: requests in flight are written or given back, not waited for.
          const stopped = first.stop().then(() => true)
          const late = new Promise<false>((r) => setTimeout(() => r(false), 20_000).unref())
          assert.equal(await Promise.race([stopped, late]), true, 'the coordinator stopped within 20 s')
        }
        started.push(next)
        await next.start()
        for (const id of ids) {
          const t = await next.waitForTask(id, { timeoutMs: 30_000 })
          assert.equal(t.status, 'cancelled', `task ${id}`)
          assert.equal(t.nodes[0]?.status, 'cancelled', `task ${id}`)
        }
      } finally {
        for (const g of gates.values()) g.open()
        for (const c of started) await c.stop()
        await rt.stop()
      }
    })
  }
})
