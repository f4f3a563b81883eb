/**
 * Defect 14 (issue 7): a forged START with an invalid node id (`bad.node$id`) or task id
 * (`../../x`) was still run by the worker after the store refused its ids. The worker now checks
 * every id of an envelope addressed to it before using it (task id: the rule of submission; node
 * id: the store's and the graph's rule, assertNodeId; upstream node ids of an input adapter too),
 * warns `worker.command_invalid_ids` and skips the message: nothing runs, nothing crashes, and the
 * partition goes on. The envelopes are produced raw on the command topic (memory or real Kafka).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryLogger, type RoleHandler, protocol } from 'flowkit'
import { startRuntime } from '../helpers/runtime.ts'
import { waitFor } from '../helpers/wait.ts'

function command(taskId: string, nodeId: string, payload: Record<string, unknown>, dedup: string): string {
  return protocol.encode(
    protocol.makeEnvelope({
      msg_type: 'cmd',
      role: 'coordinator',
      task_id: taskId,
      node_id: nodeId,
      step_type: 'step',
      attempt_epoch: 1,
      ts_ms: 1_700_000_000_000,
      dedup_id: dedup,
      payload,
    }),
  )
}

const start = (inputInline: Record<string, unknown> | null = null) => ({ cmd: 'TASK_START', input_ref: null, input_inline: inputInline, batching: null, cancel_token: 't' })

test('defect 14: forged commands with invalid task or node ids are refused with a warning, never run, and do not block the partition', async () => {
  const logger = new MemoryLogger()
  const ran: string[] = []
  const handler: RoleHandler = {
    async processBatch(_b, ctx) {
      ran.push(`${ctx.taskId}/${ctx.nodeId}`)
      return { metrics: { count: 1 } }
    },
  }
  const rt = await startRuntime({ logger, handlers: { step: handler } })
  try {
    const topic = rt.cmdTopic('step')
    const key = 'same-partition' // every record below goes to one partition, in this order
    await rt.bus.produce([
      { topic, key, value: command('forged-task', 'bad.node$id', start(), 'f1') },
      { topic, key, value: command('../../x', 'n', start(), 'f2') },
      { topic, key, value: command('forged-task', 'n/../../etc', { cmd: 'TASK_CANCEL', reason: 'x' }, 'f3') },
      // Valid ids, but the input adapter would read an upstream whose id is not a node id.
      { topic, key, value: command('forged-task', 'reader', start({ input_adapter: 'pull.from_artifacts', input_args: { from_nodes: ['../up'] } }), 'f4') },
      // A legitimate command behind them on the same partition.
      { topic, key, value: command('legit-task', 'n', start(), 'ok') },
    ])
    await waitFor(() => ran.includes('legit-task/n'), { timeoutMs: 30_000, message: 'the command behind the forged ones never ran' })
    await waitFor(() => logger.records.some((r) => r.event === 'node.failed' && r.fields['node_id'] === 'reader'), {
      timeoutMs: 30_000,
      message: 'the run with a forged upstream id did not fail',
    })
    assert.deepEqual(ran, ['legit-task/n'], 'no forged command ran its handler')
    const refused = logger.records.filter((r) => r.event === 'worker.command_invalid_ids')
    assert.equal(refused.length, 3, 'each command with invalid ids is refused, cancels included')
    assert.equal(refused[0]?.level, 'warn')
    assert.match(String(refused[0]?.fields['error']), /invalid node id "bad\.node\$id"/)
    assert.match(String(refused[1]?.fields['error']), /task_id "\.\.\/\.\.\/x" does not match/)
    const reader = logger.records.find((r) => r.event === 'node.failed' && r.fields['node_id'] === 'reader')!
    assert.equal(reader.fields['reason_code'], 'bad_input_args')
    assert.equal(reader.fields['permanent'], true)
    assert.match(String(reader.fields['error']), /from_nodes: invalid node id "\.\.\/up"/)
    for (const event of ['bus.message_parked', 'worker.run_crashed', 'worker.task_unreadable']) {
      assert.ok(!logger.events().includes(event), `no ${event}`)
    }
    // The worker still runs the coordinator's tasks.
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'step' }] } })
    assert.equal((await rt.coordinator.waitForTask(id, { timeoutMs: 30_000 })).status, 'finished')
  } finally {
    await rt.stop()
  }
})

test('defect 14: a TASK_DISCOVER query with invalid ids is skipped with a warning, not parked as poison', async () => {
  const logger = new MemoryLogger()
  const rt = await startRuntime({ logger, handlers: { step: { async processBatch() { return {} } } } })
  try {
    const value = protocol.encode(
      protocol.makeEnvelope({
        msg_type: 'query',
        role: 'coordinator',
        task_id: 'forged-task',
        node_id: 'bad.node$id',
        step_type: 'step',
        attempt_epoch: 1,
        ts_ms: 1_700_000_000_000,
        dedup_id: 'q1',
        payload: { query: 'TASK_DISCOVER' },
      }),
    )
    // The worker's query subscription starts at the end of the topic: produce until it is seen.
    await waitFor(
      async () => {
        await rt.bus.produce([{ topic: rt.workerBase.topicQuery as string, key: 'forged-task', value }])
        return logger.events().includes('worker.query_invalid_ids')
      },
      { timeoutMs: 15_000, intervalMs: 200, message: 'the query with invalid ids was not refused' },
    )
    assert.ok(!logger.events().includes('bus.message_parked'))
  } finally {
    await rt.stop()
  }
})
