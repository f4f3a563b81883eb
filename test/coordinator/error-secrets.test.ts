/**
 * The error text a node keeps (`last_error.error`: getTask, the CLI, the dashboard's API) has its
 * secrets masked and is bounded, wherever it came from. A flowkit worker masks and cuts its own
 * before sending; a coordinator function's error, and a worker in another language (a Python
 * worker sends its exception text as it is), went into the task as they were: a connection string
 * with its password was served by the dashboard.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryBus, protocol, type CoordinatorFn } from 'flowkit'
import { Redactor } from '../../src/adapters/kafka/bus-errors.ts'
import { startRuntime } from '../helpers/runtime.ts'
import { waitFor } from '../helpers/wait.ts'

const SECRET = 'S3cretPW'
const LEAKY = `cannot reach mongodb://app:${SECRET}@db.internal:27017/prod (password=${SECRET})`

test("a coordinator function's error is kept with its secrets masked", async () => {
  const leaky: CoordinatorFn = async () => {
    throw Object.assign(new Error(LEAKY), { permanent: true })
  }
  const rt = await startRuntime({ functions: { 'my.leaky': leaky } })
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'f', type: 'coordinator_fn', io: { fn: 'my.leaky' } }] } })
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10_000 })
    const err = t.nodes[0]?.last_error
    assert.equal(t.status, 'failed')
    assert.match(err?.error ?? '', /cannot reach mongodb:\/\//)
    assert.doesNotMatch(JSON.stringify(t), new RegExp(SECRET))
  } finally {
    await rt.stop()
  }
})

test("a foreign worker's failure text (not masked, 100,000 characters) is kept masked and cut; its reason code (300,000 characters) cut to 200", async () => {
  const bus = new MemoryBus()
  const rt = await startRuntime({ bus, workers: 0 })
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'py' }] } })
    // The START a Python worker would read; it answers as one: accepted, then failed.
    let start: protocol.Envelope | undefined
    await waitFor(() => {
      start = bus.records(rt.cmdTopic('py')).map((r) => JSON.parse(r.value) as protocol.Envelope).find((e) => e.task_id === id && e.payload['cmd'] === 'TASK_START')
      return start !== undefined
    }, { message: 'no TASK_START was sent' })
    const s = start as protocol.Envelope
    const event = (payload: Record<string, unknown>, tag: string): string =>
      protocol.encode(protocol.makeEnvelope({ msg_type: 'event', role: 'worker', task_id: id, node_id: 'n', step_type: 'py', attempt_epoch: s.attempt_epoch, ts_ms: Date.now(), dedup_id: `py-${tag}`, payload }))
    const lease = { lease_id: 'py-lease', lease_deadline_ts_ms: Date.now() + 60_000 }
    await bus.produce([
      { topic: rt.statusTopic('py'), key: `${id}:n`, value: event({ kind: 'TASK_ACCEPTED', worker_id: 'py-1', ...lease }, 'a') },
      { topic: rt.statusTopic('py'), key: `${id}:n`, value: event({ kind: 'TASK_FAILED', worker_id: 'py-1', reason_code: `boom${'y'.repeat(300_000)}`, permanent: true, error: `${LEAKY}\n${'x'.repeat(100_000)}` }, 'f') },
    ])
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10_000 })
    const err = t.nodes[0]?.last_error?.error ?? ''
    assert.equal(t.status, 'failed')
    assert.match(err, /cannot reach mongodb:\/\//)
    assert.doesNotMatch(JSON.stringify(t), new RegExp(SECRET))
    assert.ok(err.length < 8300, `kept ${err.length} characters`)
    assert.match(err, /more characters cut\)$/)
    assert.equal(t.nodes[0]?.last_error?.reason_code, `boom${'y'.repeat(196)}`)
    assert.ok((t.error ?? '').length < 9000, `the task's error: ${(t.error ?? '').length} characters`)
  } finally {
    await rt.stop()
  }
})

test('the Kafka adapter masks a secret before it cuts a long message (a secret across the cut kept its first part)', () => {
  const secret = 'Sup3rSecretKafkaPassword'
  const r = new Redactor([secret])
  const text = r.describe(new Error(`${'x'.repeat(290)} auth: ${secret} refused`))
  assert.doesNotMatch(text, /Sup/, text.slice(-40))
})
