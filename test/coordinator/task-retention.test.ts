/**
 * `taskRetentionSec`: the sweep deletes ended tasks once their retention has passed, with what was
 * stored for them; active tasks and recently ended ones stay. Off by default.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryLogger, MemoryStore, TestClock, type RoleHandler } from 'flowkit'
import { noopHandler, startRuntime } from '../helpers/runtime.ts'
import { gate } from '../helpers/gate.ts'
import { waitFor } from '../helpers/wait.ts'

const ONE = { nodes: [{ node_id: 'n', type: 'step' }] }

test('taskRetentionSec: the sweep deletes ended tasks after their retention, with their artifacts and metrics; active and recent ones stay', async () => {
  const clock = new TestClock()
  const store = new MemoryStore()
  const logger = new MemoryLogger()
  const held = gate()
  const hold: RoleHandler = {
    async processBatch() {
      await held.wait()
      return { metrics: { count: 1 } }
    },
  }
  const rt = await startRuntime({
    clock,
    store,
    logger,
    handlers: { step: noopHandler(), hold },
    coordinator: { taskRetentionSec: 60, sweepIntervalSec: 1 },
    worker: { leaseTtlSec: 3600, hbIntervalSec: 600, concurrency: 4 },
  })
  try {
    const old = await rt.coordinator.createTask({ graph: ONE })
    assert.equal((await rt.coordinator.waitForTask(old, { timeoutMs: 5000 })).status, 'finished')
    await waitFor(async () => (await store.getTask(old))?.status === 'finished')
    const running = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'h', type: 'hold' }] } })
    await clock.advance(45_000)
    const recent = await rt.coordinator.createTask({ graph: ONE })
    assert.equal((await rt.coordinator.waitForTask(recent, { timeoutMs: 5000 })).status, 'finished')
    await waitFor(async () => (await store.getTask(recent))?.status === 'finished')
    assert.ok((await store.listArtifacts(old)).length > 0)
    // Once 60 s have passed since the first task ended, a sweep (every second of the test clock
    // here, ended tasks every 15 s) purges it; the clock stops short of the second task's 60 s.
    const start = clock.now()
    await waitFor(async () => {
      if (clock.now() - start < 55_000) await clock.advance(1_000)
      return (await store.getTask(old)) === null
    })
    assert.equal(await store.getTask(old), null)
    assert.equal(await rt.coordinator.getTask(old), null)
    assert.deepEqual(await store.listArtifacts(old), [])
    assert.deepEqual(await store.listBatchMetrics(old), [])
    assert.deepEqual(await store.readJournal([old]), [])
    assert.ok(logger.records.some((r) => r.event === 'coordinator.task_retention' && r.fields?.['tasks'] === 1))
    assert.equal((await store.getTask(recent))?.status, 'finished', 'ended 16 s ago: kept')
    assert.equal((await store.getTask(running))?.status, 'running', 'active: kept')
    held.open()
    assert.equal((await rt.coordinator.waitForTask(running, { timeoutMs: 5000 })).status, 'finished')
  } finally {
    held.open()
    await rt.stop()
  }
})

test('taskRetentionSec is off by default, and a negative value is refused', async () => {
  const clock = new TestClock()
  const store = new MemoryStore()
  const rt = await startRuntime({ clock, store, handlers: { step: noopHandler() }, coordinator: { sweepIntervalSec: 600 } })
  try {
    assert.equal(rt.coordinator.config.taskRetentionSec, 0)
    const id = await rt.coordinator.createTask({ graph: ONE })
    await rt.coordinator.waitForTask(id, { timeoutMs: 5000 })
    for (let i = 0; i < 5; i++) await clock.advance(3_600_000)
    assert.equal((await store.getTask(id))?.status, 'finished')
  } finally {
    await rt.stop()
  }
  await assert.rejects(() => startRuntime({ coordinator: { taskRetentionSec: -1 } }), /taskRetentionSec/)
})
