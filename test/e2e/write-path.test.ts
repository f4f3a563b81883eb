/**
 * The coordinator's write path (engine core v2): one journal entry per task per flush, effects
 * only after it is durable, recovery from snapshot + journal. Each test proves one defect of the
 * previous design cannot happen: store errors at any write step, a write whose ack was lost, a
 * cancel whose commands could not go out, coordinator functions under store outages, restarts
 * before commands were sent, the done-pending final metrics row, an unstarted coordinator.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import {
  Coordinator,
  ErrorCode,
  FlowkitError,
  MemoryBus,
  MemoryStore,
  type ArtifactWrite,
  type Bus,
  type RoleHandler,
  type TaskDoc,
  type TaskView,
} from 'flowkit'
import { REAL_E2E, noopHandler, sourceHandler, startRuntime, testStore } from '../helpers/runtime.ts'
import { withFault } from '../helpers/faults.ts'
import { gate } from '../helpers/gate.ts'
import { makeNodeSpec, makeNodeState, makeTaskDoc } from '../helpers/fixtures.ts'
import { waitFor } from '../helpers/wait.ts'

const nodeOf = (t: TaskView | null, id: string) => t!.nodes.find((n) => n.node_id === id)!

/** A queued task of one `step` node, as a process other than the coordinator would write it. */
function oneStepTask(id: string): TaskDoc {
  return makeTaskDoc({
    id,
    graph: { schema_version: '1.0', nodes: [makeNodeSpec('n', 'step')], edges: [], edges_ex: [] },
    nodes: { n: makeNodeState('n', 'step') },
    created_at_ms: Date.now(),
  })
}
const unavailable = () => new FlowkitError(ErrorCode.StoreUnavailable, 'injected: store unavailable', { retryable: true })

/** A streaming pipeline with exact totals and a variable increment: what must survive faults. */
const PIPELINE = {
  nodes: [
    { node_id: 'src', type: 'src' },
    {
      node_id: 'sink',
      type: 'sink',
      depends_on: ['src'],
      io: { start_when: 'first_batch', input_inline: { input_adapter: 'pull.from_artifacts.rechunk:size', input_args: { from_nodes: ['src'], size: 3, meta_list_key: 'items', poll_ms: 5 } } },
    },
    { node_id: 'incr', type: 'coordinator_fn', depends_on: ['sink'], io: { fn: 'vars.incr', fn_args: { key: 'runs', by: 1 } } },
  ],
}

const counter: RoleHandler = {
  async processBatch(batch) {
    const items = (batch.payload['items'] as number[] | undefined) ?? []
    return { meta: { items }, metrics: { count: items.length } }
  },
}

/** The pipeline's handlers, counting runs per (node type, epoch). */
function countingHandlers(runs: Map<string, number>): Record<string, RoleHandler> {
  const count = (key: string): void => {
    runs.set(key, (runs.get(key) ?? 0) + 1)
  }
  return {
    src: { ...sourceHandler(10, 4), async init(run) { count(`src@${run.attemptEpoch}`) } },
    sink: { ...counter, async init(run) { count(`sink@${run.attemptEpoch}`) } },
  }
}

/** Exact totals, vars.incr applied once, each node run once per epoch. */
async function assertExact(t: TaskView, runs: Map<string, number>): Promise<void> {
  assert.equal(nodeOf(t, 'src').stats['count'], 10)
  assert.equal(nodeOf(t, 'sink').stats['count'], 10)
  assert.deepEqual(t.vars, { runs: 1 }, 'vars.incr applied once')
  for (const [key, n] of runs) assert.equal(n, 1, `${key} ran once`)
}

