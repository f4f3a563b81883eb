import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryBus, MemoryLogger, protocol, type RoleHandler, type TaskView } from 'flowkit'
import { startRuntime } from '../helpers/runtime.ts'
import { gate } from '../helpers/gate.ts'
import { waitFor } from '../helpers/wait.ts'

const nodeOf = (t: TaskView | null, id: string) => t!.nodes.find((n) => n.node_id === id)!

function forged(taskId: string, nodeId: string, epoch: number, payload: Record<string, unknown>, tag: string): string {
  return protocol.encode(
    protocol.makeEnvelope({
      msg_type: 'event',
      role: 'worker',
      task_id: taskId,
      node_id: nodeId,
      step_type: 'step',
      attempt_epoch: epoch,
      ts_ms: Date.now(),
      dedup_id: `forged-${tag}`,
      payload,
    }),
  )
}

describe('epoch fencing and dedup', () => {
  test('S-005/S-008/S-037 events of an older epoch (even forged) change nothing; a forged invalid payload is dropped harmlessly', async () => {
    const second = gate()
    let calls = 0
    const h: RoleHandler = {
      async *iterBatches() {
        yield { batch_uid: 'b0', payload: {} }
        yield { batch_uid: 'b1', payload: {} }
      },
      async processBatch(batch, ctx) {
        if (batch.batch_uid === 'b0') calls++
        if (calls === 1 && batch.batch_uid === 'b1') throw new Error('transient on first attempt')
        if (ctx.attemptEpoch === 2 && batch.batch_uid === 'b1') await second.wait(ctx.signal)
        return { metrics: { count: 1 }, meta: { epoch: ctx.attemptEpoch } }
      },
    }
    const rt = await startRuntime({ handlers: { step: h } })
    try {
      const id = await rt.coordinator.createTask({
        graph: { nodes: [{ node_id: 'n', type: 'step', retry_policy: { max: 3, backoff_sec: 0 } }] },
      })
      await waitFor(async () => nodeOf(await rt.coordinator.getTask(id), 'n').attempt_epoch === 2 && nodeOf(await rt.coordinator.getTask(id), 'n').has_output)
      const before = nodeOf(await rt.coordinator.getTask(id), 'n')
      const topic = rt.statusTopic('step')
      const key = `${id}:n`
      await rt.bus.produce([
        { topic, key, value: forged(id, 'n', 1, { kind: 'BATCH_OK', worker_id: 'evil', batch_uid: 'zz', metrics: { count: 1000 }, artifacts_ref: null }, 'a') },
        { topic, key, value: forged(id, 'n', 1, { kind: 'TASK_FAILED', worker_id: 'evil', reason_code: 'x', permanent: true, error: 'forged' }, 'b') },
        { topic, key, value: forged(id, 'n', 1, { kind: 'TASK_DONE', worker_id: 'evil', metrics: { count: 5 }, artifacts_ref: null }, 'c') },
        { topic, key, value: forged(id, 'n', 2, { kind: 'BATCH_OK', worker_id: 'evil', batch_uid: 7, metrics: 'lots' }, 'd') },
        { topic, key, value: '{"this is": "not an envelope"' },
        { topic, key, value: forged(id, 'n', 99, { kind: 'TASK_DONE', worker_id: 'evil', metrics: {} }, 'e') },
      ])
      // The consumer must still be alive: the real epoch-2 events after the forged ones are applied.
      second.open()
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10000 })
      assert.equal(t.status, 'finished')
      const n = nodeOf(t, 'n')
      assert.equal(n.attempt_epoch, 2)
      assert.equal(n.stats['count'], 2, 'only the epoch-2 batches b0 and b1 are counted')
      assert.equal(before.status, 'running')
      const arts = await rt.coordinator.listArtifacts(id, { nodeId: 'n' })
      assert.deepEqual(arts.filter((a) => a.status === 'partial').map((a) => [a.batch_uid, a.attempt_epoch]).sort(), [
        ['b0', 2],
        ['b1', 2],
      ])
    } finally {
      second.open()
      await rt.stop()
    }
  })

  test('S-034 duplicated BATCH_OK and TASK_DONE messages never double-count', async () => {
    const bus = new MemoryBus()
    bus.setInterceptor((r) => (r.topic.startsWith('status.') ? { action: 'duplicate', times: 2 } : { action: 'pass' }))
    const h: RoleHandler = {
      async *iterBatches() {
        for (let i = 0; i < 5; i++) yield { batch_uid: `b${i}`, payload: { n: i } }
      },
      async processBatch(batch) {
        return { metrics: { count: 1, sum: batch.payload['n'] as number } }
      },
      async finalize() {
        return { metrics: { finals: 1 } }
      },
    }
    const rt = await startRuntime({ bus, handlers: { step: h } })
    try {
      const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'step' }] } })
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10000 })
      assert.equal(t.status, 'finished')
      assert.deepEqual(
        { count: nodeOf(t, 'n').stats['count'], sum: nodeOf(t, 'n').stats['sum'], finals: nodeOf(t, 'n').stats['finals'] },
        { count: 5, sum: 10, finals: 1 },
      )
      const dups = bus.records('status.step.v1').filter((r) => r.value.includes('"BATCH_OK"')).length
      assert.equal(dups, 15, 'every BATCH_OK really was delivered three times')
    } finally {
      await rt.stop()
    }
  })

  test('malformed messages on command and status topics are skipped and never stall the consumer', async () => {
    const h: RoleHandler = { async processBatch() { return { metrics: { count: 1 } } } }
    const rt = await startRuntime({ handlers: { step: h } })
    try {
      const garbage = ['', 'null', '[]', '{"v":2}', '\u0000\u0001binary', JSON.stringify({ v: 1, msg_type: 'cmd', role: 'coordinator' })]
      const records = garbage.flatMap((value) => [
        { topic: rt.cmdTopic('step'), key: 'k', value },
        { topic: rt.statusTopic('step'), key: 'k', value },
      ])
      await rt.bus.produce(records)
      const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'step' }] } })
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10000 })
      assert.equal(t.status, 'finished')
    } finally {
      await rt.stop()
    }
  })

  test('a status event whose metrics nest thousands of levels deep is skipped as malformed: its task finishes and stays readable', async () => {
    const held = gate()
    const h: RoleHandler = {
      async processBatch(_b, ctx) {
        await held.wait(ctx.signal)
        return { metrics: { count: 1 } }
      },
    }
    const logger = new MemoryLogger()
    const rt = await startRuntime({ handlers: { step: h }, logger })
    try {
      const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'step' }] } })
      await waitFor(async () => nodeOf(await rt.coordinator.getTask(id), 'n').accepted_at_ms !== null)
      // Stores and copies recurse through metrics: 20,000 levels overflowed the stack on every
      // write of the task (refused writes, redelivered for ever: the partition stalled).
      const deep = '{"x":'.repeat(20_000) + '{"c":1}' + '}'.repeat(20_000)
      const value = forged(id, 'n', 1, { kind: 'BATCH_OK', worker_id: 'evil', batch_uid: 'deep', metrics: '@@', artifacts_ref: null }, 'deep').replace('"@@"', deep)
      await rt.bus.produce([{ topic: rt.statusTopic('step'), key: `${id}:n`, value }])
      await waitFor(() => logger.records.some((r) => r.event === 'bus.message_malformed' && /metrics nested deeper than 32 levels/.test(String(r.fields['error']))))
      held.open()
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10000 })
      assert.equal(t.status, 'finished')
      assert.deepEqual(nodeOf(t, 'n').stats, { count: 1 })
      assert.deepEqual(nodeOf(await rt.coordinator.getTask(id), 'n').stats, { count: 1 })
      // The partition goes on: a later task on the same topic runs.
      const next = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'step' }] } })
      assert.equal((await rt.coordinator.waitForTask(next, { timeoutMs: 10000 })).status, 'finished')
    } finally {
      held.open()
      await rt.stop()
    }
  })
})
