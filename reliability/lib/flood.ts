/**
 * Malformed traffic: records no flowkit peer ever sends, produced straight onto the scenario's
 * status and command topics with a plain @platformatic/kafka producer — not JSON, wrong shapes,
 * wrong types, bad protocol versions, invalid UTF-8, deep nesting, oversized values, and (status
 * topics only) well-formed events of tasks that do not exist. None names a real task, so none may
 * change any task's state or run a handler; a consumer must skip each without blocking its
 * partition or crashing.
 */
import { randomBytes } from 'node:crypto'
import { Producer } from '@platformatic/kafka'
import { cmdTopic, statusTopic } from './spec.ts'

function envelope(i: number, cmd: boolean, over: Record<string, unknown>): string {
  return JSON.stringify({
    v: 1,
    msg_type: cmd ? 'cmd' : 'event',
    role: cmd ? 'coordinator' : 'worker',
    corr_id: `flood-${i}`,
    dedup_id: `flood-${i}`,
    // The variant is in the id, so whatever a flood record causes names its kind.
    task_id: `flood-v${i % 20}-${i % 97}`,
    node_id: 'src',
    step_type: 'rel_src',
    attempt_epoch: 1,
    ts_ms: Date.now(),
    payload: cmd ? { cmd: 'TASK_START', input_ref: null, input_inline: null, batching: null, cancel_token: 'x' } : { kind: 'BATCH_OK', worker_id: 'flood', batch_uid: 'b0', metrics: { items: 1 } },
    ...over,
  })
}

/** The i-th malformed value for a command (`cmd`) or status topic. */
export function malformed(i: number, cmd: boolean): Buffer {
  const v = i % 20
  const text = (s: string): Buffer => Buffer.from(s, 'utf8')
  switch (v) {
    case 0:
      return text('not json {')
    case 1:
      return text('')
    case 2:
      return text('[1,2,3]')
    case 3:
      return text('null')
    case 4:
      return text('{"v":1}')
    case 5:
      return text(envelope(i, cmd, { v: 2 }))
    case 6:
      return text(envelope(i, cmd, { msg_type: 'bogus' }))
    case 7:
      return text(envelope(i, cmd, { attempt_epoch: '1' }))
    case 8:
      return text(envelope(i, cmd, { attempt_epoch: -5 }))
    case 9:
      return text(envelope(i, cmd, { payload: 'x' }))
    case 10:
      return text(envelope(i, cmd, { payload: cmd ? { cmd: 'NOPE' } : { kind: 'NOPE', worker_id: 'flood' } }))
    case 11:
      return text(envelope(i, cmd, { payload: cmd ? { cmd: 42 } : { kind: 'BATCH_OK' } }))
    case 12:
      return text(envelope(i, cmd, { payload: cmd ? {} : { kind: 'BATCH_OK', worker_id: 'flood', batch_uid: '', metrics: 5 } }))
    case 13:
      return text(envelope(i, cmd, { task_id: '' }))
    case 14:
      return randomBytes(64 + (i % 64))
    case 15:
      return text(`${'['.repeat(5000)}${']'.repeat(5000)}`)
    case 16:
      return text(envelope(i, cmd, { node_id: 'n'.repeat(600) }))
    case 17:
      // Status: a well-formed event of a task that does not exist (coordinators ignore it). Not
      // on command topics: a well-formed TASK_START of an unknown task is run by design (the
      // protocol does not require the task document; src/worker/intake.ts), so it is no
      // malformed record; there the target worker id has the wrong type instead.
      return text(cmd ? envelope(i, cmd, { target_worker_id: 42 }) : envelope(i, cmd, {}))
    case 18:
      return i % 100 === 18 ? text(`{"pad":"${'x'.repeat(200_000)}"}`) : text(envelope(i, cmd, { ts_ms: 'yesterday' }))
    default:
      // The wrong sender: a command from a worker, an event from a coordinator.
      return text(envelope(i, cmd, { role: cmd ? 'worker' : 'coordinator' }))
  }
}

/** Produces `count` malformed records, half on status topics, half on command topics. */
export async function flood(brokers: string, prefix: string, roles: string[], count: number): Promise<number> {
  const producer = new Producer({ clientId: 'rel-flood', bootstrapBrokers: [brokers], retries: 5, autocreateTopics: false, timeout: 15_000 })
  let sent = 0
  try {
    for (let start = 0; start < count; start += 100) {
      const messages = []
      for (let i = start; i < Math.min(count, start + 100); i++) {
        const cmd = i % 2 === 1
        const role = roles[i % roles.length] as string
        const key = i % 3 === 0 ? undefined : Buffer.from(i % 3 === 1 ? `flood-${i}` : `flood-v${i % 20}-${i % 97}:src`)
        messages.push({ topic: cmd ? cmdTopic(prefix, role) : statusTopic(prefix, role), value: malformed(i, cmd), ...(key ? { key } : {}) })
      }
      await producer.send({ messages, acks: -1 })
      sent += messages.length
    }
  } finally {
    await producer.close().catch(() => undefined)
  }
  return sent
}
