import { test } from 'node:test'
import assert from 'node:assert/strict'
import { protocol } from 'flowkit'
import { statusDedupId } from '../../src/worker/status.ts'

test('a status event dedup id is dedupId of its fields, whatever parts it has (ids with characters JSON escapes too)', () => {
  const infos = [
    { taskId: 't-1', nodeId: 'n1', stepType: 's', attemptEpoch: 1, workerId: 'w', leaseId: 'l' },
    { taskId: 'tâsk"\\\u0001x', nodeId: 'node_2-b', stepType: 's', attemptEpoch: 17, workerId: 'w', leaseId: 'l' },
  ]
  const parts = [
    { kind: 'TASK_ACCEPTED' },
    { kind: 'BATCH_OK', batch_uid: 'b0' },
    { kind: 'BATCH_FAILED', batch_uid: 'uid "quoted" \u2028 ünïcode' },
    { kind: 'TASK_HEARTBEAT', n: 12 },
    { kind: 'CANCELLED', restored: true },
  ]
  for (const info of infos) {
    for (const d of parts) {
      const expected = protocol.dedupId({ ...d, task: info.taskId, node: info.nodeId, epoch: info.attemptEpoch })
      assert.equal(statusDedupId(info, d), expected, JSON.stringify(d))
      assert.equal(expected.length, protocol.DEDUP_ID_LENGTH)
    }
  }
})
