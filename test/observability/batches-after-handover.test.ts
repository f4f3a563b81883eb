/**
 * `flowkit_batches_total{type}` after a hand-over: the coordinator that takes a task over may
 * first see a node in a journal entry that both counts its last batch and ends it (it holds no
 * attempt for that node then). Those batches were counted as `type="unknown"` (an audit with
 * several coordinators on Kafka + FerretDB: sink 325 against 327 journalled, unknown 2); the type
 * is the node's, from the entry.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Coordinator, MemoryBus, MemoryStore, type RoleHandler, Worker } from 'flowkit'
import { gate } from '../helpers/gate.ts'
import { waitFor } from '../helpers/wait.ts'
import { sample, scrape } from './helpers.ts'

test('a batch whose report ends its node, first seen by the coordinator that took the task over, counts under the node type (not unknown)', async () => {
  const bus = new MemoryBus()
  const store = new MemoryStore()
  const held = gate()
  const job: RoleHandler = {
    async processBatch(_b, ctx) {
      await held.wait(ctx.signal)
      return { metrics: { count: 1 } }
    },
  }
  const worker = new Worker({ bus, store, handlers: { job } })
  const first = new Coordinator({ bus, store, config: { sweepIntervalSec: 3600, discoveryWindowSec: 0.5 } })
  await first.start()
  await worker.start()
  let second: Coordinator | null = null
  try {
    const id = await first.createTask({ graph: { nodes: [{ node_id: 'a', type: 'job' }] } })
    await waitFor(async () => (await store.getTask(id))?.nodes['a']?.accepted_at_ms != null, { message: 'a never accepted' })
    await first.kill()
    // The run ends while no coordinator reads: its BATCH_OK and TASK_DONE wait on the bus, and the
    // next owner applies them in one flush (one entry that counts the batch and ends the node).
    held.open()
    await waitFor(() => worker.activeRuns().length === 0, { message: 'the run ended' })
    second = new Coordinator({ bus, store, config: { sweepIntervalSec: 3600, discoveryWindowSec: 0.5 } })
    await second.start()
    assert.equal((await second.waitForTask(id, { timeoutMs: 20_000 })).status, 'finished')
    const m = await scrape(second.metricsHandler())
    assert.equal(sample(m, 'flowkit_batches_total', { type: 'job' }), 1)
    assert.equal(sample(m, 'flowkit_batches_total', { type: 'unknown' }) ?? 0, 0)
  } finally {
    held.open()
    await worker.stop()
    await second?.stop()
  }
})
