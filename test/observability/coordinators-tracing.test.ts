/**
 * Tracing with several coordinators on one bus and store (docs/scaling.md): the reports another
 * coordinator reads and forwards still link the owner's attempt spans to the workers' run spans,
 * and a task handed to another coordinator has its spans ended at the hand-over (they stayed
 * open until the coordinator stopped, then ended "unfinished").
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Coordinator, MemoryBus, MemoryStore, type RoleHandler, Worker } from 'flowkit'
import { waitFor } from '../helpers/wait.ts'
import { memoryTracing } from './helpers.ts'

test('two coordinators: forwarded acceptances link the attempt spans; a handed-over task\'s spans end at the hand-over, marked so', async () => {
  const { provider, spans } = memoryTracing()
  const bus = new MemoryBus()
  const store = new MemoryStore()
  const config = { sweepIntervalSec: 3600, schedulerTickSec: 0.05 }
  let open = false
  const s: RoleHandler = {
    async processBatch(_b, ctx) {
      while (!open) await ctx.sleep(20)
      return { metrics: { count: 1 } }
    },
  }
  const c1 = new Coordinator({ bus, store, observability: { tracing: provider }, config: { ...config, coordinatorId: 'c1' } })
  const c2 = new Coordinator({ bus, store, observability: { tracing: provider }, config: { ...config, coordinatorId: 'c2' } })
  const w = new Worker({ bus, store, handlers: { s }, observability: { tracing: provider }, config: { concurrency: 32 } })
  await c1.start()
  await w.start()
  try {
    const graph = { nodes: [{ node_id: 'a', type: 's' }] }
    const first: string[] = []
    for (let i = 0; i < 12; i++) first.push(await c1.createTask({ graph }))
    await waitFor(async () => (await Promise.all(first.map((id) => c1.getTask(id)))).every((t) => t?.nodes[0]?.accepted_at_ms != null), { message: 'not all accepted' })
    await c2.start()
    await waitFor(() => c1.ownership.partitions.length > 0 && c2.ownership.partitions.length > 0 && c1.ownership.partitions.length + c2.ownership.partitions.length === c1.ownership.of, { message: 'partitions never split' })
    const moved = first.filter((id) => !c1.ownsTask(id))
    assert.ok(moved.length > 0, 'some tasks moved to c2')
    // Handed over: c1's spans of those tasks are ended now, not when c1 stops.
    await waitFor(() => moved.every((id) => spans('flowkit.task').some((sp) => sp.attributes['flowkit.task.id'] === id && sp.attributes['flowkit.task.handed_over'] === true)), { message: "c1's spans of the moved tasks did not end at the hand-over" })
    const handedAttempts = spans('flowkit.node.attempt').filter((sp) => moved.includes(sp.attributes['flowkit.task.id'] as string) && sp.attributes['flowkit.attempt.outcome'] === 'handed_over')
    assert.equal(handedAttempts.length, moved.length)
    open = true
    for (const id of first) assert.equal((await (c1.ownsTask(id) ? c1 : c2).waitForTask(id, { timeoutMs: 20_000 })).status, 'finished')

    // Created with both running: each owner's attempt span is linked to the run span, whichever
    // coordinator read the acceptance from its status partition.
    const second: string[] = []
    for (let i = 0; i < 12; i++) second.push(await c1.createTask({ graph }))
    for (const id of second) assert.equal((await (c1.ownsTask(id) ? c1 : c2).waitForTask(id, { timeoutMs: 20_000 })).status, 'finished')
    assert.ok(second.some((id) => !c1.ownsTask(id)) && second.some((id) => c1.ownsTask(id)), 'both coordinators own some of them')
    const attempts = spans('flowkit.node.attempt').filter((sp) => second.includes(sp.attributes['flowkit.task.id'] as string))
    assert.equal(attempts.length, 12)
    assert.deepEqual(attempts.filter((sp) => sp.links.length === 0).map((sp) => sp.attributes['flowkit.task.id']), [], 'every attempt span linked to its run span')
    assert.equal(spans('flowkit.task').filter((sp) => sp.attributes['flowkit.task.unfinished'] === true).length, 0)
  } finally {
    await w.stop()
    await c1.stop()
    await c2.stop()
  }
})
