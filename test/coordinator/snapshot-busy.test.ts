/**
 * A coordinator that is never idle still writes its ended tasks as ended. Snapshots wait for
 * idleness (no flush for 100 ms) so that updates stay off the event path; under a steady load
 * there is no such pause, and terminal snapshots waited until 5,000 were pending: retention
 * (`taskRetentionSec`, which deletes tasks stored as ended) did not apply, the coordinator held
 * 5,000 ended tasks in memory whatever the retention, and a store's list showed them running.
 * Found by a soak of `flowkit dev` at 40 tasks/s (ended tasks 68 s old against 20 s of retention).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as delay } from 'node:timers/promises'
import { MemoryBus, MemoryStore } from 'flowkit'
import { SnapshotWriter } from '../../src/coordinator/snapshots.ts'
import type { VersionedTask } from '../../src/model/journal.ts'
import { MemoryLogger } from '../../src/log.ts'
import { SystemClock } from '../../src/clock.ts'
import { makeTaskDoc } from '../helpers/fixtures.ts'
import { noopHandler, startRuntime } from '../helpers/runtime.ts'
import { waitFor } from '../helpers/wait.ts'

test('a terminal snapshot is written while the coordinator works once it has waited terminalWaitMs; an active one waits for idleness', async () => {
  const written: string[] = []
  const writer = new SnapshotWriter(new MemoryStore(), new SystemClock(), new MemoryLogger(), (id) => written.push(id), {
    idleMs: 50,
    terminalWaitMs: 200,
    working: () => true, // never idle
  })
  const running = { ...makeTaskDoc({ status: 'running' }), v: 1 } as VersionedTask
  const ended = { ...makeTaskDoc({ status: 'finished' }), v: 1 } as VersionedTask
  const offered = performance.now()
  writer.offer(running)
  writer.offer(ended)
  await waitFor(() => written.length > 0, { timeoutMs: 5000, message: 'the ended task written while busy' })
  assert.deepEqual(written, [ended.id])
  assert.ok(performance.now() - offered >= 190, 'not before it waited terminalWaitMs')
  assert.equal(writer.backlog, 1, 'the running task still waits for idleness')
  await writer.drain(5000)
  assert.deepEqual(written, [ended.id, running.id])
})

test('taskRetentionSec applies while the coordinator is never idle: an ended task is purged under a steady load', async () => {
  const store = new MemoryStore()
  const rt = await startRuntime({ store, bus: new MemoryBus(), handlers: { step: noopHandler() }, coordinator: { taskRetentionSec: 1, sweepIntervalSec: 0.5 } })
  let loading = true
  let submitted = 0
  // A task every 20 ms: a flush at least that often, never the 100 ms of quiet snapshots wait for.
  const load = (async () => {
    while (loading) {
      await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'step' }] } })
      submitted++
      await delay(20)
    }
  })()
  try {
    const first = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'step' }] } })
    assert.equal((await rt.coordinator.waitForTask(first, { timeoutMs: 10_000 })).status, 'finished')
    await waitFor(async () => (await store.getTask(first)) === null, { timeoutMs: 15_000, message: 'the first task purged (retention 1 s) while the load goes on' })
    assert.ok(submitted > 20, `the load was running (${submitted} tasks)`)
  } finally {
    loading = false
    await load
    await rt.stop()
  }
})