describe('write path: faults at every write step of a flush', () => {
  for (const mode of ['fail-before', 'fail-after'] as const) {
    for (let k = 1; k <= (REAL_E2E ? 6 : 12); k++) {
      test(`a retryable store error ${mode === 'fail-before' ? 'on' : 'after (ack lost)'} write ${k} of the run: the task finishes with exact metrics and one effect per node and epoch`, async () => {
        const { store: inner, drop } = await testStore()
        const faulty = withFault(inner, { at: k, mode })
        const runs = new Map<string, number>()
        const rt = await startRuntime({ store: faulty.store, handlers: countingHandlers(runs), worker: { concurrency: 2 } })
        try {
          const id = await rt.coordinator.createTask({ graph: PIPELINE })
          const t = await rt.coordinator.waitForTask(id, { timeoutMs: 30_000 })
          assert.equal(t.status, 'finished', `failed write: ${faulty.trippedOn}`)
          await assertExact(t, runs)
          // The store agrees with the coordinator (snapshot + journal).
          const stored = await faulty.store.getTask(id)
          assert.equal(stored?.status, 'finished')
          assert.equal(stored?.nodes['sink']?.stats['count'], 10)
        } finally {
          await rt.stop()
          await drop()
        }
      })
    }
  }
})

describe('write path: defects of the previous design', () => {
  test('an unstarted coordinator refuses createTask (it would act as a second coordinator)', async () => {
    const c = new Coordinator({ bus: new MemoryBus(), store: new MemoryStore() })
    await assert.rejects(c.createTask({ graph: { nodes: [{ node_id: 'a', type: 'step' }] } }), /not started/)
  })

  test('a cancel whose commands could not be sent is sent once the bus is back; the handler sees it', async () => {
    const bus = new MemoryBus()
    const started = gate()
    let sawCancel = false
    const h: RoleHandler = {
      async processBatch(_b, ctx) {
        started.open()
        await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }))
        sawCancel = true
        ctx.throwIfCancelled()
        return {}
      },
    }
    const rt = await startRuntime({ bus, handlers: { step: h }, coordinator: { outboxBackoffMinMs: 20, outboxBackoffMaxMs: 50 } })
    try {
      const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'step' }] } })
      await started.wait()
      let broken = true
      bus.setInterceptor((r) => {
        if (broken && r.topic.startsWith('cmd.')) throw new Error('broker down')
        return { action: 'pass' }
      })
      assert.equal(await rt.coordinator.cancelTask(id), true)
      assert.equal((await rt.coordinator.getTask(id))?.status, 'cancelling')
      broken = false
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10_000 })
      assert.equal(t.status, 'cancelled')
      assert.ok(sawCancel, 'the handler saw the cancel')
    } finally {
      await rt.stop()
    }
  })

  test('a START that cannot be sent for a while is retried: the node does not wait for the accept timeout', async () => {
    const bus = new MemoryBus()
    let failures = 3
    bus.setInterceptor((r) => {
      if (failures > 0 && r.topic.startsWith('cmd.')) {
        failures--
        throw new Error('broker down')
      }
      return { action: 'pass' }
    })
    const rt = await startRuntime({ bus, handlers: { step: noopHandler() }, coordinator: { outboxBackoffMinMs: 10, outboxBackoffMaxMs: 40, acceptTimeoutSec: 600 } })
    try {
      const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'step' }] } })
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10_000 })
      assert.equal(t.status, 'finished')
      assert.equal(nodeOf(t, 'n').resends, 0, 'finished without an accept-timeout resend')
    } finally {
      await rt.stop()
    }
  })

  test("a coordinator function's retryable store errors are retried; an outage of a second still ends the node", async () => {
    class OutageStore extends MemoryStore {
      until = 0
      override async upsertArtifact(a: ArtifactWrite, now: number): Promise<boolean> {
        if (a.worker_id === null && performance.now() < this.until) throw unavailable()
        return super.upsertArtifact(a, now)
      }
    }
    const store = new OutageStore()
    store.until = performance.now() + 1000
    const rt = await startRuntime({ store, handlers: { step: noopHandler() } })
    try {
      const id = await rt.coordinator.createTask({
        graph: { nodes: [{ node_id: 'inc', type: 'coordinator_fn', io: { fn: 'vars.incr', fn_args: { key: 'n' } } }, { node_id: 'after', type: 'step', depends_on: ['inc'] }] },
      })
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 15_000 })
      assert.equal(t.status, 'finished')
      assert.deepEqual(t.vars, { n: 1 })
      assert.equal(nodeOf(t, 'inc').attempt_epoch, 1, 'retried inside the attempt, not failed')
    } finally {
      await rt.stop()
    }
  })

  /** A one-node task whose coordinator stopped before its START could be sent (the broker refused it); the broker then heals. */
  async function stoppedBeforeSend(): Promise<{ bus: MemoryBus; store: MemoryStore; id: string }> {
    const bus = new MemoryBus()
    const store = new MemoryStore()
    let broken = true
    bus.setInterceptor((r) => {
      if (broken && r.topic.startsWith('cmd.')) throw new Error('broker down')
      return { action: 'pass' }
    })
    const first = new Coordinator({ bus, store, config: { outboxBackoffMinMs: 10, outboxBackoffMaxMs: 20 } })
    await first.start()
    const id = await first.createTask({ graph: { nodes: [{ node_id: 'n', type: 'step' }] } })
    await waitFor(async () => nodeOf(await store.getTask(id).then((t) => t && ({ nodes: Object.values(t.nodes) }) as never), 'n')?.status === 'running')
    await first.stop()
    assert.equal(bus.records('cmd.step.v1').length, 0, 'nothing was sent before the stop')
    broken = false
    return { bus, store, id }
  }

  test('S-030 a coordinator that stops before its commands went out resends them after restart; the worker runs the node once', async () => {
    const { bus, store, id } = await stoppedBeforeSend()
    let runs = 0
    const rt = await startRuntime({ bus, store, coordinator: { discoveryWindowSec: 0.1 }, handlers: { step: { async processBatch() { runs++; return {} } } } })
    try {
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10_000 })
      assert.equal(t.status, 'finished')
      assert.equal(nodeOf(t, 'n').attempt_epoch, 1)
      assert.equal(runs, 1)
    } finally {
      await rt.stop()
    }
  })

  test('the same when the new coordinator writes its claim before it resumes the task (its status topics take a while to join, as on Kafka): the START goes out at once, not at the accept timeout', async () => {
    const { bus, store, id } = await stoppedBeforeSend()
    const slowStatus = (b: Bus): Bus => ({
      ensureTopics: (t) => b.ensureTopics(t),
      partitionCount: (t) => b.partitionCount(t),
      produce: (r) => b.produce(r),
      close: () => b.close(),
      subscribe: async (o) => {
        if (o.name?.startsWith('coordinator-status-') === true) await new Promise((r) => setTimeout(r, 300))
        return b.subscribe(o)
      },
    })
    let runs = 0
    const rt = await startRuntime({
      bus,
      store,
      coordinatorBus: slowStatus,
      coordinator: { discoveryWindowSec: 0.1, acceptTimeoutSec: 120 },
      handlers: { step: { async processBatch() { runs++; return {} } } },
    })
    try {
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })
      assert.equal(t.status, 'finished')
      assert.equal(nodeOf(t, 'n').attempt_epoch, 1)
      assert.equal(runs, 1)
      const entries = await store.readJournal([id])
      assert.ok(entries.some((e) => e.events.includes('reissue n@1')), 'the START was issued again')
    } finally {
      await rt.stop()
    }
  })

  test('the final metrics row is written on the done-pending path (TASK_DONE overtook a BATCH_OK)', async () => {
    const bus = new MemoryBus()
    let held = false
    bus.setInterceptor((r) => {
      if (!held && r.topic.startsWith('status.') && r.value.includes('"BATCH_OK"')) {
        held = true
        return { action: 'delay', ms: 150 }
      }
      return { action: 'pass' }
    })
    const store = new MemoryStore()
    const src: RoleHandler = {
      async *iterBatches() {
        yield { batch_uid: 'b0', payload: {} }
        yield { batch_uid: 'b1', payload: {} }
      },
      async processBatch() {
        return { metrics: { count: 1 } }
      },
      async finalize() {
        return { metrics: { finals: 1 } }
      },
    }
    const rt = await startRuntime({ bus, store, handlers: { src } })
    try {
      const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 's', type: 'src' }] } })
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10_000 })
      assert.equal(t.status, 'finished')
      assert.deepEqual(nodeOf(t, 's').stats, { count: 2, finals: 1 })
      // The journal entry counted the final row with the node; the store's rows follow when idle.
      await waitFor(async () => (await store.listBatchMetrics(id, 's')).length === 3, { message: 'metrics rows never written' })
      const rows = await store.listBatchMetrics(id, 's')
      assert.deepEqual(rows.map((r) => r.batch_uid).sort(), ['__final__', 'b0', 'b1'])
    } finally {
      await rt.stop()
    }
  })

  test('a task written to the store by another process is found by the sweep and served', async () => {
    const store = new MemoryStore()
    const rt = await startRuntime({ store, handlers: { step: noopHandler() }, coordinator: { schedulerTickSec: 0.1 } })
    try {
      await store.createTask(oneStepTask('from-elsewhere'))
      const t = await rt.coordinator.waitForTask('from-elsewhere', { timeoutMs: 10_000 })
      assert.equal(t.status, 'finished')
    } finally {
      await rt.stop()
    }
  })

  test('a stale version loses its write: a second writer of the same task is fenced and the first writer state stays', async () => {
    const store = new MemoryStore()
    const now = Date.now()
    const base = { task_id: 't', at_ms: now, events: ['x'], nodes: [] }
    await store.createTask(oneStepTask('t'))
    assert.deepEqual(await store.appendJournal([{ ...base, seq: 1, writer: 'A', task: { status: 'running' } }]), [true])
    assert.deepEqual(await store.appendJournal([{ ...base, seq: 1, writer: 'B', task: { status: 'cancelled' } }]), [false])
    assert.equal((await store.getTask('t'))?.status, 'running')
    // A coordinator loading the task resumes at version 1 and writes version 2, not 1.
    const bus = new MemoryBus()
    const c = new Coordinator({ bus, store, config: { discoveryWindowSec: 0.05, cancelGraceSec: 0.05, leaseTtlSec: 0.05 } })
    await c.start()
    try {
      assert.equal(await c.cancelTask('t'), true)
      const t = await c.waitForTask('t', { timeoutMs: 5000 })
      assert.equal(t.status, 'cancelled')
      const entries = await store.readJournal(['t'])
      assert.deepEqual(entries.map((e) => e.seq), entries.map((_, i) => i + 1))
      assert.equal(entries[0]?.writer, 'A')
    } finally {
      await c.stop()
    }
  })
})

