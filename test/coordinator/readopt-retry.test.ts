/**
 * A coordinator whose write is refused (another writer took the task's next version) drops the
 * task and loads it again: when that load failed (a store error), the task was held by nobody
 * until an event for it came, and a task waiting on a timer (a retry's backoff) hears none —
 * `running` for good. The load is tried again while the task is ours.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Coordinator, MemoryBus, MemoryLogger, MemoryStore, Worker } from 'flowkit'
import { overrideStore } from '../helpers/store-proxy.ts'
import { waitFor } from '../helpers/wait.ts'

test('a fenced task whose reload fails is loaded again later (it waited on a retry timer and nothing else took it up)', async () => {
  const bus = new MemoryBus()
  const plain = new MemoryStore()
  let failGets = 0
  const store = overrideStore(plain, {
    getTask: (f) => async (...args: unknown[]) => {
      if (failGets > 0) {
        failGets--
        throw new Error('store unavailable (injected)')
      }
      return f(...args)
    },
  })
  const logger = new MemoryLogger()
  const coordinator = new Coordinator({ bus, store, logger, config: { schedulerTickSec: 0.1, sweepIntervalSec: 3600 } })
  let runs = 0
  const worker = new Worker({
    bus,
    store: plain,
    handlers: {
      flaky: {
        async processBatch() {
          runs += 1
          if (runs === 1) throw new Error('transient')
          return { metrics: { count: 1 } }
        },
      },
    },
  })
  await coordinator.start()
  await worker.start()
  try {
    const id = await coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'flaky', retry_policy: { max: 3, backoff_sec: 1 } }] } })
    await waitFor(async () => (await plain.getTask(id))?.nodes['n']?.status === 'deferred', { message: 'the first attempt never failed' })
    // Another writer takes the next version (a hand-over race): the retry's dispatch is refused.
    const seq = Math.max(...(await plain.readJournal([id])).map((e) => e.seq))
    assert.deepEqual(await plain.appendJournal([{ task_id: id, seq: seq + 1, at_ms: Date.now(), writer: 'another-coordinator', events: ['owner another-coordinator generation 1'], nodes: [] }]), [true])
    failGets = 1
    await waitFor(() => logger.records.some((r) => r.event === 'coordinator.readopt_failed'), { timeoutMs: 10_000, message: 'the reload never failed' })
    failGets = 0
    const t = await coordinator.waitForTask(id, { timeoutMs: 20_000 })
    assert.equal(t.status, 'finished')
    assert.equal(runs, 2)
  } finally {
    await worker.stop()
    await coordinator.stop()
  }
})
