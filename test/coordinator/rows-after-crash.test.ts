/**
 * Batch metrics rows (the store's read model: the dashboard's per-attempt batch counts, external
 * readers) are written after their journal entries, in the background: a coordinator killed before
 * writing them lost them for good, the next owner wrote only the rows of what it counted itself
 * (an audit on Kafka + FerretDB found a sink with 4 rows for 6 counted batches). The claimant of a
 * task offers again the rows of the counts it loaded (insert-only: those written stay as they are).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Coordinator, MemoryBus, MemoryStore, type RoleHandler, Worker } from 'flowkit'
import { overrideStore } from '../helpers/store-proxy.ts'
import { gate } from '../helpers/gate.ts'
import { waitFor } from '../helpers/wait.ts'

test("rows a killed coordinator never wrote are written by the task's next owner", async () => {
  const bus = new MemoryBus()
  const plain = new MemoryStore()
  // The first coordinator's row writes never complete (it dies before they would).
  const rowless = overrideStore(plain, { insertBatchMetrics: () => () => new Promise<void>(() => undefined) })
  const held = gate()
  const source: RoleHandler = {
    async *iterBatches() {
      for (let i = 0; i < 3; i++) yield { batch_uid: `b${i}`, payload: {} }
    },
    async processBatch() {
      return { metrics: { count: 1 } }
    },
  }
  const sink: RoleHandler = {
    async processBatch(_b, ctx) {
      await held.wait(ctx.signal)
      return { metrics: { count: 1 } }
    },
  }
  const worker = new Worker({ bus, store: plain, handlers: { source, sink } })
  const first = new Coordinator({ bus, store: rowless, config: { sweepIntervalSec: 3600, discoveryWindowSec: 0.5 } })
  await first.start()
  await worker.start()
  let second: Coordinator | null = null
  try {
    const id = await first.createTask({ graph: { nodes: [{ node_id: 'src', type: 'source' }, { node_id: 'sink', type: 'sink', depends_on: ['src'] }] } })
    await waitFor(async () => (await plain.getTask(id))?.nodes['sink']?.accepted_at_ms != null, { message: 'sink never started' })
    assert.deepEqual(await plain.listBatchMetrics(id, 'src'), [], 'no row written yet')
    await first.kill()
    second = new Coordinator({ bus, store: plain, config: { sweepIntervalSec: 3600, discoveryWindowSec: 0.5 } })
    await second.start()
    held.open()
    assert.equal((await second.waitForTask(id, { timeoutMs: 20_000 })).status, 'finished')
    await waitFor(async () => (await plain.listBatchMetrics(id, 'src')).filter((r) => r.batch_uid.startsWith('b')).length === 3, { timeoutMs: 20_000, message: `rows of src: ${JSON.stringify((await plain.listBatchMetrics(id, 'src')).map((r) => r.batch_uid))}` })
    const rows = await plain.listBatchMetrics(id, 'src')
    assert.deepEqual(rows.filter((r) => r.batch_uid.startsWith('b')).map((r) => [r.batch_uid, r.attempt_epoch, r.metrics]).sort(), [
      ['b0', 1, { count: 1 }],
      ['b1', 1, { count: 1 }],
      ['b2', 1, { count: 1 }],
    ])
  } finally {
    held.open()
    await worker.stop()
    await second?.stop()
  }
})

test('a task that ends while its rows are unwritten is not ended in the store before them: the next coordinator finds it and writes them', async () => {
  const bus = new MemoryBus()
  const plain = new MemoryStore()
  // The first coordinator's row writes never complete; its stop gives them up.
  const rowless = overrideStore(plain, { insertBatchMetrics: () => () => new Promise<void>(() => undefined) })
  const source: RoleHandler = {
    async *iterBatches() {
      for (let i = 0; i < 3; i++) yield { batch_uid: `b${i}`, payload: {} }
    },
    async processBatch() {
      return { metrics: { count: 1 } }
    },
  }
  const worker = new Worker({ bus, store: plain, handlers: { source } })
  const first = new Coordinator({ bus, store: rowless, config: { sweepIntervalSec: 3600, discoveryWindowSec: 0.5, stopSnapshotsSec: 0.5 } })
  await first.start()
  await worker.start()
  let second: Coordinator | null = null
  try {
    const id = await first.createTask({ graph: { nodes: [{ node_id: 'src', type: 'source' }] } })
    assert.equal((await first.waitForTask(id, { timeoutMs: 20_000 })).status, 'finished')
    await first.stop()
    assert.deepEqual(await plain.listBatchMetrics(id, 'src'), [], 'no row written')
    const snapshotStatus = async (): Promise<string | undefined> => (await plain.listTaskStatuses(['queued', 'running', 'cancelling', 'finished', 'failed', 'cancelled'])).find((t) => t.id === id)?.status
    assert.notEqual(await snapshotStatus(), 'finished', 'its snapshot waited for the rows: the store still has it active')
    second = new Coordinator({ bus, store: plain, config: { sweepIntervalSec: 3600, discoveryWindowSec: 0.5 } })
    await second.start()
    await waitFor(async () => (await plain.listBatchMetrics(id, 'src')).filter((r) => r.batch_uid.startsWith('b')).length === 3, { timeoutMs: 20_000, message: `rows of src: ${JSON.stringify((await plain.listBatchMetrics(id, 'src')).map((r) => r.batch_uid))}` })
    await waitFor(async () => (await snapshotStatus()) === 'finished', { timeoutMs: 20_000, message: 'the snapshot is repaired' })
  } finally {
    await worker.stop()
    await second?.stop()
  }
})
