/**
 * A START queued behind a busy worker is steered to an idle worker of its type. Workers of a type
 * share its command topic through a consumer group, and a worker whose slots are all taken stops
 * fetching its partitions: the STARTs there waited for its long run to end while the other worker
 * sat idle. Steered by name (coordinator/steer.ts, `steerAfterSec`), they run on the idle worker;
 * the attempt's claim keeps each to one run, the copies left behind are dropped when they come up.
 * Runs on the memory runtime and, with FLOWKIT_E2E_RUNTIME=real, on Kafka + the MongoDB server.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryLogger, type RoleHandler } from 'flowkit'
import { gate } from '../helpers/gate.ts'
import { startRuntime } from '../helpers/runtime.ts'
import { waitFor } from '../helpers/wait.ts'

test('starts queued behind a worker busy with a long run are steered to the idle worker: they all finish meanwhile, each run once', async () => {
  const logger = new MemoryLogger()
  const release = gate()
  const runs = new Map<string, string[]>()
  const h: RoleHandler = {
    async processBatch(_b, ctx) {
      runs.set(ctx.taskId, [...(runs.get(ctx.taskId) ?? []), ctx.workerId])
      if (ctx.taskId === 'long') await release.wait(ctx.signal)
      return { metrics: { count: 1 } }
    },
  }
  const rt = await startRuntime({ logger, handlers: { x: h }, workers: 2, worker: { concurrency: 1 }, coordinator: { steerAfterSec: 0.3 } })
  try {
    const worker = (w: string): number => rt.workers.findIndex((x) => x.workerId === w)
    // Both workers announced (the coordinator knows their capacity and that they take steered starts).
    await waitFor(async () => (await rt.coordinator.listWorkers()).filter((w) => w.status === 'online').length === 2, { message: 'two workers online' })
    await rt.coordinator.createTask({ id: 'long', graph: { nodes: [{ node_id: 'a', type: 'x' }] } })
    await waitFor(() => runs.has('long'), { message: 'the long run started' })
    const ids: string[] = []
    for (let i = 0; i < 12; i++) ids.push(await rt.coordinator.createTask({ id: `short-${i}`, graph: { nodes: [{ node_id: 'a', type: 'x' }] } }))
    for (const id of ids) assert.equal((await rt.coordinator.waitForTask(id, { timeoutMs: 30_000 })).status, 'finished', `${id} finished while the long run holds the other worker`)
    const busy = runs.get('long')?.[0] as string
    assert.ok(worker(busy) >= 0)
    for (const id of ids) assert.deepEqual(runs.get(id)?.length, 1, `${id} ran once`)
    assert.ok(ids.every((id) => runs.get(id)?.[0] !== busy), 'none ran on the busy worker')
    const steered = logger.records.filter((r) => r.event === 'node.steered')
    assert.ok(steered.length > 0, 'some starts were steered')
    assert.ok(steered.every((r) => r.fields['worker_id'] !== busy), 'never to the busy worker')
    release.open()
    assert.equal((await rt.coordinator.waitForTask('long', { timeoutMs: 30_000 })).status, 'finished')
    // The copies left in the busy worker's partitions come up once its slot frees: dropped there.
    const dropped = (id: string): boolean => logger.records.some((r) => r.fields['task_id'] === id && (r.event === 'worker.attempt_held_elsewhere' || r.event === 'worker.start_duplicate'))
    const steeredIds = [...new Set(steered.map((r) => r.fields['task_id'] as string))]
    await waitFor(() => steeredIds.every(dropped), { message: 'every steered start left behind was dropped where it waited', timeoutMs: 30_000 })
    for (const id of [...ids, 'long']) assert.equal(runs.get(id)?.length, 1, `${id} ran once in all`)
  } finally {
    release.open()
    await rt.stop()
  }
})
