import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryBus, type RoleHandler, type TaskView } from 'flowkit'
import { startRuntime, noopHandler } from '../helpers/runtime.ts'
import { gate } from '../helpers/gate.ts'
import { waitFor } from '../helpers/wait.ts'

const nodeOf = (t: TaskView | null, id: string) => t!.nodes.find((n) => n.node_id === id)!

describe('workers', () => {
  test('a worker with concurrency N runs up to N nodes at once and never drops a command while busy', async () => {
    let active = 0
    let peak = 0
    const release = gate()
    const h: RoleHandler = {
      async processBatch() {
        active++
        peak = Math.max(peak, active)
        await release.wait()
        active--
        return { metrics: { count: 1 } }
      },
    }
    const rt = await startRuntime({ handlers: { step: h }, worker: { concurrency: 2 }, coordinator: { topicPartitions: 1 } })
    try {
      const id = await rt.coordinator.createTask({
        graph: { nodes: ['a', 'b', 'c', 'd', 'e'].map((n) => ({ node_id: n, type: 'step' })) },
      })
      await waitFor(() => active === 2, { message: 'two nodes never ran at once' })
      release.open()
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10000 })
      assert.equal(t.status, 'finished')
      assert.equal(peak, 2)
      for (const n of t.nodes) {
        assert.equal(n.stats['count'], 1)
        assert.equal(n.attempt_epoch, 1, `${n.node_id} was not re-dispatched: its command waited, it was not dropped`)
      }
    } finally {
      release.open()
      await rt.stop()
    }
  })

  test('S-011 a worker killed mid-node: the node is re-dispatched to another worker after its lease expires', async () => {
    const started = gate()
    const hang: RoleHandler = {
      async processBatch(_b, ctx) {
        started.open()
        await ctx.sleep(60_000)
        return {}
      },
    }
    const rt = await startRuntime({ worker: { leaseTtlSec: 1, hbIntervalSec: 0.2 }, coordinator: { schedulerTickSec: 0.1 } })
    try {
      const doomed = await rt.addWorker({ step: hang }, { workerId: 'doomed' })
      const id = await rt.coordinator.createTask({
        graph: { nodes: [{ node_id: 'n', type: 'step', retry_policy: { max: 3, backoff_sec: 0 } }, { node_id: 'after', type: 'step', depends_on: ['n'] }] },
      })
      await started.wait()
      await waitFor(async () => nodeOf(await rt.coordinator.getTask(id), 'n').lease.worker_id === 'doomed')
      await doomed.kill()
      rt.workers.splice(rt.workers.indexOf(doomed), 1)
      await rt.addWorker({ step: noopHandler() }, { workerId: 'healthy' })
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 20000 })
      assert.equal(t.status, 'finished')
      const n = nodeOf(t, 'n')
      assert.equal(n.attempt_epoch, 2, 'exactly one re-dispatch')
      assert.equal(n.lease.worker_id, 'healthy')
      assert.equal(n.failures, 1)
      assert.equal(nodeOf(t, 'after').status, 'finished')
    } finally {
      await rt.stop()
    }
  })
})

describe('worker restart', () => {
  test('S-019/S-023 a worker restarted with the same id finds its persisted run state and causes no new epoch', async () => {
    const { Worker } = await import('flowkit')
    const started = gate()
    const hang: RoleHandler = { async processBatch(_b, ctx) { started.open(); await ctx.sleep(60_000); return {} } }
    const rt = await startRuntime({ worker: { leaseTtlSec: 30 } })
    try {
      const w1 = await rt.addWorker({ step: hang }, { workerId: 'same-id' })
      const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'step' }] } })
      await started.wait()
      await w1.kill()
      rt.workers.splice(rt.workers.indexOf(w1), 1)
      const w2 = new Worker({ bus: rt.bus, store: rt.store, handlers: { step: noopHandler() }, config: { ...rt.workerBase, workerId: 'same-id' } })
      const restartedAt = Date.now()
      await w2.start()
      rt.workers.push(w2)
      assert.deepEqual(w2.restoredRuns.map((r) => [r.task_id, r.node_id, r.attempt_epoch]), [[id, 'n', 1]])
      assert.deepEqual(w2.activeRuns(), [], 'the old run is not resumed by the new process')
      // Whatever the new process says about the run goes out around its start: the coordinator
      // has heard its announcement, and (memory bus) everything sent since is applied.
      await waitFor(async () => (await rt.coordinator.listWorkers()).some((w) => w.worker_id === 'same-id' && w.last_seen_ms >= restartedAt), { message: 'the restarted worker was never heard' })
      for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r))
      if (rt.bus instanceof MemoryBus) await rt.bus.waitForIdle()
      const n = nodeOf(await rt.coordinator.getTask(id), 'n')
      assert.equal(n.attempt_epoch, 1, 'the restart itself causes no new epoch')
      assert.equal(n.status, 'running')
      assert.deepEqual((await rt.store.getWorkerState('same-id'))?.active_runs, [], 'the new process persisted its own (empty) state')
    } finally {
      await rt.stop()
    }
  })
})

describe('commands for tasks the store does not know', () => {
  test('a start command for a task the store does not know is run, as the seed worker does (the protocol does not require the document)', async () => {
    const { protocol, MemoryLogger } = await import('flowkit')
    let calls = 0
    const logger = new MemoryLogger()
    const rt = await startRuntime({ logger, handlers: { step: { async processBatch() { calls++; return { metrics: { count: 1 } } } } } })
    try {
      const env = protocol.makeEnvelope({
        msg_type: 'cmd', role: 'coordinator', task_id: 'not-in-this-store', node_id: 'n', step_type: 'step', attempt_epoch: 1,
        ts_ms: Date.now(), dedup_id: 'foreign-1',
        payload: { cmd: 'TASK_START', input_ref: null, input_inline: null, batching: null, cancel_token: 't' },
      })
      await rt.bus.produce([{ topic: rt.cmdTopic('step'), key: 'not-in-this-store:n', value: protocol.encode(env) }])
      await waitFor(() => calls === 1, { message: 'the command never ran' })
      await waitFor(() => logger.events().includes('node.done'), { message: 'the run never finished' })
      assert.ok(logger.records.some((r) => r.event === 'worker.start_unknown_task' && r.fields['task_id'] === 'not-in-this-store'))
      // The coordinator, which does not know the task either, ignores its status events.
      const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'step' }] } })
      assert.equal((await rt.coordinator.waitForTask(id, { timeoutMs: 10000 })).status, 'finished')
    } finally {
      await rt.stop()
    }
  })
})

describe('worker registry', () => {
  test('workers announce themselves: the coordinator lists them online with their roles and capacity, then offline', async () => {
    const rt = await startRuntime()
    try {
      const w = await rt.addWorker({ alpha: noopHandler(), beta: noopHandler() }, { workerId: 'reg-1', concurrency: 3 })
      await waitFor(async () => (await rt.coordinator.listWorkers()).some((x) => x.worker_id === 'reg-1' && x.status === 'online'), {
        message: 'never listed online',
      })
      const info = (await rt.coordinator.listWorkers()).find((x) => x.worker_id === 'reg-1')!
      assert.deepEqual([info.roles.sort(), info.capacity], [['alpha', 'beta'], 3])
      await w.stop()
      rt.workers.splice(rt.workers.indexOf(w), 1)
      await waitFor(async () => (await rt.coordinator.listWorkers()).some((x) => x.worker_id === 'reg-1' && x.status === 'offline'), {
        message: 'never listed offline',
      })
    } finally {
      await rt.stop()
    }
  })
})
