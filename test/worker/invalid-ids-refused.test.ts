/**
 * A START whose ids this worker cannot use (a seed coordinator accepts node ids such as
 * `extract.v2`; here they would build store keys) is not run, and its attempt fails permanently on
 * the bus (`invalid_ids`): a seed coordinator learns it at once instead of waiting for the lease
 * to expire with no TASK_ACCEPTED. A forged record that is not a coordinator's START for this role
 * gets no answer.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryBus, MemoryLogger, protocol, type RoleHandler } from 'flowkit'
import { startRuntime } from '../helpers/runtime.ts'
import { waitFor } from '../helpers/wait.ts'

function record(taskId: string, nodeId: string, over: Partial<protocol.Envelope>, payload: Record<string, unknown>, dedup: string): string {
  return protocol.encode(protocol.makeEnvelope({ msg_type: 'cmd', role: 'coordinator', task_id: taskId, node_id: nodeId, step_type: 'step', attempt_epoch: 3, ts_ms: Date.now(), dedup_id: dedup, payload, ...over }))
}
const START = { cmd: 'TASK_START', input_ref: null, input_inline: null, batching: null, cancel_token: 't' }

test("a seed coordinator's START with a node id this worker cannot use fails its attempt permanently (invalid_ids) instead of going unanswered", async () => {
  const bus = new MemoryBus()
  const logger = new MemoryLogger()
  const ran: string[] = []
  const step: RoleHandler = {
    async processBatch(_b, ctx) {
      ran.push(ctx.nodeId)
      return {}
    },
  }
  const rt = await startRuntime({ bus, logger, handlers: { step } })
  try {
    const topic = rt.cmdTopic('step')
    const task = '6f1c2a9e-3b7d-4c1e-9a2b-0c4d5e6f7a8b'
    await bus.produce([
      { topic, key: `${task}:extract.v2`, value: record(task, 'extract.v2', {}, START, 'a') },
      // Not answered: a cancel, and a "START" that says it comes from a worker.
      { topic, key: `${task}:step 1`, value: record(task, 'step 1', {}, { cmd: 'TASK_CANCEL', reason: 'x' }, 'b') },
      { topic, key: `${task}:x.y`, value: record(task, 'x.y', { role: 'worker' }, START, 'c') },
      { topic, key: `${task}:ok`, value: record(task, 'ok', {}, START, 'd') },
    ])
    await waitFor(() => ran.includes('ok'), { message: 'the valid START behind them never ran' })
    const events = (): protocol.Envelope[] => bus.records(rt.statusTopic('step')).map((r) => JSON.parse(r.value) as protocol.Envelope).filter((e) => e.task_id === task)
    await waitFor(() => events().some((e) => e.node_id === 'extract.v2'), { message: 'no event for the refused START' })
    const refused = events().filter((e) => e.node_id !== 'ok')
    assert.deepEqual(
      refused.map((e) => [e.node_id, e.attempt_epoch, e.payload['kind'], e.payload['reason_code'], e.payload['permanent']]),
      [['extract.v2', 3, 'TASK_FAILED', 'invalid_ids', true]],
    )
    assert.match(String(refused[0]?.payload['error']), /invalid node id "extract\.v2"/)
    assert.deepEqual(ran, ['ok'])
  } finally {
    await rt.stop()
  }
})
