/**
 * A coordinator's stop spends at most `stopSnapshotsSec` writing the task snapshots still pending
 * (on FerretDB an update costs milliseconds and grows with the collection: a stop after a burst of
 * tasks used to take minutes). What it leaves loses nothing: those tasks ended in the journal, and
 * the next coordinator that finds them listed as active rewrites their snapshots.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { Coordinator, MemoryLogger, type Store } from 'flowkit'
import { noopHandler, startRuntime, testStore } from '../helpers/runtime.ts'
import { waitFor } from '../helpers/wait.ts'

const ACTIVE = ['queued', 'running', 'cancelling'] as const

/** The store, with snapshot writes that hang while `hold` is set. */
function holdingSnapshots(inner: Store): { store: Store; hold: boolean } {
  const ctl = { store: inner, hold: true }
  ctl.store = new Proxy(inner, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target) as unknown
      if (typeof value !== 'function') return value
      const fn = (value as (...args: unknown[]) => unknown).bind(target)
      if (prop !== 'writeSnapshot') return fn
      return (...args: unknown[]) => (ctl.hold ? new Promise(() => undefined) : fn(...args))
    },
  })
  return ctl
}

describe('stop and pending snapshots', () => {
  test('stop gives up the snapshots it cannot write in stopSnapshotsSec; the next coordinator rewrites those of ended tasks', async () => {
    const { store: inner, drop } = await testStore()
    const ctl = holdingSnapshots(inner)
    const logger = new MemoryLogger()
    const rt = await startRuntime({ store: ctl.store, logger, handlers: { step: noopHandler() }, coordinator: { stopSnapshotsSec: 0.3 } })
    const ids: string[] = []
    try {
      for (let i = 0; i < 5; i++) ids.push(await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'a', type: 'step' }, { node_id: 'b', type: 'step', depends_on: ['a'] }] } }))
      for (const id of ids) assert.equal((await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })).status, 'finished')
      const t0 = performance.now()
      for (const w of rt.workers) await w.stop()
      await rt.coordinator.stop()
      assert.ok(performance.now() - t0 < 15_000, 'stop waited for snapshots it could not write')
      assert.ok(logger.records.some((r) => r.event === 'coordinator.snapshots_left' && r.level === 'info'), 'the snapshots left are logged (info: a clean stop, nothing lost)')
      // Listed as active by their snapshots, finished by snapshot + journal.
      const listed = new Set(await inner.listTaskIds([...ACTIVE]))
      assert.ok(ids.some((id) => listed.has(id)), 'some snapshots were left behind')
      for (const id of ids) assert.equal((await inner.getTask(id))?.status, 'finished')

      ctl.hold = false
      const next = new Coordinator({ bus: rt.bus, store: inner, config: rt.coordinatorBase })
      await next.start()
      try {
        await waitFor(async () => (await inner.listTaskIds([...ACTIVE])).filter((id) => ids.includes(id)).length === 0, {
          timeoutMs: 20_000,
          message: 'the snapshots of ended tasks were not rewritten',
        })
        for (const id of ids) assert.equal((await inner.getTask(id))?.status, 'finished')
      } finally {
        await next.stop()
      }
    } finally {
      await rt.stop().catch(() => undefined)
      await drop()
    }
  })
})
