/**
 * Task output and failure context (issue 8): a finished task's result names its sink nodes'
 * final artifacts and `getOutput` reads them; a node started by `routing.on_failure` is told
 * which node failed, at which attempt, with which reason code and error.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { PermanentError, type RoleHandler, type UpstreamFailure } from 'flowkit'
import { noopHandler, sourceHandler, startRuntime } from '../helpers/runtime.ts'

test('a task result names its sink nodes; getOutput returns their final artifacts', async () => {
  const report: RoleHandler = {
    async processBatch() {
      return { metrics: { n: 1 } }
    },
    async finalize() {
      return { metrics: {}, artifacts_ref: null, meta: { total: 42 } }
    },
  } as RoleHandler
  const rt = await startRuntime({ handlers: { src: sourceHandler(4, 2), report, side: noopHandler() } })
  try {
    const id = await rt.coordinator.createTask({
      graph: {
        nodes: [
          { node_id: 'read', type: 'src' },
          { node_id: 'report', type: 'report', depends_on: ['read'] },
          { node_id: 'audit', type: 'side', depends_on: ['read'] },
        ],
      },
    })
    const t = await rt.coordinator.waitForTask(id)
    const outputs = (t.result as { outputs: { node_id: string }[] }).outputs.map((o) => o.node_id).sort()
    assert.deepEqual(outputs, ['audit', 'report'], 'the sinks, not the intermediate node')
    const out = await rt.coordinator.getOutput(id)
    const rep = out.find((o) => o.node_id === 'report')
    assert.equal(rep?.artifact?.status, 'complete')
    assert.deepEqual(rep?.stats, { n: 1 })
  } finally {
    await rt.stop()
  }
})

test('an on_failure node is told which node failed, and why', async () => {
  let seen: readonly UpstreamFailure[] | null = null
  const broken: RoleHandler = {
    async processBatch() {
      throw new PermanentError('the upstream API said 403', 'forbidden')
    },
  }
  const alert: RoleHandler = {
    async processBatch(_b, ctx) {
      seen = ctx.upstreamFailures
      return { metrics: { alerted: 1 } }
    },
  }
  const rt = await startRuntime({ handlers: { broken, alert } })
  try {
    const id = await rt.coordinator.createTask({
      graph: { nodes: [{ node_id: 'fetch', type: 'broken', routing: { on_failure: ['alert'] } }, { node_id: 'alert', type: 'alert' }] },
    })
    await rt.coordinator.waitForTask(id)
    assert.ok(seen !== null, 'the on_failure node ran')
    const f = (seen as readonly UpstreamFailure[])[0]
    assert.equal(f?.node_id, 'fetch')
    assert.equal(f?.reason_code, 'forbidden')
    assert.equal(f?.attempt_epoch, 1)
    assert.match(f?.error ?? '', /403/)
  } finally {
    await rt.stop()
  }
})

test('a node that succeeded is its branch\'s output though it routes failures to a handler; a node it routes success to is not (the skipped handler emptied the output)', async () => {
  const rt = await startRuntime({ handlers: { src: sourceHandler(2, 1), side: noopHandler() } })
  try {
    const id = await rt.coordinator.createTask({
      graph: {
        nodes: [
          { node_id: 'load', type: 'src', routing: { on_failure: ['alert'] } },
          { node_id: 'alert', type: 'side' },
          { node_id: 'stage', type: 'src', routing: { on_success: ['publish'] } },
          { node_id: 'publish', type: 'side' },
        ],
      },
    })
    const t = await rt.coordinator.waitForTask(id)
    assert.equal(t.status, 'finished')
    assert.equal(t.nodes.find((n) => n.node_id === 'alert')?.status, 'skipped')
    const outputs = (t.result as { outputs: { node_id: string }[] }).outputs.map((o) => o.node_id).sort()
    assert.deepEqual(outputs, ['load', 'publish'])
    assert.deepEqual((await rt.coordinator.getOutput(id)).map((o) => o.node_id).sort(), ['load', 'publish'])
  } finally {
    await rt.stop()
  }
})
