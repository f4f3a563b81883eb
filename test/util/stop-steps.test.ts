import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Coordinator, MemoryBus, MemoryLogger, MemoryStore, Worker } from 'flowkit'
import { StopSteps } from '../../src/util/stop-steps.ts'
import { quietPeriod, waitFor } from '../helpers/wait.ts'

test('a slow stop says, while it lasts, which step it waits for; nothing once it ended', async () => {
  const log = new MemoryLogger()
  const steps = new StopSteps(log, 'thing.stop_slow', 20)
  steps.step('closing subscriptions')
  await waitFor(() => log.records.some((r) => r.event === 'thing.stop_slow'), { timeoutMs: 5_000 })
  steps.step('runs ending: t:a')
  await waitFor(() => log.records.some((r) => r.fields['step'] === 'runs ending: t:a'), { timeoutMs: 5_000 })
  assert.equal(log.records[0]?.level, 'warn')
  assert.equal(log.records[0]?.fields['step'], 'closing subscriptions')
  assert.equal(typeof log.records[0]?.fields['waited_sec'], 'number')
  steps.end()
  const n = log.records.length
  await quietPeriod(80) // proving that nothing more is logged
  assert.equal(log.records.length, n, 'no warning after end()')
})

test('a worker stop held by a handler that ignores its abort names the run it waits for', async () => {
  const log = new MemoryLogger()
  const bus = new MemoryBus()
  const store = new MemoryStore()
  let release!: () => void
  const held = new Promise<void>((r) => {
    release = r
  })
  const coordinator = new Coordinator({ bus, store, logger: log, config: { schedulerTickSec: 0.05 } })
  await coordinator.start()
  let started = false
  const worker = new Worker({
    bus,
    store,
    logger: log,
    handlers: {
      job: {
        async processBatch() {
          started = true
          await held // ignores ctx.signal
          return {}
        },
      },
    },
    config: { cancelGraceMs: 60_000 },
  })
  await worker.start()
  try {
    const id = await coordinator.createTask({ graph: { nodes: [{ node_id: 'a', type: 'job' }] } })
    await waitFor(() => started, { timeoutMs: 10_000 })
    const stopping = worker.stop()
    await waitFor(() => log.records.some((r) => r.event === 'worker.stop_slow'), { timeoutMs: 20_000 })
    const warning = log.records.find((r) => r.event === 'worker.stop_slow')
    assert.equal(warning?.fields['step'], `runs ending: ${id}:a`)
    release()
    await stopping
    assert.ok(log.events().includes('worker.stopped'))
  } finally {
    release()
    await worker.stop()
    await coordinator.stop()
  }
})
