/**
 * Defect 6b (issue 7): `ctx.spawn` with `input` crashed the whole worker with an unhandled EPIPE
 * when the child exited without reading its stdin. It must be the run's failure (or nothing, if
 * the child succeeded), never an uncaught exception: the worker keeps running other nodes.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { RoleHandler, SpawnResult, TaskView } from 'flowkit'
import { startRuntime } from '../helpers/runtime.ts'

const BIG = 'x'.repeat(8 << 20) // 8 MiB: far more than a pipe buffer holds

const nodeOf = (t: TaskView, id: string) => t.nodes.find((n) => n.node_id === id)!

test('defect 6b: ctx.spawn with several MB of input to a child that exits at once fails only that run, never the worker', async () => {
  const results: Record<string, SpawnResult> = {}
  const errors: Record<string, unknown> = {}
  const handler: RoleHandler = {
    async processBatch(_batch, ctx) {
      const which = ctx.nodeId
      const [cmd, args] = which === 'fails' ? ['sh', ['-c', 'exit 3']] : which === 'reads' ? ['wc', ['-c']] : ['true', []]
      try {
        results[which] = await ctx.spawn(cmd as string, args as string[], { input: BIG })
      } catch (err) {
        errors[which] = err
        throw err
      }
      return { metrics: { code: results[which]!.code ?? -1 } }
    },
  }
  const rt = await startRuntime({ handlers: { step: handler } })
  try {
    const node = (which: string) => ({ node_id: which, type: 'step', retry_policy: { max: 1 } })
    const ok = await rt.coordinator.createTask({ graph: { nodes: [node('succeeds')] } })
    const tOk = await rt.coordinator.waitForTask(ok, { timeoutMs: 30_000 })
    assert.equal(tOk.status, 'finished', 'a child that exits 0 without reading its input is a success')
    assert.equal(results['succeeds']?.code, 0)

    const bad = await rt.coordinator.createTask({ graph: { nodes: [node('fails')] } })
    const tBad = await rt.coordinator.waitForTask(bad, { timeoutMs: 30_000 })
    assert.equal(tBad.status, 'failed', 'a child that failed without reading its input fails the run')
    assert.equal(nodeOf(tBad, 'fails').status, 'failed')
    const err = errors['fails'] as Error & { result?: SpawnResult }
    assert.ok(err instanceof Error, 'ctx.spawn rejected')
    assert.equal(err.name, 'SpawnInputError')
    assert.match(err.message, /spawn sh: the child exited with code 3 before reading all of its input \(8388608 bytes; stdin: EPIPE\)/)
    assert.equal(err.result?.code, 3)

    // The worker survived both and still runs nodes (one that does read its input, in full).
    const after = await rt.coordinator.createTask({ graph: { nodes: [node('reads')] } })
    const tAfter = await rt.coordinator.waitForTask(after, { timeoutMs: 30_000 })
    assert.equal(tAfter.status, 'finished')
    assert.equal(results['reads']?.stdout.trim(), String(BIG.length))
  } finally {
    await rt.stop()
  }
})
