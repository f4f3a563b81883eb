/**
 * A run's complete artifact is never durable before its partial artifacts, nor before its
 * BATCH_OKs are on the bus (a coordinator that finds it finishes the node from it). A handler with
 * finalize sees its partial artifacts durable there.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ErrorCode, FlowkitError, MemoryBus, MemoryStore, type ArtifactWrite, type RoleHandler } from 'flowkit'
import { sourceHandler, startRuntime } from '../helpers/runtime.ts'
import { storeWithArtifactHook } from '../helpers/artifact-hook.ts'
import { gate } from '../helpers/gate.ts'
import { waitFor } from '../helpers/wait.ts'
import { overrideStore } from '../helpers/store-proxy.ts'

const storeWith = storeWithArtifactHook

const names = (list: readonly ArtifactWrite[]): string[] => list.map((a) => a.batch_uid ?? 'complete')

function kindsOf(bus: MemoryBus, topic: string): string[] {
  return bus.records(topic).map((r) => (JSON.parse(r.value) as { payload: { kind: string } }).payload.kind)
}

/** Holds the BATCH_OK of batch `uid` on its way to the bus until `held` opens. */
function holdBatchOk(bus: MemoryBus, uid: string): { held: ReturnType<typeof gate>; holding: () => boolean } {
  const held = gate()
  let holding = false
  bus.setInterceptor(async (record) => {
    if (record.value.includes('"BATCH_OK"') && record.value.includes(`"batch_uid":"${uid}"`)) {
      holding = true
      await held.wait()
    }
    return { action: 'pass' }
  })
  return { held, holding: () => holding }
}

/** While the BATCH_OK of `uid` is held: its partial artifact is stored, and no complete artifact. */
async function noCompleteWhileHeld(store: MemoryStore, id: string, uid: string, holding: () => boolean): Promise<void> {
  await waitFor(holding)
  await waitFor(async () => (await store.getArtifact(id, 'n', uid)) !== null)
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r))
  assert.equal(await store.getArtifact(id, 'n', null), null, 'no complete artifact while a BATCH_OK of the run is not on the bus')
}

test('the complete artifact is written only once every BATCH_OK of the run is on the bus (a coordinator finishing the node from it has all its batches)', async () => {
  const store = new MemoryStore()
  const bus = new MemoryBus()
  const { held, holding } = holdBatchOk(bus, 's2')
  const rt = await startRuntime({ bus, store, handlers: { src: sourceHandler(30, 10) } })
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'src' }] } })
    await noCompleteWhileHeld(store, id, 's2', holding)
    held.open()
    assert.equal((await rt.coordinator.waitForTask(id, { timeoutMs: 10_000 })).status, 'finished')
    assert.deepEqual((await store.getArtifact(id, 'n', null))?.meta, { batches: 3 })
  } finally {
    held.open()
    await rt.stop()
  }
})

test('markComplete from processBatch: the complete artifact is written at the end of the run, once its BATCH_OKs are on the bus, with the handler\'s meta', async () => {
  const store = new MemoryStore()
  const bus = new MemoryBus()
  const { held, holding } = holdBatchOk(bus, 's1')
  const src = sourceHandler(20, 10)
  const handler: RoleHandler = {
    ...src,
    async processBatch(batch, ctx) {
      if (batch.batch_uid === 's1') await ctx.artifacts.markComplete({ manifest: 'm' })
      return src.processBatch(batch, ctx)
    },
  }
  const rt = await startRuntime({ bus, store, handlers: { src: handler } })
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'src' }] } })
    await noCompleteWhileHeld(store, id, 's1', holding)
    held.open()
    assert.equal((await rt.coordinator.waitForTask(id, { timeoutMs: 10_000 })).status, 'finished')
    assert.deepEqual((await store.getArtifact(id, 'n', null))?.meta, { manifest: 'm' })
  } finally {
    held.open()
    await rt.stop()
  }
})

test('markComplete from processBatch, then a later batch fails: the run fails and leaves no complete artifact', async () => {
  const store = new MemoryStore()
  const src = sourceHandler(20, 10)
  const handler: RoleHandler = {
    ...src,
    async processBatch(batch, ctx) {
      if (batch.batch_uid === 's0') await ctx.artifacts.markComplete({ manifest: 'm' })
      if (batch.batch_uid === 's1') throw Object.assign(new Error('planned'), { permanent: true })
      return src.processBatch(batch, ctx)
    },
    classifyError: () => ({ reasonCode: 'planned', permanent: true }),
  }
  const rt = await startRuntime({ store, handlers: { src: handler } })
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'src', retry_policy: { max: 1 } }] } })
    assert.equal((await rt.coordinator.waitForTask(id, { timeoutMs: 10_000 })).status, 'failed')
    assert.equal(await store.getArtifact(id, 'n', null), null)
  } finally {
    await rt.stop()
  }
})

test('a handler with finalize sees its partial artifacts durable there; its complete artifact is written after it', async () => {
  const calls: string[][] = []
  const store = storeWith(async (list) => {
    calls.push(names(list))
  })
  const seenInFinalize: string[] = []
  const src = sourceHandler(20, 10)
  const handler: RoleHandler = {
    ...src,
    async finalize(ctx) {
      const arts = await store.listArtifacts(ctx.taskId)
      for (const a of arts) seenInFinalize.push(`${a.status} ${a.batch_uid ?? ''}`.trim())
      return { meta: { merged: arts.length } }
    },
  }
  const rt = await startRuntime({ bus: new MemoryBus(), store, handlers: { src: handler } })
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'src' }] } })
    assert.equal((await rt.coordinator.waitForTask(id, { timeoutMs: 10_000 })).status, 'finished')
    assert.deepEqual(seenInFinalize.sort(), ['partial s0', 'partial s1'])
    assert.deepEqual(calls.at(-1), ['complete'], 'the complete artifact in a call of its own, after finalize')
    assert.deepEqual((await store.getArtifact(id, 'n', null))?.meta, { merged: 2 })
  } finally {
    await rt.stop()
  }
})

