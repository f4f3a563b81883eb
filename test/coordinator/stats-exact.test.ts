/**
 * Node stats are exact whatever was retried (docs/handlers.md, "Metrics"), floating-point sums
 * included: a retried batch's contribution is summed again over the node's ledger in its place,
 * so a retried run ends with the very number a clean run gets. Before, the running sum
 * `cur + new - prev` drifted (239.07999999999998 clean, 239.08 retried; audit of 2026-12-07).
 * And a stat whose batches sum past the largest double is refused (`metric_overflow`), as
 * `vars.incr` refuses one: before, it became Infinity, shown as `null` in every JSON view, and
 * `metrics.aggregate` skipped it with a warning that the metric was missing.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { RoleHandler } from 'flowkit'
import { startRuntime } from '../helpers/runtime.ts'

const VALUES = [64.27, 45.97, 55.12, 73.72]

function revenue(failAt: string | null): RoleHandler {
  let fail = failAt
  return {
    async *iterBatches() {
      for (const [i, v] of VALUES.entries()) yield { batch_uid: `r${i}`, payload: { v } }
    },
    async processBatch(b) {
      if (b.batch_uid === fail) {
        fail = null
        throw new Error('transient')
      }
      return { metrics: { revenue: (b.payload as { v: number }).v } }
    },
  }
}

test('a retried node ends with the same floating-point stats as a clean run (each batch summed once, in order)', async () => {
  const clean = VALUES.reduce((a, b) => a + b, 0)
  for (const failAt of [null, 'r3', 'r2']) {
    const rt = await startRuntime({ handlers: { h: revenue(failAt) } })
    try {
      const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'h', retry_policy: { max: 2, backoff_sec: 0 } }] } })
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })
      assert.equal(t.status, 'finished')
      assert.equal(t.nodes[0]?.attempt_epoch, failAt === null ? 1 : 2)
      assert.equal(t.nodes[0]?.stats['revenue'], clean, `failing at ${failAt}`)
    } finally {
      await rt.stop()
    }
  }
})

test('a stat whose batches sum past the largest double fails the node (metric_overflow), not Infinity', async () => {
  const big: RoleHandler = {
    async *iterBatches() {
      yield { batch_uid: 'a', payload: {} }
      yield { batch_uid: 'b', payload: {} }
    },
    async processBatch() {
      return { metrics: { big: 1.5e308 } }
    },
  }
  const rt = await startRuntime({ handlers: { big } })
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'big' }] } })
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })
    assert.equal(t.status, 'failed')
    const n = t.nodes[0]
    assert.equal(n?.last_error?.reason_code, 'metric_overflow')
    assert.equal(n?.last_error?.permanent, true)
    assert.ok(Number.isFinite(n?.stats['big']), `stats stay finite: ${n?.stats['big']}`)
  } finally {
    await rt.stop()
  }
})

test('metrics.aggregate whose sum over several nodes is not finite fails (metric_overflow) instead of skipping the metric', async () => {
  const one: RoleHandler = {
    async processBatch() {
      return { metrics: { big: 1.5e308 } }
    },
  }
  const rt = await startRuntime({ handlers: { one } })
  try {
    const id = await rt.coordinator.createTask({
      graph: {
        nodes: [
          { node_id: 'a', type: 'one' },
          { node_id: 'b', type: 'one' },
          { node_id: 'agg', type: 'coordinator_fn', depends_on: ['a', 'b'], io: { fn: 'metrics.aggregate', fn_args: { from_nodes: ['a', 'b'], metric: 'big' } } },
        ],
      },
    })
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })
    const agg = t.nodes.find((n) => n.node_id === 'agg')
    assert.equal(agg?.status, 'failed')
    assert.equal(agg?.last_error?.reason_code, 'metric_overflow')
    assert.match(agg?.last_error?.error ?? '', /sum of "big" over a, b is not a finite number/)
  } finally {
    await rt.stop()
  }
})
