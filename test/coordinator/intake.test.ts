/**
 * Intake (src/coordinator/intake.ts): a status event of a task this coordinator does not hold is
 * adopted when the task is ours; when its partition moves away during that lookup, the event goes
 * to the new owner and the task is not remembered as "not ours" (else, once the partition came
 * back, its events would be dropped: seen in the reliability suite's coordinator-zombie scenario).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Intake } from '../../src/coordinator/intake.ts'
import type { Engine } from '../../src/coordinator/engine.ts'
import type { TaskRuntime } from '../../src/coordinator/runtime.ts'
import { createLogger } from '../../src/log.ts'
import type { BusMessage } from '../../src/ports/bus.ts'
import { encode, makeEnvelope } from '../../src/protocol/messages.ts'
import { SystemClock } from '../../src/clock.ts'

function batchOk(taskId: string, offset: number): BusMessage {
  const env = makeEnvelope({
    msg_type: 'event',
    role: 'worker',
    task_id: taskId,
    node_id: 'a',
    step_type: 'step',
    attempt_epoch: 1,
    ts_ms: Date.now(),
    dedup_id: `d${offset}`,
    payload: { kind: 'BATCH_OK', worker_id: 'w1', batch_uid: `b${offset}`, metrics: { count: 1 } },
  })
  return { topic: 'status.step.v1', key: `${taskId}:a`, value: encode(env), headers: {}, partition: 0, offset, timestamp: Date.now() }
}

test('an event whose task changed owner while it was looked up is forwarded, and the task is looked up again once it is ours', async () => {
  let owned = true
  const adopted: string[] = []
  const forwarded: string[] = []
  const intake = new Intake({ tasks: new Map() } as unknown as Engine, new SystemClock(), createLogger({ level: 'silent' }), {
    adopt: async (id) => {
      adopted.push(id)
      owned = false // the assignment changed while the task was read
      return null as TaskRuntime | null
    },
    barrier: async () => undefined,
    isRecentlyDone: () => false,
    stopRun: () => {},
    owns: () => owned,
    forward: async (records) => {
      forwarded.push(...records.map((r) => r.taskId))
    },
  })
  await intake.statusBatch([batchOk('t1', 1)])
  assert.deepEqual(adopted, ['t1'])
  assert.deepEqual(forwarded, ['t1'], 'the event goes to the new owner')
  // The partition comes back: the next event of the task is looked up again, not dropped.
  owned = true
  await intake.statusBatch([batchOk('t1', 2)])
  assert.deepEqual(adopted, ['t1', 't1'])
})
