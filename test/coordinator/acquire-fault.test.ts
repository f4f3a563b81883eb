/**
 * A store error partway through a partition hand-over (src/coordinator/handover.ts, acquire): the
 * tasks loaded before the error used to stay in memory unresumed (no timers, no commands), and the
 * retry skipped them as already held: their nodes stayed `running` for ever on a dead worker.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Coordinator, ErrorCode, FlowkitError, MemoryBus, MemoryLogger, MemoryStore, Worker, type RoleHandler } from 'flowkit'
import { overrideStore } from '../helpers/store-proxy.ts'
import { waitFor } from '../helpers/wait.ts'

const CONFIG = { sweepIntervalSec: 1, discoveryWindowSec: 0.5, taskPartitions: 4 }
const WORKER = { leaseTtlSec: 1, hbIntervalSec: 0.2 }
const GRAPH = { nodes: [{ node_id: 'n', type: 'step', retry_policy: { max: 5, backoff_sec: 0 } }] }

test('a store error while a restarted coordinator loads its tasks: every task is resumed by the retry and ends', async () => {
  const bus = new MemoryBus()
  const store = new MemoryStore()
  const first = new Coordinator({ bus, store, logger: new MemoryLogger(), config: CONFIG })
  await first.start()
  const hanging: RoleHandler = {
    async processBatch(_b, ctx) {
      await ctx.sleep(600_000)
      return {}
    },
  }
  const doomed = new Worker({ bus, store, logger: new MemoryLogger(), handlers: { step: hanging }, config: { ...WORKER, workerId: 'doomed', concurrency: 4 } })
  await doomed.start()
  const ids: string[] = []
  for (let i = 0; i < 3; i++) ids.push(await first.createTask({ graph: GRAPH }))
  await waitFor(async () => {
    const views = await Promise.all(ids.map((id) => first.getTask(id)))
    return views.every((v) => v?.nodes[0]?.lease.worker_id === 'doomed')
  }, { timeoutMs: 20_000 })
  await first.kill()
  await doomed.kill()

  // The next coordinator's second task read fails (retryable), once.
  let reads = 0
  const faulty = overrideStore(store, {
    getTask: (original) => async (...args: unknown[]) => {
      if (++reads === 2) throw new FlowkitError(ErrorCode.StoreUnavailable, 'injected: store unavailable', { retryable: true })
      return original(...args)
    },
  })
  const log = new MemoryLogger()
  const next = new Coordinator({ bus, store: faulty, logger: log, config: CONFIG })
  await next.start()
  const worker = new Worker({ bus, store, logger: new MemoryLogger(), handlers: { step: { async processBatch() { return { metrics: { count: 1 } } } } }, config: { ...WORKER, workerId: 'next', concurrency: 4 } })
  await worker.start()
  try {
    for (const id of ids) {
      const t = await next.waitForTask(id, { timeoutMs: 30_000 })
      assert.equal(t.status, 'finished', `task ${id}: ${t.status}`)
      assert.equal(t.nodes[0]?.lease.worker_id, 'next')
    }
    assert.ok(reads >= 2, 'the fault was injected')
    assert.ok(log.records.some((r) => r.event === 'coordinator.acquire_retry'), 'the hand-over failed once and was retried')
  } finally {
    await worker.stop()
    await next.stop()
    await bus.close()
  }
})
