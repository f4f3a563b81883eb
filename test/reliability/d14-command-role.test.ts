/**
 * Defect 14 (issue 7), found by the reliability suite's malformed flood: a TASK_START whose
 * envelope says it comes from a worker (`role: "worker"`) was run. Commands are the coordinator's:
 * any other role is logged as malformed and skipped.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryLogger, protocol, type RoleHandler } from 'flowkit'
import { noopHandler, startRuntime } from '../helpers/runtime.ts'
import { waitFor } from '../helpers/wait.ts'

test('defect 14: a command whose envelope is not from the coordinator is never run', async () => {
  const log = new MemoryLogger()
  const ran: string[] = []
  const handler: RoleHandler = {
    async processBatch(_b, ctx) {
      ran.push(ctx.taskId)
      return { metrics: {} }
    },
  }
  const rt = await startRuntime({ logger: log, handlers: { step: handler, other: noopHandler() } })
  try {
    const forged = protocol.makeEnvelope({
      msg_type: 'cmd',
      role: 'worker',
      task_id: 'forged-task',
      node_id: 'n',
      step_type: 'step',
      attempt_epoch: 1,
      ts_ms: Date.now(),
      dedup_id: 'forged',
      payload: { cmd: 'TASK_START', input_ref: null, input_inline: null, batching: null, cancel_token: 'x', vars: {} },
    })
    await rt.bus.produce([{ topic: rt.cmdTopic('step'), key: 'forged-task:n', value: protocol.encode(forged) }])
    await waitFor(() => log.records.some((r) => r.event === 'bus.message_malformed' && String(r.fields['error']).includes('not the coordinator')), { message: 'the forged command was refused' })
    // The partition goes on: a real task runs.
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'step' }] } })
    assert.equal((await rt.coordinator.waitForTask(id)).status, 'finished')
    assert.deepEqual(ran, [id], 'only the real task ran')
  } finally {
    await rt.stop()
  }
})
