/**
 * A start that waits in a busy worker's queue is not "not accepted": while more nodes of a type
 * are dispatched than its live workers announced they can run, the accept timeout is not counted
 * (no resend, no warning, no new attempt after the fourth); once workers have room, an unaccepted
 * start is resent as before.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryLogger, TestClock, type RoleHandler } from 'flowkit'
import { gate } from '../helpers/gate.ts'
import { startRuntime } from '../helpers/runtime.ts'
import { waitFor } from '../helpers/wait.ts'

test('starts queued behind a saturated worker are neither resent nor replaced; they all run at their first epoch', async () => {
  const clock = new TestClock()
  const logger = new MemoryLogger()
  const release = gate()
  let started = 0
  const slow: RoleHandler = {
    async processBatch() {
      started++
      await release.wait()
      return { metrics: { count: 1 } }
    },
  }
  const rt = await startRuntime({ clock, logger, handlers: { slow }, worker: { concurrency: 2, leaseTtlSec: 3600, hbIntervalSec: 600 }, coordinator: { acceptTimeoutSec: 30 } })
  try {
    const ids: string[] = []
    for (let i = 0; i < 6; i++) ids.push(await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'a', type: 'slow' }] } }))
    await waitFor(() => started === 2, { message: 'the worker runs two, the others wait in its queue' })
    // Past the whole resend schedule (30 + 60 + 120 + 240 s): the queued starts are waited for.
    for (let s = 0; s < 500; s += 10) await clock.advance(10_000)
    const events = logger.records.map((r) => r.event)
    assert.equal(events.filter((e) => e === 'node.not_accepted').length, 0, 'no start reported not accepted')
    assert.equal(events.filter((e) => e === 'node.start_resent').length, 0, 'no start resent')
    release.open()
    for (const id of ids) {
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })
      assert.equal(t.status, 'finished')
      assert.equal(t.nodes[0]?.attempt_epoch, 1, 'run at its first epoch (never replaced)')
    }
    assert.equal(started, 6, 'each node ran once')
  } finally {
    release.open()
    await rt.stop()
  }
})
