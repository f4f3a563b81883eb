import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryBus, TestClock, type RoleHandler } from 'flowkit'
import { startRuntime } from '../helpers/runtime.ts'
import { gate, type Gate } from '../helpers/gate.ts'
import { waitFor } from '../helpers/wait.ts'

test('heartbeats: each accepted run beats every interval on the shared timer, and stops when it ends', async () => {
  const clock = new TestClock()
  const bus = new MemoryBus()
  const gates = new Map<string, Gate>([
    ['a', gate()],
    ['b', gate()],
  ])
  const started = new Set<string>()
  const hold: RoleHandler = {
    async processBatch(_b, ctx) {
      started.add(ctx.nodeId)
      await (gates.get(ctx.nodeId) as Gate).wait()
      return {}
    },
  }
  const rt = await startRuntime({ bus, clock, handlers: { hold }, worker: { hbIntervalSec: 2, leaseTtlSec: 600, concurrency: 4 } })
  try {
    const id = await rt.coordinator.createTask({
      graph: {
        nodes: [
          { node_id: 'a', type: 'hold' },
          { node_id: 'b', type: 'hold' },
        ],
      },
    })
    await waitFor(() => started.size === 2)
    const beats = (node: string): number =>
      bus.records(rt.statusTopic('hold')).filter((m) => {
        const env = JSON.parse(m.value) as { task_id: string; node_id: string; payload: { kind: string } }
        return env.task_id === id && env.node_id === node && env.payload.kind === 'TASK_HEARTBEAT'
      }).length
    assert.equal(beats('a') + beats('b'), 0)
    await clock.advance(2_000)
    await waitFor(() => beats('a') === 1 && beats('b') === 1)
    await clock.advance(2_000)
    await waitFor(() => beats('a') === 2 && beats('b') === 2)
    ;(gates.get('a') as Gate).open()
    await waitFor(async () => (await rt.coordinator.getTask(id))?.nodes.find((n) => n.node_id === 'a')?.status === 'finished')
    for (let i = 0; i < 3; i++) await clock.advance(2_000)
    await waitFor(() => beats('b') === 5)
    assert.equal(beats('a'), 2, 'a run that ended sends no heartbeat')
    ;(gates.get('b') as Gate).open()
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 5000 })
    assert.equal(t.status, 'finished')
    await clock.advance(10_000)
    await bus.waitForIdle()
    assert.equal(beats('b'), 5, 'no heartbeat after the last run ended')
    assert.equal(rt.workers[0]?.activeRuns().length, 0)
  } finally {
    await rt.stop()
  }
})
