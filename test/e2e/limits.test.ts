import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import type { RoleHandler } from 'flowkit'
import { startRuntime } from '../helpers/runtime.ts'

/**
 * Records how many runs of each role overlap. `release(role, total, ofRole, heldMs)` says whether
 * a run may finish: runs hold their slot until it is true (or 1 s passes). A run that holds its
 * slot until it sees more runs than a limit allows (or a while has passed) makes a broken limit
 * show in the peak, and the parallelism a limit allows observable, whatever the machine's speed.
 */
function tracker(release: (role: string, total: number, ofRole: number, heldMs: number) => boolean = () => true) {
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
      const start = performance.now()
      while (!release(role, total, active.get(role)!, performance.now() - start) && performance.now() - start < 1000) await new Promise((r) => setTimeout(r, 5))
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
    // Each run holds its slot 150 ms, or until more than the limit run at once (a broken limit).
    const t = tracker((_role, total, _ofRole, heldMs) => total > 3 || heldMs >= 150)
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
    // slowtype runs hold 150 ms, or until a second one runs (a broken limit); free ones until two run.
    const t = tracker((role, _total, ofRole, heldMs) => (role === 'free' ? ofRole >= 2 : ofRole > 1 || heldMs >= 150))
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
