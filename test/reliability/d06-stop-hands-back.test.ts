/**
 * Defect 6 (issue 7), the coordinator's half: stopping a worker (a deploy) burnt the node's retry
 * budget — the worker's CANCELLED counted as a failure (`cancelled_by_worker`). Now a run a
 * stopping worker gives back is started again at once without using a retry.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryLogger, type RoleHandler } from 'flowkit'
import { startRuntime } from '../helpers/runtime.ts'
import { waitFor } from '../helpers/wait.ts'

test('defect 6: a worker stopped for a deploy hands its run back without using a retry', async () => {
  const log = new MemoryLogger()
  let firstRun = true
  const handler: RoleHandler = {
    async processBatch(_batch, ctx) {
      if (firstRun) {
        firstRun = false
        // The first run lasts until its worker stops.
        await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }))
        throw ctx.signal.reason
      }
      return { metrics: { done: 1 } }
    },
  }
  const rt = await startRuntime({ logger: log, handlers: { job: handler } })
  try {
    // One attempt allowed: a hand-back that counted as a failure would fail the task.
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'a', type: 'job', retry_policy: { max: 1, backoff_sec: 0 } }] } })
    await waitFor(() => log.records.some((r) => r.event === 'node.accepted' && r.fields['component'] === 'coordinator'), { message: 'node a accepted' })
    const old = rt.workers[0]!
    await rt.addWorker({ job: handler })
    await old.stop()
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })
    const a = t.nodes.find((n) => n.node_id === 'a')!
    assert.equal(t.status, 'finished', `task ${t.status}: ${JSON.stringify(a.last_error)}`)
    assert.equal(a.attempt_epoch, 2)
    assert.deepEqual(a.stats, { done: 1 })
    assert.ok(log.records.some((r) => r.event === 'node.handed_back' && r.fields['reason'] === 'worker_stopping'))
  } finally {
    await rt.stop()
  }
})
