/**
 * Defect 2 (issue 7), found by the reliability suite: a worker process killed mid-run and
 * restarted with the same worker id ran the same attempt again when its START was delivered once
 * more. Now a claim is held by a worker id *and* process instance, and a START of an attempt the
 * dead predecessor held is handed back (CANCELLED worker_stopping): it runs again at a new epoch,
 * never twice at the same one.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryLogger, TestClock, Worker, protocol, type RoleHandler } from 'flowkit'
import { withBusFaults } from '../helpers/bus-faults.ts'
import { gate } from '../helpers/gate.ts'
import { startRuntime } from '../helpers/runtime.ts'
import { waitFor } from '../helpers/wait.ts'

test('defect 2: a restarted worker with the same id hands back its dead predecessor attempt instead of running it again', async () => {
  const log = new MemoryLogger()
  const runs: string[] = []
  let hang = true
  const handler: RoleHandler = {
    async processBatch(_b, ctx) {
      runs.push(`${ctx.attemptEpoch}`)
      if (hang) await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }))
      return { metrics: { n: 1 } }
    },
  }
  const rt = await startRuntime({ logger: log, handlers: { job: handler }, worker: { workerId: 'w-fixed' } })
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'a', type: 'job', retry_policy: { max: 1 } }] } })
    await waitFor(async () => ((await rt.store.getWorkerState('w-fixed'))?.active_runs.length ?? 0) === 1, { message: 'the run state is saved' })
    await rt.workers[0]!.kill() // the process dies mid-run
    hang = false
    await rt.addWorker({ job: handler }, { workerId: 'w-fixed' })
    // The START of epoch 1 is delivered once more (its offset was never committed).
    const start = protocol.makeEnvelope({
      msg_type: 'cmd',
      role: 'coordinator',
      task_id: id,
      node_id: 'a',
      step_type: 'job',
      attempt_epoch: 1,
      ts_ms: Date.now(),
      dedup_id: 'redelivered',
      payload: { cmd: 'TASK_START', input_ref: null, input_inline: null, batching: null, cancel_token: 'x', vars: {} },
    })
    await rt.bus.produce([{ topic: rt.cmdTopic('job'), key: `${id}:a`, value: protocol.encode(start) }])
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })
    assert.equal(t.status, 'finished', JSON.stringify(t.nodes[0]?.last_error))
    assert.equal(t.nodes[0]?.attempt_epoch, 2, 'run again at a new epoch, without using the only retry')
    assert.deepEqual(runs, ['1', '2'], 'epoch 1 ran once (in the dead process)')
    assert.ok(log.records.some((r) => r.event === 'worker.restored_run_handed_back'))
  } finally {
    await rt.stop()
  }
})

/** Records `task@epoch` of each batch it processes. */
function recording(runs: string[]): RoleHandler {
  return {
    async processBatch(_b, ctx) {
      runs.push(`${ctx.taskId}@${ctx.attemptEpoch}`)
      return { metrics: { n: 1 } }
    },
  }
}

test('a restarted worker hands back an attempt its predecessor claimed but died before saving its run state; a claim of another worker id stays held', async () => {
  const log = new MemoryLogger()
  const runs: string[] = []
  const handler = recording(runs)
  // A long accept timeout: the hand-back must not wait for the coordinator's resends.
  const rt = await startRuntime({ logger: log, handlers: { job: handler }, worker: { workerId: 'w-fixed' }, coordinator: { acceptTimeoutSec: 600 } })
  try {
    // The dead predecessor (same worker id, another instance) claimed epoch 1 of `mine`, and
    // died before its run state was saved: only the claim knows.
    await rt.store.claimAttempt({ task_id: 'mine', node_id: 'a', attempt_epoch: 1, worker_id: 'w-fixed#dead-instance' }, Date.now())
    // Another worker (alive, for all this one knows) claimed epoch 1 of `theirs`.
    await rt.store.claimAttempt({ task_id: 'theirs', node_id: 'a', attempt_epoch: 1, worker_id: 'w-other#some-instance' }, Date.now())
    const graph = { nodes: [{ node_id: 'a', type: 'job', retry_policy: { max: 1 } }] }
    await rt.coordinator.createTask({ id: 'theirs', graph })
    await rt.coordinator.createTask({ id: 'mine', graph })
    const t = await rt.coordinator.waitForTask('mine', { timeoutMs: 20_000 })
    assert.equal(t.status, 'finished', JSON.stringify(t.nodes[0]?.last_error))
    assert.equal(t.nodes[0]?.attempt_epoch, 2, 'run again at a new epoch, without using the only retry')
    assert.ok(log.records.some((r) => r.event === 'worker.restored_run_handed_back' && r.fields?.['task_id'] === 'mine'))
    await waitFor(() => log.records.some((r) => r.event === 'worker.attempt_held_elsewhere' && r.fields?.['task_id'] === 'theirs'))
    assert.equal((await rt.coordinator.getTask('theirs'))?.nodes[0]?.attempt_epoch, 1, "another worker's claim is not taken over")
    assert.deepEqual(runs, ['mine@2'])
  } finally {
    await rt.stop()
  }
})

