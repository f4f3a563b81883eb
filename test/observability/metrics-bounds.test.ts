/**
 * Metrics that stay right over a process's life: the `type` label is bounded (types come from
 * submitted graphs: one graph of made-up types created thousands of series that never go away),
 * and the store-call histograms keep counting after a shared registry's `resetMetrics()` (they
 * kept their series in a closure, counted into it, and never exported it again).
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Registry } from 'prom-client'
import { Coordinator, MemoryBus, MemoryStore, Worker } from 'flowkit'
import { MAX_TYPE_LABELS, OTHER_TYPE } from '../../src/observability/coordinator-metrics.ts'
import { noopHandler } from '../helpers/runtime.ts'
import { waitFor } from '../helpers/wait.ts'
import { type Samples, parseMetrics, sample, scrape } from './helpers.ts'

/** The values of a metric's series. */
const series = (m: Samples, name: string): number[] => [...m].filter(([k]) => k.startsWith(`${name}{`)).map(([, v]) => v)

test('the type label names the first MAX_TYPE_LABELS node types; later ones are counted under (other)', async () => {
  const c = new Coordinator({ bus: new MemoryBus(), store: new MemoryStore() })
  await c.start()
  try {
    const extra = 50
    const nodes = Array.from({ length: MAX_TYPE_LABELS + extra }, (_, i) => ({ node_id: `n${i}`, type: `made_up_${i}` }))
    const id = await c.createTask({ graph: { nodes } })
    const queued = await scrape(c.metricsHandler())
    const gauge = series(queued, 'flowkit_nodes')
    assert.equal(gauge.length, MAX_TYPE_LABELS + 1, 'the nodes waiting: one series per admitted type, one for (other)')
    assert.equal(gauge.reduce((sum, v) => sum + v, 0), MAX_TYPE_LABELS + extra, 'every node counted')
    // No worker serves these types: the cancel ends every node at once.
    assert.equal(await c.cancelTask(id), true)
    assert.equal((await c.waitForTask(id, { timeoutMs: 20_000 })).status, 'cancelled')
    const m = await scrape(c.metricsHandler())
    const cancels = series(m, 'flowkit_node_cancellations_total')
    assert.equal(cancels.length, MAX_TYPE_LABELS + 1, 'one series per admitted type, one for (other)')
    assert.equal(sample(m, 'flowkit_node_cancellations_total', { type: OTHER_TYPE }), extra)
    assert.equal(sample(m, 'flowkit_node_cancellations_total', { type: 'made_up_0' }), 1)
    assert.equal(cancels.reduce((sum, v) => sum + v, 0), MAX_TYPE_LABELS + extra, 'every cancel counted')
  } finally {
    await c.stop()
  }
})

test("store-call histograms keep counting after a shared registry's resetMetrics()", async () => {
  const registry = new Registry()
  const bus = new MemoryBus()
  const store = new MemoryStore()
  const c = new Coordinator({ bus, store, observability: { metrics: registry } })
  const w = new Worker({ bus, store, handlers: { h: noopHandler() }, observability: { metrics: false } })
  await c.start()
  await w.start()
  // A verb every task's run calls (its journal entries), timed before and after the reset.
  const storeCalls = async (): Promise<number> => sample(parseMetrics(await registry.metrics()), 'flowkit_coordinator_store_call_seconds_count', { op: 'appendJournal', outcome: 'ok' }) ?? 0
  const run = async () => {
    const id = await c.createTask({ graph: { nodes: [{ node_id: 'a', type: 'h' }] } })
    assert.equal((await c.waitForTask(id, { timeoutMs: 20_000 })).status, 'finished')
  }
  try {
    await run()
    assert.ok((await storeCalls()) > 0, 'store calls timed')
    registry.resetMetrics()
    assert.equal(await storeCalls(), 0, 'reset')
    await run()
    await waitFor(async () => (await storeCalls()) > 0, { timeoutMs: 10_000, message: 'store calls timed again after the reset' })
  } finally {
    await w.stop()
    await c.stop()
  }
})
