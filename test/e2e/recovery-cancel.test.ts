/**
 * A cancel that reaches a coordinator while it recovers (restarted after a crash) waits for the
 * events queued while no coordinator ran: a node that finished meanwhile is finished with all its
 * batches, and the cancel stops what is left. (Applied first, it cancelled that node with one
 * batch of five counted, and its finished work was lost.) The second case has no drain to lean
 * on: the cancel, arriving during the start, makes the coordinator load the task itself (adopt),
 * which skipped the recovery wait (the node was cancelled with its batches uncounted).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { type Bus, Coordinator, MemoryBus, type RoleHandler, type SubscribeOptions, type Subscription } from '../../src/index.ts'
import { controlRequest, sendControl } from '../../src/coordinator/control.ts'
import { gate } from '../helpers/gate.ts'
import { startRuntime } from '../helpers/runtime.ts'
import { waitFor } from '../helpers/wait.ts'

/**
 * `bus`, whose subscriptions to `topic` handle nothing for their first `ms` (real time); with
 * `drained: false` they cannot tell when their backlog is handled (Subscription.drained is
 * optional: a bus without it), so only the recovery's replay wait keeps a cancel behind it.
 */
function slowStatus(bus: Bus, topic: string, ms: number, opts: { drained: boolean } = { drained: true }): Bus {
  const ready = new Promise<void>((r) => setTimeout(r, ms))
  return new Proxy(bus, {
    get(target, prop) {
      const v = Reflect.get(target, prop, target) as unknown
      if (prop !== 'subscribe' || typeof v !== 'function') return typeof v === 'function' ? v.bind(target) : v
      return (o: SubscribeOptions) => {
        if (!o.topics.includes(topic)) return v.call(target, o)
        const { handler, batchHandler } = o
        const sub = v.call(target, {
          ...o,
          ...(handler === undefined ? {} : { handler: async (m: Parameters<typeof handler>[0]) => ready.then(() => handler(m)) }),
          ...(batchHandler === undefined ? {} : { batchHandler: async (ms_: Parameters<typeof batchHandler>[0]) => ready.then(() => batchHandler(ms_)) }),
        }) as Promise<Subscription>
        if (opts.drained) return sub
        return sub.then((real) => new Proxy(real, { get: (t, p) => (p === 'drained' ? undefined : typeof Reflect.get(t, p, t) === 'function' ? (Reflect.get(t, p, t) as (...a: unknown[]) => unknown).bind(t) : Reflect.get(t, p, t)) }))
      }
    },
  })
}

/**
 * `bus`, whose subscriptions to `topic` are made only once `joined` opens (a Kafka group that takes
 * a while to join); `requested()` tells when the first was asked for.
 */
function lateJoin(bus: Bus, topic: string, joined: Promise<void>): { bus: Bus; requested: () => boolean } {
  let asked = false
  const wrapped = new Proxy(bus, {
    get(target, prop) {
      const v = Reflect.get(target, prop, target) as unknown
      if (prop !== 'subscribe' || typeof v !== 'function') return typeof v === 'function' ? v.bind(target) : v
      return (o: SubscribeOptions) => {
        if (!o.topics.includes(topic)) return v.call(target, o)
        asked = true
        return joined.then(() => v.call(target, o))
      }
    },
  })
  return { bus: wrapped, requested: () => asked }
}