test('an attempt a worker claimed and then died before accepting is handed back at the second accept timeout, not after the whole resend schedule', async () => {
  const clock = new TestClock()
  const log = new MemoryLogger()
  const runs: string[] = []
  const handler = recording(runs)
  const rt = await startRuntime({ clock, logger: log, handlers: { job: handler }, worker: { workerId: 'w-live' }, coordinator: { acceptTimeoutSec: 30 } })
  try {
    // A worker that is gone for good (another id) claimed epoch 1 and never reported.
    await rt.store.claimAttempt({ task_id: 'orphan', node_id: 'a', attempt_epoch: 1, worker_id: 'w-dead#instance' }, clock.now())
    await rt.coordinator.createTask({ id: 'orphan', graph: { nodes: [{ node_id: 'a', type: 'job', retry_policy: { max: 1 } }] } })
    await waitFor(() => log.records.some((r) => r.event === 'worker.attempt_held_elsewhere'), { message: 'the live worker found the attempt held' })
    // First timeout (30 s): sent again; second (30 + 60 s): handed back. Not 450 s.
    for (let s = 0; s < 100; s += 5) await clock.advance(5_000)
    const t = await rt.coordinator.waitForTask('orphan', { timeoutMs: 20_000 })
    assert.equal(t.status, 'finished')
    assert.equal(t.nodes[0]?.attempt_epoch, 2, 'a new attempt, without using the only retry')
    assert.deepEqual(runs, ['orphan@2'])
    const timeouts = log.records.filter((r) => r.event === 'node.not_accepted')
    assert.equal(timeouts.length, 2)
    assert.ok(timeouts.every((r) => r.fields?.['claimed'] === true))
  } finally {
    await rt.stop()
  }
})

test("a paused worker process that resumes after a restart with its worker id does not hand back the live newer instance's attempt: that claim is held elsewhere", async () => {
  const log = new MemoryLogger()
  const oldLog = new MemoryLogger()
  const paused = gate()
  const finish = gate()
  const newRuns: string[] = []
  const oldRuns: string[] = []
  const rt = await startRuntime({ logger: log, coordinator: { acceptTimeoutSec: 600 } })
  let old: Worker | null = null
  try {
    // The old process starts first (the older instance), then is paused (SIGSTOP): whatever its
    // subscriptions fetch waits until it resumes. Its own command group, so that the START reaches
    // it as well as the new process (as a partition it still held when paused would).
    old = new Worker({
      bus: withBusFaults(rt.bus, { beforeHandle: () => paused.wait() }),
      store: rt.store,
      logger: oldLog,
      handlers: { job: recording(oldRuns) },
      config: { ...rt.workerBase, groupPrefix: `${rt.workerBase.groupPrefix ?? ''}paused.`, workerId: 'w-same' },
    })
    await old.start()
    // A new process with the same worker id (a newer instance) starts and claims epoch 1.
    const slow: RoleHandler = {
      async processBatch(_b, ctx) {
        newRuns.push(`${ctx.taskId}@${ctx.attemptEpoch}`)
        await finish.wait()
        return { metrics: { n: 1 } }
      },
    }
    await rt.addWorker({ job: slow }, { workerId: 'w-same' })
    await rt.coordinator.createTask({ id: 'live', graph: { nodes: [{ node_id: 'a', type: 'job', retry_policy: { max: 1 } }] } })
    await waitFor(() => newRuns.length === 1, { message: 'the new instance runs epoch 1' })
    // The old process resumes (SIGCONT) and gets the START of epoch 1, claimed by the newer instance.
    paused.open()
    const decided = (r: { event: string; fields?: Record<string, unknown> }): boolean =>
      (r.event === 'worker.attempt_held_elsewhere' || r.event === 'worker.restored_run_handed_back') && r.fields?.['task_id'] === 'live'
    await waitFor(() => oldLog.records.some(decided), { message: 'the old process looked at the START' })
    finish.open()
    const t = await rt.coordinator.waitForTask('live', { timeoutMs: 20_000 })
    assert.equal(t.status, 'finished', JSON.stringify(t.nodes[0]?.last_error))
    assert.deepEqual(
      oldLog.records.filter(decided).map((r) => r.event),
      ['worker.attempt_held_elsewhere'],
      "the old process drops the START: a newer instance's claim is not its dead predecessor's",
    )
    assert.equal(t.nodes[0]?.attempt_epoch, 1, "the live successor's attempt was not handed back")
    assert.deepEqual(newRuns, ['live@1'])
    assert.deepEqual(oldRuns, [])
    assert.ok(!log.records.some((r) => r.event === 'node.handed_back'))
  } finally {
    paused.open()
    finish.open()
    await old?.stop()
    await rt.stop()
  }
})
