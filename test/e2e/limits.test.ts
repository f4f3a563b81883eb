import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import type { RoleHandler } from 'flowkit'
import { startRuntime } from '../helpers/runtime.ts'

/**
 * Records how many runs of each role overlap. `overlap(role, total, ofRole)` says whether a run may
 * finish: runs hold their slot until it is true (or 1 s passes), so parallelism that the limits
 * allow is observable whatever the machine's speed.
 */
function tracker(overlap: (role: string, total: number, ofRole: number) => boolean = () => true) {
  const active = new Map<string, number>()
  const peak = new Map<string, number>()
  let total = 0
  let peakTotal = 0
  const workers = new Set<string>()
  const handler = (role: string): RoleHandler => ({
    async processBatch(_b, ctx) {
      workers.add(ctx.workerId)
      active.set(role, (active.get(role) ?? 0) + 1)
      total++
      peak.set(role, Math.max(peak.get(role) ?? 0, active.get(role)!))
      peakTotal = Math.max(peakTotal, total)
      const until = performance.now() + 1000
      while (!overlap(role, total, active.get(role)!) && performance.now() < until) await new Promise((r) => setTimeout(r, 5))
      active.set(role, active.get(role)! - 1)
      total--
      return { metrics: { count: 1 } }
    },
  })
  return { handler, peak, workers, get peakTotal() { return peakTotal } }
}

const wide = (type: string, n: number, prefix = 'n') => Array.from({ length: n }, (_, i) => ({ node_id: `${prefix}${i}`, type }))

describe('concurrency limits', () => {
  test('S-013/S-016 a global limit on running nodes holds within and across tasks', async () => {
    const t = tracker((_role, total) => total >= 2)
    const rt = await startRuntime({
      handlers: { a: t.handler('a'), b: t.handler('b') },
      worker: { concurrency: 8 },
      workers: 2,
      coordinator: { maxRunningNodes: 3 },
    })
    try {
      const ids = await Promise.all([
        rt.coordinator.createTask({ graph: { nodes: wide('a', 6) } }),
        rt.coordinator.createTask({ graph: { nodes: wide('b', 6) } }),
      ])
      for (const id of ids) assert.equal((await rt.coordinator.waitForTask(id, { timeoutMs: 20000 })).status, 'finished')
      assert.ok(t.peakTotal <= 3, `peak ${t.peakTotal} > 3`)
      assert.ok(t.peakTotal >= 2, 'the limit still allows parallelism')
    } finally {
      await rt.stop()
    }
  })

  test('S-014 per-type limits hold while other types run freely', async () => {
    const t = tracker((role, _total, ofRole) => role !== 'free' || ofRole >= 2)
    const rt = await startRuntime({
      handlers: { slowtype: t.handler('slowtype'), free: t.handler('free') },
      worker: { concurrency: 10 },
      coordinator: { maxRunningByType: { slowtype: 1 } },
    })
    try {
      const id = await rt.coordinator.createTask({ graph: { nodes: [...wide('slowtype', 4, 's'), ...wide('free', 4, 'f')] } })
      assert.equal((await rt.coordinator.waitForTask(id, { timeoutMs: 20000 })).status, 'finished')
      assert.equal(t.peak.get('slowtype'), 1)
      assert.ok((t.peak.get('free') ?? 0) >= 2, 'free type ran in parallel')
    } finally {
      await rt.stop()
    }
  })

  test('S-015 independent nodes of one type spread over several workers', async () => {
    const t = tracker()
    const rt = await startRuntime({ handlers: { a: t.handler('a') }, worker: { concurrency: 1 }, workers: 3, coordinator: { topicPartitions: 6 } })
    try {
      const id = await rt.coordinator.createTask({ graph: { nodes: wide('a', 12) } })
      assert.equal((await rt.coordinator.waitForTask(id, { timeoutMs: 20000 })).status, 'finished')
      assert.ok(t.workers.size >= 2, `only ${t.workers.size} worker(s) took work`)
    } finally {
      await rt.stop()
    }
  })
})
