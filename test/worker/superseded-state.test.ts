/**
 * A worker process paused (SIGSTOP, a frozen VM) and resumed after a newer process with its worker
 * id started — or a second live worker given the same id — must not overwrite the newer one's
 * saved run state: the next restart would read the wrong runs, and coordinators judge a worker's
 * load by it. The store refuses the older instance's writes (Store.saveWorkerState → false), and
 * the stale process says so once (`worker.superseded`) and writes no more. Before, the last writer
 * won, whichever process it was.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryLogger, type RoleHandler } from 'flowkit'
import { gate } from '../helpers/gate.ts'
import { startRuntime } from '../helpers/runtime.ts'
import { waitFor } from '../helpers/wait.ts'

test("an older process with a worker's id does not overwrite the run state its successor saved: refused, said once (worker.superseded)", async () => {
  const log = new MemoryLogger()
  const gates = { a: gate(), b: gate() }
  const handler: RoleHandler = {
    async processBatch(_b, ctx) {
      await gates[ctx.nodeId as 'a' | 'b'].wait()
      return { metrics: { n: 1 } }
    },
  }
  const rt = await startRuntime({ logger: log })
  try {
    const older = await rt.addWorker({ job: handler }, { workerId: 'w-twin', concurrency: 2 })
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'a', type: 'job' }, { node_id: 'b', type: 'job' }] } })
    await waitFor(async () => (await rt.store.getWorkerState('w-twin'))?.active_runs.length === 2, { message: 'the older process saved its two runs' })
    // A newer process with the same id starts (the older one, paused, is taken for dead).
    const newer = await rt.addWorker({ job: handler }, { workerId: 'w-twin' })
    assert.equal(newer.restoredRuns.length, 2, "the newer process read its predecessor's runs")
    const saved = await rt.store.getWorkerState('w-twin')
    assert.equal(saved?.active_runs.length, 0, 'the newer process saved its own state')
    // The older process goes on: one of its runs ends, and it would save one run held.
    gates.a.open()
    await waitFor(() => older.activeRuns().length === 1, { message: 'run a ended on the older process' })
    await waitFor(() => log.records.some((r) => r.event === 'worker.superseded'), { message: 'the older process learns that a newer one owns the state' })
    assert.deepEqual(await rt.store.getWorkerState('w-twin'), saved, "the successor's state is intact")
    gates.b.open()
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })
    assert.equal(t.status, 'finished')
    assert.deepEqual(await rt.store.getWorkerState('w-twin'), saved, 'still intact after the older process ended its last run')
    const said = log.records.filter((r) => r.event === 'worker.superseded')
    assert.equal(said.length, 1, 'said once')
    assert.equal(said[0]?.level, 'error')
  } finally {
    gates.a.open()
    gates.b.open()
    await rt.stop()
  }
})
