/**
 * Defect 2 (issue 7): the same node ran twice at the same attempt epoch — a start waiting for a
 * slot still launched after its partition had moved to another worker, which ran it too; an
 * accept-timeout resend ran again on the partition's new owner. Now a worker claims the attempt in
 * the store before it runs it (one worker per task, node and epoch), and the coordinator tells a
 * second worker that reports the same attempt to give it up.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryLogger, type RoleHandler } from 'flowkit'
import { startRuntime } from '../helpers/runtime.ts'

test('defect 2: a start delivered to two workers runs on one of them only', async () => {
  const log = new MemoryLogger()
  const runs: string[] = []
  const handler = (name: string): RoleHandler => ({
    async *iterBatches() {
      for (let i = 0; i < 3; i++) yield { batch_uid: `b${i}`, payload: {} }
    },
    async processBatch(batch, ctx) {
      runs.push(`${name}:${ctx.attemptEpoch}:${batch.batch_uid}`)
      return { metrics: { n: 1 } }
    },
  })
  const rt = await startRuntime({ logger: log, handlers: { job: handler('A') } })
  try {
    // Worker B reads the command topics in a group of its own: every start reaches both workers,
    // as a start redelivered after a rebalance reaches the partition's new owner.
    await rt.addWorker({ job: handler('B') }, { groupPrefix: `${rt.workerBase.groupPrefix ?? ''}other.` })
    const ids = []
    for (let i = 0; i < 4; i++) ids.push(await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'a', type: 'job' }] } }))
    for (const id of ids) {
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })
      assert.equal(t.status, 'finished')
      assert.deepEqual(t.nodes[0]?.stats, { n: 3 })
    }
    assert.equal(runs.length, 12, `each task's 3 batches ran once: ${runs.join(' ')}`)
    assert.ok(log.records.filter((r) => r.event === 'worker.attempt_held_elsewhere').length >= 1, 'the second delivery was refused')
  } finally {
    await rt.stop()
  }
})
