/**
 * A watch follows its task across a hand-over. A coordinator's watch of a task it owns is fed by
 * its own journal writes; when the task moves to another coordinator (a partition given to one
 * that joined), the watch must go on with the new owner's writes, read from the store's journal,
 * and end with the task's terminal event. Before, it waited for ever.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { Coordinator, type RoleHandler, type TaskEvent } from 'flowkit'
import { gate } from '../helpers/gate.ts'
import { startRuntime } from '../helpers/runtime.ts'
import { idOn } from '../helpers/task-ids.ts'
import { waitFor } from '../helpers/wait.ts'

describe('watch and hand-over', () => {
  test('a watch started on the owner ends with the terminal event after its task moved to a coordinator that joined', { timeout: 120_000 }, async () => {
    const hold = gate()
    const holding: RoleHandler = {
      async processBatch(_b, ctx) {
        await hold.wait(ctx.signal)
        return { metrics: { count: 1 } }
      },
    }
    const rt = await startRuntime({ handlers: { hold: holding }, worker: { concurrency: 64 }, coordinator: { discoveryWindowSec: 0.5 } })
    const count = rt.coordinator.ownership.of
    const config = { ...rt.coordinatorBase, discoveryWindowSec: 0.5 }
    await rt.coordinator.stop()
    const first = new Coordinator({ bus: rt.bus, store: rt.store, config })
    const second = new Coordinator({ bus: rt.bus, store: rt.store, config })
    const stopWatches = new AbortController()
    try {
      await first.start()
      await waitFor(async () => first.ownership.partitions.length === count, { timeoutMs: 30_000, message: 'the first coordinator owns every partition' })
      // One task per partition, so that some move whatever the assignment.
      const ids: string[] = []
      for (let p = 0; p < count; p++) ids.push(await first.createTask({ id: idOn('watched', p, count), graph: { nodes: [{ node_id: 'a', type: 'hold' }, { node_id: 'b', type: 'hold', depends_on: ['a'] }] } }))
      const seen = new Map<string, TaskEvent[]>(ids.map((id) => [id, []]))
      const watches = ids.map(async (id) => {
        for await (const e of first.watch(id, { signal: stopWatches.signal })) seen.get(id)?.push(e)
      })
      await waitFor(async () => ids.every((id) => (seen.get(id)?.length ?? 0) > 0), { timeoutMs: 30_000, message: 'every watch has its snapshot' })

      await second.start()
      await waitFor(async () => second.ownership.partitions.length > 0 && first.ownership.partitions.length + second.ownership.partitions.length === count, {
        timeoutMs: 30_000,
        message: 'the partitions are shared',
      })
      const moved = ids.filter((id) => !first.ownsTask(id))
      assert.ok(moved.length > 0, 'some tasks moved')
      hold.open()
      for (const id of ids) assert.equal((await second.waitForTask(id, { timeoutMs: 30_000 })).status, 'finished')
      await waitFor(async () => ids.every((id) => seen.get(id)?.at(-1)?.type === 'task'), {
        timeoutMs: 15_000,
        message: `every watch ends with the task's terminal event (moved: ${moved.join(', ')})`,
      })
      await Promise.all(watches)
      for (const id of moved) {
        const events = seen.get(id) ?? []
        const last = events.at(-1)
        assert.ok(last?.type === 'task' && last.status === 'finished', `${id}: ${JSON.stringify(last)}`)
        const b = events.filter((e) => e.type === 'node' && e.node_id === 'b').map((e) => (e.type === 'node' ? e.status : ''))
        assert.ok(b.includes('finished'), `${id}: node b's end was seen (${b.join(', ')})`)
      }
    } finally {
      stopWatches.abort()
      hold.open()
      await second.stop()
      await first.stop()
      await rt.stop()
    }
  })
})
