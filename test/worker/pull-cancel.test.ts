/**
 * A cancel reaches a pulling consumer that waits for a slow store: on a loaded FerretDB a listing
 * of upstream artifacts takes seconds, and the consumer's run used to see its cancel only once the
 * call answered (past the worker's cancel grace, `worker.cancel_grace_expired`). The wait now
 * ends at the cancel; the call goes on and its answer is ignored. The same for the reads a handler
 * makes through its context (`ctx.lastCheckpoint()`, `ctx.earlierPartial()`).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryBus, MemoryLogger, MemoryStore, type RoleHandler, type Store, SystemClock } from 'flowkit'
import { pullArtifacts } from '../../src/worker/input.ts'
import { overrideStore } from '../helpers/store-proxy.ts'
import { makeNodeSpec, makeNodeState, makeTaskDoc } from '../helpers/fixtures.ts'
import { startRuntime } from '../helpers/runtime.ts'
import { waitFor } from '../helpers/wait.ts'

interface Hung {
  on: boolean
  calls: number
}

/** `inner`, whose artifact listings never answer while `hung.on` (`hung.calls` counts those). */
function hangingListings(inner: Store, hung: Hung): Store {
  return overrideStore(inner, {
    listArtifacts: (orig) => async (...args) => {
      if (!hung.on) return orig(...args)
      hung.calls++
      return new Promise(() => undefined)
    },
  })
}

test('pullArtifacts: an abort ends a listing the store never answers', async () => {
  const inner = new MemoryStore()
  const hung: Hung = { on: false, calls: 0 }
  const store = hangingListings(inner, hung)
  await inner.createTask(
    makeTaskDoc({
      id: 't-pc',
      graph: { schema_version: '1.0', nodes: [makeNodeSpec('src', 'src'), makeNodeSpec('map', 'map')], edges: [], edges_ex: [] },
      nodes: { src: makeNodeState('src', 'src', { status: 'running', attempt_epoch: 1 }), map: makeNodeState('map', 'map', { status: 'running', attempt_epoch: 1 }) },
    }),
  )
  hung.on = true
  const abort = new AbortController()
  const gen = pullArtifacts({ store, clock: new SystemClock(), taskId: 't-pc', consumerNode: 'map', epoch: 1, signal: abort.signal, maxBackoffMs: 5 }, { name: 'pull.from_artifacts', fromNodes: ['src'], pollMs: 1 })
  const next = gen.next()
  await waitFor(() => hung.calls === 1, { message: 'no listing' })
  const reason = new Error('cancelled here')
  abort.abort(reason)
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error('the pull still waits for the listing 5 s after the abort')), 5000)
  })
  try {
    await assert.rejects(Promise.race([next, late]), (err) => err === reason)
  } finally {
    clearTimeout(timer)
  }
})

test('a cancel stops a pulling consumer whose listing hangs, well within the cancel grace', async () => {
  const logger = new MemoryLogger()
  const hung: Hung = { on: false, calls: 0 }
  let consumed = 0
  const source: RoleHandler = {
    async *iterBatches() {
      yield { batch_uid: 'b0', payload: { items: [1] } }
      yield { batch_uid: 'b1', payload: { items: [2] } }
    },
    async processBatch(batch, ctx) {
      if (batch.batch_uid === 'b1') await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }))
      return { meta: { items: batch.payload['items'] }, metrics: { count: 1 } }
    },
  }
  const consumer: RoleHandler = {
    async processBatch() {
      consumed++
      return { metrics: { count: 1 } }
    },
  }
  const rt = await startRuntime({
    bus: new MemoryBus(),
    store: new MemoryStore(),
    workerStore: (inner) => hangingListings(inner, hung),
    logger,
    worker: { concurrency: 4, cancelGraceMs: 60_000 },
    handlers: { src: source, cons: consumer },
  })
  try {
    const id = await rt.coordinator.createTask({
      graph: {
        nodes: [
          { node_id: 'source', type: 'src' },
          { node_id: 'consumer', type: 'cons', depends_on: ['source'], io: { start_when: 'first_batch', input_inline: { input_adapter: 'pull.from_artifacts', input_args: { from_nodes: ['source'], poll_ms: 5 } } } },
        ],
      },
    })
    await waitFor(() => consumed === 1, { message: 'the consumer never read the first batch' })
    hung.on = true
    await waitFor(() => hung.calls > 0, { message: 'no hung listing' })
    assert.equal(await rt.coordinator.cancelTask(id), true)
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 15_000 })
    assert.equal(t.status, 'cancelled')
    assert.equal(t.nodes.find((n) => n.node_id === 'consumer')?.status, 'cancelled')
    assert.ok(!logger.records.some((r) => r.event === 'worker.cancel_grace_expired'), 'the consumer answered its cancel')
  } finally {
    await rt.stop()
  }
})

test("a cancel ends a handler's wait for ctx.lastCheckpoint() on a store that does not answer", async () => {
  const logger = new MemoryLogger()
  let hung = false
  let reads = 0
  const slow = (inner: Store): Store =>
    overrideStore(inner, {
      getCheckpoint: (orig) => async (...args) => {
        if (!hung) return orig(...args)
        reads++
        return new Promise(() => undefined)
      },
    })
  const handler: RoleHandler = {
    async processBatch(_batch, ctx) {
      hung = true
      await ctx.lastCheckpoint()
      return { metrics: { count: 1 } }
    },
  }
  const rt = await startRuntime({ bus: new MemoryBus(), store: new MemoryStore(), workerStore: slow, logger, worker: { cancelGraceMs: 60_000 }, handlers: { step: handler } })
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'step' }] } })
    await waitFor(() => reads > 0, { message: 'no checkpoint read' })
    assert.equal(await rt.coordinator.cancelTask(id), true)
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 15_000 })
    assert.equal(t.status, 'cancelled')
    assert.ok(!logger.records.some((r) => r.event === 'worker.cancel_grace_expired'), 'the handler answered its cancel')
  } finally {
    await rt.stop()
  }
})