async function cancelWhileDown(drained: boolean, join = false): Promise<void> {
  const rest = gate()
  let batches = 0
  const slow: RoleHandler = {
    async *iterBatches() {
      for (let i = 0; i < 5; i++) yield { batch_uid: `b${i}`, payload: {} }
    },
    async processBatch(b, ctx) {
      if (b.batch_uid !== 'b0') await rest.wait(ctx.signal)
      batches++
      return { metrics: { count: 1 } }
    },
  }
  const later: RoleHandler = {
    async processBatch(_b, ctx) {
      await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }))
      return {}
    },
  }
  const bus = new MemoryBus()
  const rt = await startRuntime({ bus, handlers: { slow, later } })
  let second: Coordinator | null = null
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 's', type: 'slow' }, { node_id: 't', type: 'later', depends_on: ['s'] }] } })
    await waitFor(async () => ((await rt.coordinator.getTask(id))?.nodes.find((n) => n.node_id === 's')?.batches_seen ?? 0) >= 1)
    await rt.coordinator.kill()
    // While no coordinator runs: the node ends (its events wait on the status topic), and a cancel is asked.
    rest.open()
    await waitFor(() => bus.records(rt.statusTopic('slow')).some((r) => r.value.includes('"TASK_DONE"') && r.value.includes(id)))
    assert.equal(batches, 5)
    if (join) {
      // The restarted coordinator has loaded the task and waits to join its status topic when the
      // cancel comes: the cancel must wait for the task's recovery (nothing else holds it back).
      const joined = gate()
      const late = lateJoin(rt.bus, rt.statusTopic('slow'), joined.wait())
      second = new Coordinator({ bus: late.bus, store: rt.store, config: { ...rt.coordinatorBase, discoveryWindowSec: 0.2 } })
      const starting = second.start()
      await waitFor(() => late.requested())
      const cancelling = second.cancelTask(id, { reason: 'stop it' })
      await new Promise((r) => setTimeout(r, 100))
      joined.open()
      await starting
      assert.equal(await cancelling, true)
    } else {
      await sendControl(rt.bus, rt.coordinatorBase.topicTasks ?? 'coord.tasks.v1', controlRequest('cancel', id, Date.now(), 'stop it'))
      // The restarted coordinator reads its status topic late (as a Kafka consumer group that
      // takes a while to join does): the cancel request is there first.
      second = new Coordinator({ bus: slowStatus(rt.bus, rt.statusTopic('slow'), 400, { drained }), store: rt.store, config: { ...rt.coordinatorBase, discoveryWindowSec: 0.2 } })
      await second.start()
    }
    const t = await second.waitForTask(id, { timeoutMs: 20_000 })
    assert.equal(t.status, 'cancelled')
    const s = t.nodes.find((n) => n.node_id === 's')
    assert.equal(s?.status, 'finished', 'the node that ended while no coordinator ran is finished')
    assert.deepEqual(s?.stats, { count: 5 })
    assert.equal(s?.attempt_epoch, 1)
    // What is left is stopped (t may have been started from s's end before the cancel was applied).
    assert.notEqual(t.nodes.find((n) => n.node_id === 't')?.status, 'finished')
  } finally {
    rest.open()
    await second?.stop()
    await rt.stop()
  }
}

test('a cancel sent while no coordinator ran is applied after the queued events: the node that finished meanwhile keeps all its batches', async () => {
  await cancelWhileDown(true)
})

test('the same on a bus whose subscriptions cannot tell when their backlog is handled: the cancel waits for the recovery replay', async () => {
  await cancelWhileDown(false)
})

test('the same when the cancel comes while the restarted coordinator, its task loaded, waits to join its status topic', async () => {
  await cancelWhileDown(true, true)
})

test('a cancel of a task whose worker still runs it, reaching a restarted coordinator, is applied once the worker answered: not after the discovery window', async () => {
  let aborted = 0
  const long: RoleHandler = {
    async processBatch(_b, ctx) {
      await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }))
      aborted++
      return {}
    },
  }
  // (On real Kafka + MongoDB when their addresses are set, as every runtime of startRuntime.)
  const rt = await startRuntime({ handlers: { long } })
  let second: Coordinator | null = null
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'a', type: 'long' }] } })
    await waitFor(async () => (await rt.coordinator.getTask(id))?.nodes[0]?.accepted_at_ms != null, { message: 'never accepted' })
    await rt.coordinator.kill()
    // A window far longer than the wait below: the cancel must not wait for it.
    second = new Coordinator({ bus: rt.bus, store: rt.store, config: { ...rt.coordinatorBase, discoveryWindowSec: 120 } })
    await second.start()
    const applying = second.cancelTask(id, { reason: 'stop it' })
    await waitFor(() => aborted === 1, { timeoutMs: 20_000, message: 'the handler was not told to stop while the recovery ran' })
    assert.equal(await applying, true)
    const t = await second.waitForTask(id, { timeoutMs: 20_000 })
    assert.equal(t.status, 'cancelled')
    assert.equal(t.nodes[0]?.status, 'cancelled')
    assert.equal(t.nodes[0]?.attempt_epoch, 1, 'the same attempt, adopted then cancelled')
  } finally {
    await second?.stop()
    await rt.stop()
  }
})