describe('write path: a coordinator killed at any write step of a flush', () => {
  for (const mode of ['freeze-before', 'freeze-after'] as const) {
    for (let k = 2; k <= (REAL_E2E ? 6 : 10); k += 2) {
      test(`killed in write ${k} (${mode === 'freeze-before' ? 'not written' : 'written, not acknowledged'}): a new coordinator finishes the task with exact metrics, vars.incr once, one run per node and epoch`, async () => {
        const { store: inner, drop } = await testStore()
        const faulty = withFault(inner, { at: k, mode })
        const runs = new Map<string, number>()
        const rt = await startRuntime({ store: faulty.store, handlers: countingHandlers(runs), worker: { concurrency: 2 } })
        let second: Coordinator | null = null
        try {
          const id = await rt.coordinator.createTask({ graph: PIPELINE })
          await waitFor(async () => faulty.tripped || (await rt.coordinator.getTask(id))?.status === 'finished', { timeoutMs: 20_000 })
          await rt.coordinator.kill()
          // The fault stands for the first coordinator's death: a run that ended in fewer writes
          // never reached it, and the new coordinator's writes must not freeze in its stead (they
          // did, now and then: its write k hung for ever and the test with it).
          faulty.disarm()
          second = new Coordinator({ bus: rt.bus, store: faulty.store, config: { ...rt.coordinatorBase, discoveryWindowSec: 0.2 } })
          await second.start()
          try {
            const t = await second.waitForTask(id, { timeoutMs: 30_000 })
            assert.equal(t.status, 'finished')
            await assertExact(t, runs)
            const stored = await faulty.store.getTask(id)
            assert.equal(stored?.nodes['sink']?.stats['count'], 10)
          } catch (err) {
            // What a rare failure needs to be understood: which write froze, and where the task stands.
            const view = await second.getTask(id).catch(() => null)
            const nodes = view?.nodes.map((n) => `${n.node_id}:${n.status}@${n.attempt_epoch}`).join(' ')
            if (err instanceof Error) err.message += ` [froze ${faulty.trippedOn ?? 'nothing'} (write ${k} of ${faulty.writes}); task ${view?.status}: ${nodes}; runs ${JSON.stringify([...runs])}]`
            throw err
          }
        } finally {
          await second?.stop()
          await rt.stop()
          await drop()
        }
      })
    }
  }
})
