/**
 * Per-node execution timeout (`timeout_sec`) and task deadline (`deadlineSec`), issue 8: both
 * end cleanly — the attempt is cancelled on its worker, the node retried or failed, the task
 * failed with a reason that says which limit was hit.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Coordinator, MemoryLogger, type RoleHandler } from 'flowkit'
import { startRuntime } from '../helpers/runtime.ts'
import { gate } from '../helpers/gate.ts'
import { waitFor } from '../helpers/wait.ts'

/** The first attempt hangs until cancelled; later ones finish at once. */
function hangsOnce(aborted: string[]): RoleHandler {
  return {
    async processBatch(_b, ctx) {
      if (ctx.attemptEpoch === 1) {
        await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }))
        aborted.push(`${ctx.nodeId}@${ctx.attemptEpoch}`)
        ctx.throwIfCancelled()
      }
      return { metrics: { ok: 1 } }
    },
  }
}

test('timeout_sec: an attempt past its timeout is cancelled on its worker and retried', async () => {
  const log = new MemoryLogger()
  const aborted: string[] = []
  const rt = await startRuntime({ logger: log, handlers: { job: hangsOnce(aborted) } })
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'a', type: 'job', timeout_sec: 0.5, retry_policy: { max: 2, backoff_sec: 0 } }] } })
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })
    assert.equal(t.status, 'finished')
    assert.equal(t.nodes[0]?.attempt_epoch, 2)
    assert.equal(t.nodes[0]?.last_error?.reason_code, 'timeout')
    assert.ok(log.records.some((r) => r.event === 'node.timeout' && r.fields['timeout_sec'] === 0.5))
    assert.deepEqual(aborted, ['a@1'], 'the timed-out attempt was cancelled on its worker')
  } finally {
    await rt.stop()
  }
})

test('timeout_sec with no retry left fails the task, naming the timeout', async () => {
  const rt = await startRuntime({ handlers: { job: hangsOnce([]) } })
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'a', type: 'job', timeout_sec: 0.3, retry_policy: { max: 1 } }] } })
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })
    assert.equal(t.status, 'failed')
    assert.match(t.nodes[0]?.last_error?.error ?? '', /timeout/)
  } finally {
    await rt.stop()
  }
})

test('deadlineSec: a task still running at its deadline is cancelled and ends failed', async () => {
  const log = new MemoryLogger()
  const aborted: string[] = []
  const rt = await startRuntime({ logger: log, handlers: { job: hangsOnce(aborted) } })
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'a', type: 'job' }] }, deadlineSec: 0.5 })
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })
    assert.equal(t.status, 'failed')
    assert.match(t.error ?? '', /deadline exceeded: the task did not end within 0.5 s/)
    assert.equal(t.nodes[0]?.status, 'cancelled')
    assert.deepEqual(aborted, ['a@1'])
    assert.ok(log.records.some((r) => r.event === 'task.deadline_exceeded'))
    await assert.rejects(rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'a', type: 'job' }] }, deadlineSec: -1 }), /deadlineSec must be/)
  } finally {
    await rt.stop()
  }
})

test('createTask refuses a field it does not know (deadline_sec would have run the task without its deadline)', async () => {
  const rt = await startRuntime({ handlers: { job: hangsOnce([]) } })
  try {
    const graph = { nodes: [{ node_id: 'a', type: 'job' }] }
    await assert.rejects(rt.coordinator.createTask({ graph, deadline_sec: 1 } as never), {
      code: 'GRAPH_INVALID',
      message: 'createTask: unknown field "deadline_sec" (did you mean "deadlineSec"?); its fields are graph, params, id, deadlineSec',
    })
    await assert.rejects(rt.coordinator.createTask({ graph, parms: {} } as never), /unknown field "parms" \(did you mean "params"\?\)/)
    assert.equal((await rt.store.listTasks({})).length, 0, 'no task was created')
  } finally {
    await rt.stop()
  }
})

test('timeout_sec under maxRunningNodes: a timed-out attempt keeps its slot until its worker stopped it (the limit holds)', async () => {
  let running = 0
  let most = 0
  const slow: RoleHandler = {
    async processBatch(_b, ctx) {
      running++
      most = Math.max(most, running)
      try {
        // The first attempt takes 2.5 s and does not look at its signal; the retry is quick.
        if (ctx.attemptEpoch === 1) await new Promise((r) => setTimeout(r, 2500))
        return {}
      } finally {
        running--
      }
    },
  }
  const rt = await startRuntime({ handlers: { slow }, worker: { concurrency: 10 }, coordinator: { maxRunningNodes: 2 } })
  try {
    // 1 s: the retry's own report must reach the coordinator within it, on Kafka + FerretDB under load too.
    const graph = { nodes: [{ node_id: 'a', type: 'slow', timeout_sec: 1, retry_policy: { max: 2, backoff_sec: 0 } }] }
    const ids = await Promise.all(Array.from({ length: 6 }, () => rt.coordinator.createTask({ graph })))
    for (const id of ids) {
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 30_000 })
      assert.equal(t.status, 'finished')
      assert.equal(t.nodes[0]?.last_error?.reason_code, 'timeout')
      assert.equal(t.nodes[0]?.attempt_epoch, 2)
    }
    assert.ok(most <= 2, `at most 2 handlers ran at once, saw ${most}`)
  } finally {
    await rt.stop()
  }
})

const DEADLINE_SEC = 3
test('deadlineSec passed while no coordinator ran: the restarted coordinator ends the task without starting the next node (it started it, then cancelled it)', async () => {
  const log = new MemoryLogger()
  const release = gate()
  const starts: string[] = []
  const step: RoleHandler = {
    async processBatch(_b, ctx) {
      starts.push(ctx.nodeId)
      if (ctx.nodeId === 'a') await release.wait()
      return { metrics: { ok: 1 } }
    },
  }
  const rt = await startRuntime({ logger: log, handlers: { step } })
  let next: Coordinator | null = null
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'a', type: 'step' }, { node_id: 'b', type: 'step', depends_on: ['a'] }] }, deadlineSec: DEADLINE_SEC })
    const createdAt = (await rt.store.getTask(id))?.created_at_ms as number
    await waitFor(() => starts.includes('a'))
    await rt.coordinator.kill()
    // The deadline is long enough that a loaded machine (Kafka + FerretDB, tests in parallel) gets
    // a started and the coordinator killed before it passes (0.3 s did not: the first coordinator
    // cancelled a itself, and a never ended).
    assert.ok(!log.records.some((r) => r.event === 'task.deadline_exceeded'), `the deadline (${DEADLINE_SEC} s) passed before the coordinator was killed`)
    // a ends while no coordinator runs (its TASK_DONE waits on the bus), after the deadline.
    await waitFor(() => Date.now() > createdAt + DEADLINE_SEC * 1000 + 100)
    release.open()
    await waitFor(() => log.records.some((r) => r.event === 'node.done' && r.fields['node_id'] === 'a'))
    next = new Coordinator({ bus: rt.bus, store: rt.store, logger: log, observability: false, config: rt.coordinatorBase })
    await next.start()
    const t = await next.waitForTask(id, { timeoutMs: 20_000 })
    assert.equal(t.status, 'failed')
    assert.match(t.error ?? '', /deadline exceeded/)
    assert.deepEqual(starts, ['a'], 'b never started')
    assert.notEqual(t.nodes.find((n) => n.node_id === 'b')?.attempt_epoch, 1, 'b was never dispatched')
  } finally {
    release.open()
    await next?.stop()
    await rt.stop()
  }
})
