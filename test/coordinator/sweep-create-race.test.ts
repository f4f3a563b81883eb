/**
 * The sweep adopts queued tasks it does not hold (written by another process). A task this
 * coordinator is creating is in the store, queued, before its runtime exists: the sweep must not
 * adopt it then (it did: two runtimes of one task, the second's START fenced, the node left
 * unaccepted until the accept timeout resent it 30 s later).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryLogger } from 'flowkit'
import { noopHandler, startRuntime } from '../helpers/runtime.ts'

test('the sweep does not adopt a task this coordinator is creating: many tasks created during sweeps all finish at once', async () => {
  const logger = new MemoryLogger()
  const rt = await startRuntime({
    logger,
    handlers: { step: noopHandler() },
    coordinator: { sweepIntervalSec: 0.1 },
    worker: { concurrency: 32 },
  })
  try {
    const graph = { nodes: [{ node_id: 'a', type: 'step' }, { node_id: 'b', type: 'step', depends_on: ['a'] }, { node_id: 'c', type: 'step', depends_on: ['b'] }] }
    for (let wave = 0; wave < 3; wave++) {
      const ids = await Promise.all(Array.from({ length: 2000 }, () => rt.coordinator.createTask({ graph })))
      // Far below the 30 s accept timeout that used to rescue a task adopted twice.
      for (const id of ids) assert.equal((await rt.coordinator.waitForTask(id, { timeoutMs: 15_000 })).status, 'finished')
    }
    const adopted = logger.records.filter((r) => r.event === 'task.adopted').length
    assert.equal(adopted, 0, 'no task of this coordinator was adopted by its own sweep')
    assert.equal(logger.records.filter((r) => r.event === 'node.not_accepted').length, 0)
  } finally {
    await rt.stop()
  }
})
