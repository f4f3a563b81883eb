/**
 * The cancel of an attempt no worker accepted claims it for nobody (accept.ts withdrawUnaccepted:
 * its START, waiting behind a busy worker, is then never run) — only when every live worker of the
 * type claims attempts. A worker that makes no claims (a
 * Python worker) would run that START whatever the store says, so its nodes are not withdrawn:
 * they end when it confirms the cancel or at the cancel deadline, as before.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryLogger, type Bus, type RoleHandler, type Store } from 'flowkit'
import { HANDED_BACK_HOLDER } from '../../src/ports/store.ts'
import { gate } from '../helpers/gate.ts'
import { startRuntime } from '../helpers/runtime.ts'
import { aroundClaims, overrideMethods } from '../helpers/store-proxy.ts'
import { waitFor } from '../helpers/wait.ts'

for (const python of [false, true])
test(`a cancelled START waiting behind a busy worker is withdrawn only when every worker of its type claims attempts (${python ? 'a worker that makes no claims: not withdrawn' : 'flowkit workers: withdrawn'})`, async () => {
  const logger = new MemoryLogger()
  const release = gate()
  let holder = ''
  const ran: string[] = []
  const x: RoleHandler = {
    async processBatch(_b, ctx) {
      ran.push(ctx.taskId)
      if (ctx.taskId === holder) await release.wait(ctx.signal)
      return { metrics: { count: 1 } }
    },
  }
  const rt = await startRuntime({
    logger,
    handlers: { x },
    worker: { concurrency: 1, leaseTtlSec: 3600, hbIntervalSec: 600 },
    coordinator: { cancelGraceSec: 0.2, steerWarmupSec: 0 },
    // The "Python" worker: its claims always succeed (it makes none), its announces do not say start_signal.
    ...(python
      ? {
          workerStore: (s: Store) => aroundClaims(s, async (cs) => cs.map(() => true)),
          workerBus: (b: Bus) => overrideMethods(b, { produce: (f) => async (...a: unknown[]) => f((a[0] as Array<{ value: unknown }>).map((r) => (typeof r.value === 'string' ? { ...r, value: r.value.replace(',"start_signal":true', '') } : r)), ...a.slice(1)) }),
        }
      : {}),
  })
  try {
    const graph = { nodes: [{ node_id: 'n', type: 'x' }] }
    await waitFor(async () => (await rt.coordinator.listWorkers()).some((w) => w.status === 'online'), { message: 'the worker announced' })
    holder = await rt.coordinator.createTask({ graph })
    await waitFor(() => ran.includes(holder), { message: 'the worker is busy' })
    const victim = await rt.coordinator.createTask({ graph })
    assert.equal(await rt.coordinator.cancelTask(victim), true)
    const withdrawn = () => logger.records.filter((r) => r.event === 'node.withdrawn').length
    if (python) {
      // Left cancelling: its START runs when the slot frees, and the worker's confirmation ends it.
      await waitFor(async () => (await rt.coordinator.getTask(victim))?.nodes[0]?.status === 'cancelling', { message: 'the cancel applied' })
      assert.equal(withdrawn(), 0)
      assert.notEqual(await rt.store.attemptHolder(victim, 'n', 1), HANDED_BACK_HOLDER)
      release.open()
      assert.equal((await rt.coordinator.waitForTask(victim, { timeoutMs: 20_000 })).status, 'cancelled')
      assert.equal(withdrawn(), 0)
    } else {
      assert.equal((await rt.coordinator.waitForTask(victim, { timeoutMs: 20_000 })).status, 'cancelled')
      assert.equal(withdrawn(), 1)
      assert.equal(await rt.store.attemptHolder(victim, 'n', 1), HANDED_BACK_HOLDER)
      release.open()
      await waitFor(() => logger.records.some((r) => r.event === 'worker.attempt_held_elsewhere' && r.fields['task_id'] === victim), { message: 'the START dropped' })
      assert.ok(!ran.includes(victim), 'its handler never ran')
    }
  } finally {
    release.open()
    await rt.stop()
  }
})
