/**
 * Coordinators of one group (same bus, same groupId) must share one database: a task one of them
 * creates is handed to its owner, which runs it in its own store, unseen by the creator (queued
 * for ever there). The owner says so, naming the fix, instead of nothing.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Coordinator, MemoryLogger, MemoryStore } from 'flowkit'
import { noopHandler, startRuntime } from '../helpers/runtime.ts'
import { waitFor } from '../helpers/wait.ts'

const ONE = { graph: { nodes: [{ node_id: 'a', type: 'step' }] } }

test('a coordinator handed a task its own database does not hold logs coordinator.store_mismatch; one sharing the database does not', async () => {
  const rt = await startRuntime({ handlers: { step: noopHandler() } })
  const sharedLog = new MemoryLogger()
  const ownLog = new MemoryLogger()
  const shared = new Coordinator({ bus: rt.bus, store: rt.store, logger: sharedLog, config: { ...rt.coordinatorBase } })
  const ownStore = new MemoryStore()
  const other = new Coordinator({ bus: rt.bus, store: ownStore, logger: ownLog, config: { ...rt.coordinatorBase } })
  try {
    // Same database: tasks created on the first coordinator and owned by the second run, no error.
    /** A task created on the runtime's coordinator that `owner` owns (it is handed over). */
    const handedTo = async (owner: Coordinator): Promise<string> => {
      await owner.start()
      await waitFor(() => owner.ownership.partitions.length > 0 && rt.coordinator.ownership.partitions.length > 0, { timeoutMs: 30_000 })
      for (;;) {
        const id = await rt.coordinator.createTask(ONE)
        if (owner.ownsTask(id)) return id
      }
    }
    const handed = await handedTo(shared)
    assert.equal((await rt.coordinator.waitForTask(handed, { timeoutMs: 20_000 })).status, 'finished')
    assert.deepEqual(sharedLog.records.filter((r) => r.event === 'coordinator.store_mismatch'), [])
    await shared.stop()

    // Another database in the same group: the owner says so.
    const lost = await handedTo(other)
    await waitFor(() => ownLog.records.some((r) => r.event === 'coordinator.store_mismatch'), { timeoutMs: 20_000, message: 'the owner logs the mismatch' })
    const rec = ownLog.records.find((r) => r.event === 'coordinator.store_mismatch')
    assert.equal(rec?.level, 'error')
    assert.equal(rec?.fields?.['task_id'], lost)
    assert.match(String(rec?.fields?.['hint']), /must share one database/)
  } finally {
    await other.stop()
    await shared.stop()
    await rt.stop()
    await ownStore.close()
  }
})