test('the last partial artifact cannot be written: the run fails and no complete artifact is written', async () => {
  const store = storeWith(async (list) => {
    if (list.some((a) => a.batch_uid === 's0')) throw new FlowkitError(ErrorCode.StoreError, 'injected: artifact s0 refused', { retryable: false })
  })
  const bus = new MemoryBus()
  const rt = await startRuntime({ bus, store, handlers: { src: sourceHandler(10, 10) } })
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'src', retry_policy: { max: 1 } }] } })
    assert.equal((await rt.coordinator.waitForTask(id, { timeoutMs: 10_000 })).status, 'failed')
    const seen = kindsOf(bus, rt.statusTopic('src'))
    assert.ok(!seen.includes('TASK_DONE') && !seen.includes('BATCH_OK'), seen.join(', '))
    assert.deepEqual(await store.listArtifacts(id), [])
  } finally {
    await rt.stop()
  }
})

/** Three batches of `rows: 1`; finalize returns `total_rows: 3` (after marking the node complete itself when `markInFinalize`). */
function withFinalize(markInFinalize = false): RoleHandler {
  return {
    *iterBatches() {
      for (let i = 0; i < 3; i++) yield { batch_uid: `b${i}`, payload: {} }
    },
    async processBatch() {
      return { metrics: { rows: 1 } }
    },
    async finalize(ctx) {
      if (markInFinalize) await ctx.artifacts.markComplete({ kind: 'own' })
      return { metrics: { total_rows: 3 } }
    },
  }
}

test('a worker that dies between its complete artifact and TASK_DONE: the node finished from the artifact keeps its finalize metrics', async () => {
  const store = new MemoryStore()
  let killed = false
  const rt = await startRuntime({
    bus: new MemoryBus(),
    store,
    coordinator: { leaseTtlSec: 2 },
    worker: { leaseTtlSec: 2, hbIntervalSec: 1 },
    workerStore: (s) =>
      overrideStore(s, {
        // The process dies once its complete artifact is durable: TASK_DONE is never sent.
        upsertArtifacts: (f) => async (...a: unknown[]) => {
          const out = await f(...a)
          if (!killed && (a[0] as ArtifactWrite[]).some((x) => x.batch_uid === null)) {
            killed = true
            await rt.workers[0]?.kill()
          }
          return out
        },
      }),
  })
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'load' }] } })
    await rt.addWorker({ load: withFinalize() })
    const view = await rt.coordinator.waitForTask(id, { timeoutMs: 30_000 })
    assert.ok(killed, 'the worker died after its complete artifact')
    assert.equal(view.status, 'finished')
    assert.equal(view.nodes[0]?.attempt_epoch, 1, 'finished from the artifact, not run again')
    assert.deepEqual(view.nodes[0]?.stats, { rows: 3, total_rows: 3 })
    assert.deepEqual((await store.getArtifact(id, 'n', null))?.final_metrics, { total_rows: 3 })
    // The batch-metrics rows (the store's read model) are written in the background.
    await waitFor(async () => (await store.listBatchMetrics(id, 'n')).some((r) => r.batch_uid === '__final__'), { message: 'the __final__ row' })
    assert.deepEqual((await store.listBatchMetrics(id, 'n')).find((r) => r.batch_uid === '__final__')?.metrics, { total_rows: 3 })
  } finally {
    await rt.stop()
  }
})

test('a complete artifact that finalize wrote itself (markComplete) is written again with the finalize metrics', async () => {
  const store = new MemoryStore()
  const rt = await startRuntime({ bus: new MemoryBus(), store, handlers: { load: withFinalize(true) } })
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'load' }] } })
    const view = await rt.coordinator.waitForTask(id, { timeoutMs: 10_000 })
    assert.deepEqual(view.nodes[0]?.stats, { rows: 3, total_rows: 3 }, 'counted once (TASK_DONE and the ledger agree)')
    const complete = await store.getArtifact(id, 'n', null)
    assert.deepEqual(complete?.meta, { kind: 'own' })
    assert.deepEqual(complete?.final_metrics, { total_rows: 3 })
  } finally {
    await rt.stop()
  }
})

test('the meta finalize returns is the complete artifact\'s, also when the handler called markComplete (from processBatch or from finalize)', async () => {
  for (const from of ['processBatch', 'finalize'] as const) {
    const store = new MemoryStore()
    const both: RoleHandler = {
      async processBatch(_b, ctx) {
        if (from === 'processBatch') await ctx.artifacts.markComplete({ kind: 'asked' })
        return { metrics: { rows: 1 } }
      },
      async finalize(ctx) {
        if (from === 'finalize') await ctx.artifacts.markComplete({ kind: 'asked' })
        return { meta: { kind: 'returned' } }
      },
    }
    const rt = await startRuntime({ bus: new MemoryBus(), store, handlers: { both } })
    try {
      const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'both' }] } })
      assert.equal((await rt.coordinator.waitForTask(id, { timeoutMs: 10_000 })).status, 'finished')
      assert.deepEqual((await store.getArtifact(id, 'n', null))?.meta, { kind: 'returned' }, `markComplete from ${from}`)
    } finally {
      await rt.stop()
    }
  }
})
