/**
 * Arguments a plain-JavaScript caller gets wrong, refused with a clear error instead of being
 * misread: a reason passed in place of `cancelTask`'s options (it was ignored: the task was
 * cancelled "by user"), a task id that is not a string given to `listArtifacts` (an object such as
 * `{ $ne: null }` reached the store's filter), and `ctx.sleep(NaN)` in a handler (it slept 1 ms).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ErrorCode, isFlowkitError, type RoleHandler, type TaskView } from 'flowkit'
import { holdingHandler, startRuntime } from '../helpers/runtime.ts'

const nodeOf = (t: TaskView, id: string) => t.nodes.find((n) => n.node_id === id)

test('cancelTask refuses a reason given in place of its options, and a reason that is not a string; a valid reason is kept', async () => {
  const { handler: hold, started } = holdingHandler()
  const rt = await startRuntime({ handlers: { hold } })
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'hold' }] } })
    await started.wait()
    const config = (text: RegExp) => (err: unknown) => isFlowkitError(err, ErrorCode.Config) && text.test((err as Error).message)
    await assert.rejects(rt.coordinator.cancelTask(id, 'not needed' as never), config(/options must be an object such as \{ reason: '\.\.\.' \}, got string/))
    await assert.rejects(rt.coordinator.cancelTask(id, { reason: 42 } as never), config(/reason must be a string, got number/))
    assert.equal((await rt.coordinator.getTask(id))?.status, 'running', 'nothing was cancelled by a refused call')
    assert.equal(await rt.coordinator.cancelTask(id, { reason: 'not needed' }), true)
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 30_000 })
    assert.equal(t.status, 'cancelled')
    assert.equal(t.cancel_reason, 'not needed')
  } finally {
    await rt.stop()
  }
})

test('listArtifacts refuses a task id that is not a string (an operator object)', async () => {
  const rt = await startRuntime({})
  try {
    await assert.rejects(rt.coordinator.listArtifacts({ $ne: null } as never), (err: unknown) => isFlowkitError(err, ErrorCode.InvalidKey) && /listArtifacts: the task id must be a string, got object/.test((err as Error).message))
    await assert.rejects(rt.coordinator.listArtifacts('t', { nodeId: { $ne: null } as never }), (err: unknown) => isFlowkitError(err, ErrorCode.InvalidKey) && /nodeId must be a string/.test((err as Error).message))
  } finally {
    await rt.stop()
  }
})

test('ctx.sleep(NaN) or a non-number rejects with a TypeError that fails the run, instead of sleeping 1 ms', async () => {
  const seen: string[] = []
  const sleeper: RoleHandler = {
    async processBatch(_b, ctx) {
      for (const bad of [Number.NaN, '5' as unknown as number]) {
        await ctx.sleep(bad).then(
          () => seen.push('slept'),
          (err: unknown) => seen.push(err instanceof TypeError ? (err as Error).message : `other ${String(err)}`),
        )
      }
      await ctx.sleep(Number.NaN)
      return {}
    },
  }
  const rt = await startRuntime({ handlers: { sleeper } })
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'sleeper', retry_policy: { max: 1 } }] } })
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 30_000 })
    assert.deepEqual(seen.slice(0, 2), ['ctx.sleep: ms must be a number of milliseconds, got NaN', 'ctx.sleep: ms must be a number of milliseconds, got string'])
    assert.equal(t.status, 'failed')
    assert.match(nodeOf(t, 'n')?.last_error?.error ?? '', /ctx\.sleep: ms must be a number of milliseconds, got NaN/)
  } finally {
    await rt.stop()
  }
})
