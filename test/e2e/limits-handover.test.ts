/**
 * Concurrency limits across a hand-over. A coordinator whose running nodes leave with their tasks
 * (a partition given to a coordinator that joined) gets those slots back, and must hand them to
 * the nodes of its remaining tasks that wait for capacity at once: nothing else would (no node of
 * its own ends). Before, the slots came back without waking a waiter, and such tasks stayed
 * `queued` (seen in the reliability scenario coordinators-3: tasks left with a node queued after
 * all its parents finished).
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { Coordinator, type RoleHandler } from 'flowkit'
import { gate } from '../helpers/gate.ts'
import { startRuntime } from '../helpers/runtime.ts'
import { idOn } from '../helpers/task-ids.ts'
import { waitFor } from '../helpers/wait.ts'

describe('limits and hand-over', () => {
  test('slots freed by tasks handed to a joining coordinator go to the waiting nodes of the tasks that stay', { timeout: 120_000 }, async () => {
    const hold = gate()
    const holding: RoleHandler = {
      async processBatch(_b, ctx) {
        await hold.wait(ctx.signal)
        return { metrics: { count: 1 } }
      },
    }
    const quick: RoleHandler = { processBatch: async () => ({ metrics: { count: 1 } }) }
    const rt = await startRuntime({
      handlers: { hold: holding, quick },
      worker: { concurrency: 64 },
      coordinator: { discoveryWindowSec: 0.5 },
    })
    const count = rt.coordinator.ownership.of
    // As many slots as partitions: one held node per partition fills them; then one quick node per
    // partition waits for capacity.
    const config = { ...rt.coordinatorBase, discoveryWindowSec: 0.5, maxRunningNodes: count }
    await rt.coordinator.stop()
    const first = new Coordinator({ bus: rt.bus, store: rt.store, config })
    const second = new Coordinator({ bus: rt.bus, store: rt.store, config })
    try {
      await first.start()
      await waitFor(async () => first.ownership.partitions.length === count, { timeoutMs: 30_000, message: 'the first coordinator owns every partition' })
      const held: string[] = []
      for (let p = 0; p < count; p++) held.push(await first.createTask({ id: idOn('held', p, count), graph: { nodes: [{ node_id: 'h', type: 'hold' }] } }))
      await waitFor(async () => (await Promise.all(held.map((id) => first.getTask(id)))).every((t) => t?.nodes[0]?.status === 'running'), {
        timeoutMs: 30_000,
        message: 'every held node running',
      })
      const waiting: string[] = []
      for (let p = 0; p < count; p++) waiting.push(await first.createTask({ id: idOn('waiting', p, count), graph: { nodes: [{ node_id: 'q', type: 'quick' }] } }))

      await second.start()
      await waitFor(async () => second.ownership.partitions.length > 0 && first.ownership.partitions.length > 0 && first.ownership.partitions.length + second.ownership.partitions.length === count, {
        timeoutMs: 30_000,
        message: 'the partitions are shared',
      })
      // Every waiting task finishes while the held nodes still run: those that stayed with the
      // first coordinator on the slots the moved held nodes gave back, the moved ones on the second.
      for (const id of waiting) {
        const t = await first.waitForTask(id, { timeoutMs: 30_000 })
        assert.equal(t.status, 'finished', `${id} (${first.ownsTask(id) ? 'stayed with the first coordinator' : 'moved'}): ${t.status}, node ${t.nodes[0]?.status}`)
      }
      assert.equal(hold.opened, false)
      hold.open()
      for (const id of held) assert.equal((await first.waitForTask(id, { timeoutMs: 30_000 })).status, 'finished')
    } finally {
      hold.open()
      await second.stop()
      await first.stop()
      await rt.stop()
    }
  })
})
