/**
 * A change of task variables reaches the task document without holding the flush, unless a START
 * goes out without them: variables too large to inline are read by the worker from the document,
 * so that START waits until the document holds them. (Every vars change used to hold its flush for
 * a snapshot; on FerretDB 300 tasks running `vars.incr` took 27 s, a chain without variables 2 s.)
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ErrorCode, FlowkitError, MemoryStore, type MemoryBus, type RoleHandler, type VersionedTask } from 'flowkit'
import { startRuntime } from '../helpers/runtime.ts'
import { gatedSnapshots } from '../helpers/gated-snapshots.ts'
import { overrideStore } from '../helpers/store-proxy.ts'
import { waitFor } from '../helpers/wait.ts'

/** A handler that records the variables each run saw. */
function recording(seen: Record<string, unknown>[]): RoleHandler {
  return {
    async processBatch(_b, ctx) {
      seen.push({ ...ctx.vars })
      return {}
    },
  }
}

test('a vars change does not hold the flush for a snapshot: the next node starts with the variables in its START while snapshot writes hang', async () => {
  const { store, inner, snapshots, held } = gatedSnapshots()
  const seen: Record<string, unknown>[] = []
  const rt = await startRuntime({ store, handlers: { step: recording(seen) }, worker: { concurrency: 4 } })
  try {
    const graph = {
      nodes: [
        { node_id: 'a', type: 'step' },
        { node_id: 'incr', type: 'coordinator_fn', depends_on: ['a'], io: { fn: 'vars.incr', fn_args: { key: 'runs', by: 2 } } },
        { node_id: 'c', type: 'step', depends_on: ['incr'] },
      ],
    }
    const id = await rt.coordinator.createTask({ graph })
    const view = await rt.coordinator.waitForTask(id, { timeoutMs: 5000 })
    assert.equal(view.status, 'finished')
    assert.deepEqual(seen.at(-1), { runs: 2 }, 'c saw the variables (from its START)')
    assert.deepEqual((await inner.getRunView(id, 'c'))?.vars, {}, 'the document was not written before c ran')
    await waitFor(() => held() > 0)
    snapshots.open()
    await waitFor(async () => (await inner.getRunView(id, 'c'))?.vars['runs'] === 2)
  } finally {
    snapshots.open()
    await rt.stop()
  }
})

test('variables too large to inline: the START goes out once the task document holds them, and the worker reads them from it', async () => {
  const { store, snapshots, held } = gatedSnapshots()
  const seen: Record<string, unknown>[] = []
  const rt = await startRuntime({ store, handlers: { step: recording(seen) }, worker: { concurrency: 4 } })
  try {
    // Five values of 60 KB: 300 KB of variables, more than a START carries (256 KiB).
    const kv = Object.fromEntries(['k1', 'k2', 'k3', 'k4', 'k5'].map((k) => [k, 'x'.repeat(60_000)]))
    const graph = {
      nodes: [
        { node_id: 'a', type: 'step' },
        { node_id: 'set', type: 'coordinator_fn', depends_on: ['a'], io: { fn: 'vars.set', fn_args: { kv } } },
        { node_id: 'c', type: 'step', depends_on: ['set'] },
      ],
    }
    const id = await rt.coordinator.createTask({ graph })
    await waitFor(() => held() > 0)
    await (rt.bus as MemoryBus).waitForIdle()
    const early = await rt.coordinator.getTask(id)
    assert.equal(early?.nodes.find((n) => n.node_id === 'c')?.accepted_at_ms, null, 'no worker took c: its START waits for the snapshot')
    assert.equal(seen.length, 1, 'only a ran')
    snapshots.open()
    assert.equal((await rt.coordinator.waitForTask(id, { timeoutMs: 5000 })).status, 'finished')
    assert.deepEqual(Object.keys(seen.at(-1) ?? {}).sort(), ['k1', 'k2', 'k3', 'k4', 'k5'], 'c read the variables from the document')
    assert.equal((seen.at(-1) as Record<string, string>)['k3']?.length, 60_000)
  } finally {
    snapshots.open()
    await rt.stop()
  }
})

test('a task document the store refuses for good (variables too large for it) fails the START that needed it and holds no other task', async () => {
  // A store whose documents are limited like MongoDB's, at 256 KB: a snapshot with the variables below is refused, not retryable.
  const inner = new MemoryStore()
  const refusals: string[] = []
  const store = overrideStore(inner, {
    writeSnapshot: (fn) => async (...args: unknown[]) => {
      const task = args[0] as VersionedTask
      if (JSON.stringify(task.coordinator.vars).length > 256_000) {
        refusals.push(task.id)
        throw new FlowkitError(ErrorCode.StoreError, 'document too large (over 256000 bytes)', { retryable: false })
      }
      return fn(...args)
    },
  })
  const seen: Record<string, unknown>[] = []
  const rt = await startRuntime({ store, handlers: { step: recording(seen) }, worker: { concurrency: 4 } })
  try {
    const kv = Object.fromEntries(['k1', 'k2', 'k3', 'k4', 'k5'].map((k) => [k, 'x'.repeat(60_000)]))
    const graph = {
      nodes: [
        { node_id: 'a', type: 'step' },
        { node_id: 'set', type: 'coordinator_fn', depends_on: ['a'], io: { fn: 'vars.set', fn_args: { kv } } },
        { node_id: 'c', type: 'step', depends_on: ['set'], retry_policy: { max: 2, backoff_sec: 0 } },
      ],
    }
    const id = await rt.coordinator.createTask({ graph })
    const view = await rt.coordinator.waitForTask(id, { timeoutMs: 10_000 })
    assert.equal(view.status, 'failed')
    const c = view.nodes.find((n) => n.node_id === 'c')
    assert.equal(c?.status, 'failed')
    assert.equal(c?.attempt_epoch, 2, 'c was tried as its retry policy says, each START refused')
    assert.match(JSON.stringify(c?.last_error), /could not be written with its variables.*document too large/)
    assert.equal(seen.length, 1, 'only a ran: c never ran without its variables')
    assert.ok(refusals.length >= 2)
    // The coordinator goes on: another task runs to the end.
    const other = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'x', type: 'step' }] } })
    assert.equal((await rt.coordinator.waitForTask(other, { timeoutMs: 5000 })).status, 'finished')
  } finally {
    await rt.stop()
  }
})
