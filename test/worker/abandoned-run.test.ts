/**
 * A run abandoned after its cancel grace (its handler ignores the cancel) has reported CANCELLED
 * and given its slot back; when its handler returns later — after Worker.stop() returned, the bus
 * and store closed — it reports nothing more: no second CANCELLED, no `worker.run_crashed`, no
 * failed produce logged as an error (a process audit saw four such records after a clean stop).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { type BusRecord, MemoryLogger, type RoleHandler, Worker, protocol } from 'flowkit'
import { startRuntime } from '../helpers/runtime.ts'
import { gate } from '../helpers/gate.ts'
import { waitFor } from '../helpers/wait.ts'
import { overrideMethods } from '../helpers/store-proxy.ts'

test('a run abandoned at stop reports nothing when its handler returns after the stop', async () => {
  const logger = new MemoryLogger()
  const rt = await startRuntime({ logger })
  const kinds: string[] = []
  const bus = overrideMethods(rt.bus, {
    produce: (original) => async (...args: unknown[]) => {
      for (const r of args[0] as BusRecord[]) {
        const env = protocol.parseEnvelope(r.value)
        if (env.ok && env.value.node_id === 'stubborn' && typeof env.value.payload['kind'] === 'string') kinds.push(env.value.payload['kind'] as string)
      }
      return original(...args)
    },
  })
  const release = gate()
  let returned = false
  const handler: RoleHandler = {
    async processBatch() {
      await release.wait() // ignores the cancel
      returned = true
      return { metrics: { count: 1 } }
    },
  }
  const worker = new Worker({ bus, store: rt.store, handlers: { step: handler }, logger, config: { ...rt.workerBase, cancelGraceMs: 100 } })
  await worker.start()
  try {
    await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'stubborn', type: 'step' }] } })
    await waitFor(() => kinds.includes('TASK_ACCEPTED'), { message: 'the run started' })
    await worker.stop()
    assert.deepEqual(kinds.filter((k) => k === 'CANCELLED'), ['CANCELLED'])
    const before = logger.records.length
    release.open()
    await waitFor(() => returned, { message: 'the handler returned' })
    await new Promise((r) => setTimeout(r, 200))
    assert.deepEqual(kinds.filter((k) => k === 'CANCELLED' || k === 'TASK_FAILED' || k === 'TASK_DONE'), ['CANCELLED'], 'nothing more was sent')
    const after = logger.records.slice(before).filter((r) => r.level === 'error' || r.level === 'warn').map((r) => r.event)
    assert.deepEqual(after, [], 'no error or warning after the stop')
  } finally {
    release.open()
    await rt.stop()
  }
})

/**
 * A runtime and a worker (cancel grace 100 ms) running `handler` as type `step`; `body` drives
 * them, `release` is called before everything is stopped.
 */
async function withWorker(handler: RoleHandler, release: () => void, body: (rt: Awaited<ReturnType<typeof startRuntime>>, worker: Worker) => Promise<void>): Promise<void> {
  const rt = await startRuntime()
  const worker = new Worker({ bus: rt.bus, store: rt.store, handlers: { step: handler }, config: { ...rt.workerBase, cancelGraceMs: 100 } })
  await worker.start()
  try {
    await body(rt, worker)
  } finally {
    release()
    await worker.stop()
    await rt.stop()
  }
}

test('a run abandoned after its cancel grace has its cleanups run then, once: they can release what the handler is stuck on', async () => {
  const cleaned: string[] = []
  const stuck = gate()
  let returned = false
  let entered = false
  const handler: RoleHandler = {
    async processBatch(_batch, ctx) {
      ctx.onCleanup(() => {
        cleaned.push('released')
        stuck.open() // what the handler waits on, released by its cleanup
      })
      entered = true
      await stuck.wait() // ignores the cancel
      returned = true
      return { metrics: { count: 1 } }
    },
  }
  await withWorker(handler, () => stuck.open(), async (rt, worker) => {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'stuck', type: 'step' }] } })
    await waitFor(() => entered, { message: 'the handler runs' })
    await rt.coordinator.cancelTask(id)
    assert.equal((await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })).status, 'cancelled')
    await waitFor(() => cleaned.length > 0, { message: 'the cleanup ran at the abandon' })
    await waitFor(() => returned, { message: 'the handler, released by its cleanup, returned' })
    await worker.stop()
    assert.deepEqual(cleaned, ['released'], 'once, though the handler returned after')
  })
})

test('worker.stop() waits for the cleanups of a run it abandons', async () => {
  const cleaned: string[] = []
  const never = gate()
  let entered = false
  const handler: RoleHandler = {
    async processBatch(_batch, ctx) {
      ctx.onCleanup(async () => {
        await new Promise((r) => setTimeout(r, 20))
        cleaned.push('closed')
      })
      entered = true
      await never.wait() // ignores the cancel, never returns
      return {}
    },
  }
  await withWorker(handler, () => never.open(), async (rt, worker) => {
    await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'hung', type: 'step' }] } })
    await waitFor(() => entered, { message: 'the handler runs' })
    await worker.stop()
    assert.deepEqual(cleaned, ['closed'])
  })
})
