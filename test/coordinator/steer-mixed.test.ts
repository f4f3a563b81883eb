/**
 * A type one of whose workers does not take steered STARTs (a Python worker: no
 * `capabilities.start_signal`, and no attempt claims) is not steered: the copy left in that
 * worker's partition would run there again (the claim that drops it elsewhere is not made).
 * A review found every steered START of such a mixed pool running twice; the interop check found
 * a TS coordinator started after a Python worker (whose one announce came before it) steering its
 * queued STARTs: 6 of 14 nodes ran twice at one epoch. Such a worker is now also known from its
 * status events (LiveRoles.heard).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryLogger, TestClock, type Bus, type RoleHandler, type Store } from 'flowkit'
import { gate } from '../helpers/gate.ts'
import { startRuntime } from '../helpers/runtime.ts'
import { aroundClaims, overrideMethods } from '../helpers/store-proxy.ts'
import { waitFor } from '../helpers/wait.ts'

/**
 * A "Python" worker (claims always succeed: it makes none; its announces are changed by
 * `announces`) beside a flowkit worker, one slot each; 12 one-node tasks, the first the Python
 * worker takes held for 20 s of the test clock (steering checks every second, no warm-up).
 */
async function mixedPool(announces: (records: { topic: string; value: unknown }[]) => { topic: string; value: unknown }[]): Promise<void> {
  const clock = new TestClock()
  const logger = new MemoryLogger()
  const release = gate()
  const runs = new Map<string, string[]>()
  const note = (task: string, who: string): void => void runs.set(task, [...(runs.get(task) ?? []), who])
  const py: RoleHandler = {
    async processBatch(_b, ctx) {
      note(ctx.taskId, 'py')
      await release.wait(ctx.signal)
      return { metrics: { count: 1 } }
    },
  }
  const fk: RoleHandler = {
    async processBatch(_b, ctx) {
      note(ctx.taskId, 'fk')
      return { metrics: { count: 1 } }
    },
  }
  let stores = 0
  let buses = 0
  const rt = await startRuntime({
    clock,
    logger,
    worker: { concurrency: 1, leaseTtlSec: 3600, hbIntervalSec: 600 },
    coordinator: { steerAfterSec: 1, steerWarmupSec: 0, acceptTimeoutSec: 3600 },
    workerStore: (s: Store) => (stores++ === 0 ? aroundClaims(s, async (cs) => cs.map(() => true)) : s),
    workerBus: (b: Bus) => (buses++ !== 0 ? b : overrideMethods(b, { produce: (f) => async (...a: unknown[]) => f(announces(a[0] as { topic: string; value: unknown }[]), ...a.slice(1)) })),
  })
  try {
    await rt.addWorker({ x: py })
    const flowkit = await rt.addWorker({ x: fk })
    await waitFor(async () => (await rt.coordinator.listWorkers()).some((w) => w.worker_id === flowkit.workerId && w.status === 'online'), { message: 'the flowkit worker online' })
    const ids: string[] = []
    for (let i = 0; i < 12; i++) ids.push(await rt.coordinator.createTask({ id: `t-${i}`, graph: { nodes: [{ node_id: 'a', type: 'x' }] } }))
    await waitFor(() => [...runs.values()].some((r) => r.includes('py')), { message: 'the Python worker holds one' })
    for (let s = 0; s < 20; s++) await clock.advance(1_000)
    assert.equal(logger.records.filter((r) => r.event === 'node.steered').length, 0, 'nothing steered')
    release.open()
    for (const id of ids) assert.equal((await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })).status, 'finished')
    assert.deepEqual(ids.filter((id) => (runs.get(id)?.length ?? 0) !== 1), [], 'each ran once')
  } finally {
    release.open()
    await rt.stop()
  }
}

test('a pool with a worker that does not take steered starts (a Python worker) is not steered: nothing runs twice', () =>
  // Its announces do not say start_signal.
  mixedPool((records) => records.map((r) => (typeof r.value === 'string' ? { ...r, value: r.value.replace(',"start_signal":true', '') } : r))))

test('a worker never heard announcing, seen only in its status events, keeps its type from being steered: nothing runs twice', () =>
  // The coordinator never hears it announce (it announced before the coordinator started).
  mixedPool((records) => records.filter((r) => !r.topic.includes('announce'))))
