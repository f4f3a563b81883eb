/**
 * flowkit_node_dispatch_accept_seconds measures an acceptance once: a coordinator that loads a task
 * after a restart (or a hand-over) does not measure again the acceptance of a node its previous
 * owner saw accepted (an audit found one more sample per running node and per restart).
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Coordinator, MemoryBus, MemoryStore, type RoleHandler, Worker } from 'flowkit'
import { gate } from '../helpers/gate.ts'
import { waitFor } from '../helpers/wait.ts'
import { sample, scrape } from './helpers.ts'

const accepts = async (c: Coordinator, type: string): Promise<number> => sample(await scrape(c.metricsHandler()), 'flowkit_node_dispatch_accept_seconds_count', { type }) ?? 0

test('a running node accepted before a coordinator restart is not measured again by the next coordinator', async () => {
  const bus = new MemoryBus()
  const store = new MemoryStore()
  const cfg = { sweepIntervalSec: 3600, discoveryWindowSec: 1 }
  const release = gate()
  const started = gate()
  const held: RoleHandler = {
    async processBatch(_b, ctx) {
      started.open()
      await release.wait(ctx.signal)
      return {}
    },
  }
  const worker = new Worker({ bus, store, handlers: { held, quick: { async processBatch() { return {} } } }, config: { workerId: 'w1' } })
  const first = new Coordinator({ bus, store, config: { ...cfg, coordinatorId: 'c1' } })
  await first.start()
  await worker.start()
  let second: Coordinator | null = null
  try {
    const id = await first.createTask({ graph: { nodes: [{ node_id: 'n', type: 'held' }] } })
    await started.wait()
    await waitFor(async () => (await accepts(first, 'held')) === 1, { message: 'the first coordinator never measured the acceptance' })
    await waitFor(async () => (await store.getTask(id))?.nodes['n']?.accepted_at_ms != null, { message: 'the acceptance was never written' })
    await first.kill()
    second = new Coordinator({ bus, store, config: { ...cfg, coordinatorId: 'c2' } })
    await second.start()
    release.open()
    const t = await second.waitForTask(id, { timeoutMs: 20_000 })
    assert.equal(t.status, 'finished')
    assert.equal(t.nodes.find((n) => n.node_id === 'n')?.attempt_epoch, 1, 'adopted, not run again')
    // A node dispatched by the second coordinator is measured there.
    const other = await second.createTask({ graph: { nodes: [{ node_id: 'q', type: 'quick' }] } })
    assert.equal((await second.waitForTask(other, { timeoutMs: 20_000 })).status, 'finished')
    assert.equal(await accepts(second, 'quick'), 1, 'its own dispatch measured')
    assert.equal(await accepts(second, 'held'), 0, 'the adopted acceptance measured once, by the first coordinator')
  } finally {
    await worker.stop()
    await second?.stop()
  }
})
