import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { Coordinator, MemoryBus, MemoryLogger, MemoryStore, Worker, type RoleHandler, type TaskView } from 'flowkit'
import { gate } from '../helpers/gate.ts'
import { waitFor } from '../helpers/wait.ts'

const nodeOf = (t: TaskView | null, id: string) => t!.nodes.find((n) => n.node_id === id)!

describe('discovery and adopt', () => {
  test('a restarted coordinator asks the workers, adopts a live run past its recorded lease, and it finishes at its original epoch', async () => {
    const bus = new MemoryBus()
    const store = new MemoryStore()
    // Heartbeats are lost: after the restart only discovery can tell that the run is alive.
    bus.setInterceptor((r) => (r.topic.startsWith('status.') && r.value.includes('"TASK_HEARTBEAT"') ? { action: 'drop' } : { action: 'pass' }))
    const started = gate()
    const release = gate()
    let runs = 0
    const h: RoleHandler = {
      async processBatch(_b, ctx) {
        runs++
        started.open()
        await release.wait(ctx.signal)
        return { metrics: { count: 1 } }
      },
    }
    const worker = new Worker({ bus, store, handlers: { step: h }, config: { leaseTtlSec: 1, hbIntervalSec: 0.2, workerId: 'w1' } })
    const first = new Coordinator({ bus, store, config: { groupId: 'adopt-test' } })
    const logger = new MemoryLogger()
    const second = new Coordinator({ bus, store, logger, config: { groupId: 'adopt-test', discoveryWindowSec: 30 } })
    try {
      await first.start()
      await worker.start()
      const id = await first.createTask({ graph: { nodes: [{ node_id: 'n', type: 'step', retry_policy: { max: 3, backoff_sec: 0 } }] } })
      await started.wait()
      await waitFor(async () => typeof nodeOf(await first.getTask(id), 'n').lease.deadline_ts_ms === 'number')
      const recorded = nodeOf(await first.getTask(id), 'n').lease.deadline_ts_ms as number
      await first.stop()
      await waitFor(() => Date.now() > recorded + 100, { message: 'recorded lease never passed' })
      await second.start()
      await waitFor(() => logger.events().includes('node.adopted'), { message: 'run never adopted' })
      const adopted = nodeOf(await second.getTask(id), 'n')
      assert.equal(adopted.status, 'running')
      assert.equal(adopted.attempt_epoch, 1, 'adopted without a new epoch')
      assert.ok((adopted.lease.deadline_ts_ms as number) > recorded, 'the lease moved to the live deadline')
      release.open()
      const t = await second.waitForTask(id, { timeoutMs: 10000 })
      assert.equal(t.status, 'finished')
      assert.equal(nodeOf(t, 'n').attempt_epoch, 1)
      assert.equal(runs, 1, 'the handler was never restarted')
    } finally {
      release.open()
      await worker.stop()
      await second.stop()
      await first.stop()
    }
  })
})
