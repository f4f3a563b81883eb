/**
 * Defect 7 (issue 7): a graph whose TASK_START exceeded the broker's message limit was accepted,
 * then hung while the outbox dead-lettered the command. Now `createTask` refuses it, naming the
 * node, the size and the limit (`maxMessageBytes`, default 1,000,000 bytes; a START keeps room for
 * the task variables it carries inline), and bounds the task params. A START the bus refuses for
 * good anyway (variables that grew, a broker with a lower limit) fails its node with
 * `start_undeliverable` instead of hanging.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ErrorCode, GraphValidationError, MemoryLogger, type RoleHandler } from 'flowkit'
import { buildTask, startEnvelope } from '../../src/coordinator/submit.ts'
import { encode } from '../../src/protocol/messages.ts'
import { startRuntime, REAL_E2E } from '../helpers/runtime.ts'
import { envelopeOf, withBusFaults } from '../helpers/bus-faults.ts'
import { waitFor } from '../helpers/wait.ts'

const done: RoleHandler = {
  async processBatch() {
    return { metrics: { count: 1 } }
  },
}

const OPTS = { coordinatorFns: new Set<string>(), rejectUnknownInputAdapters: false }

function caught(fn: () => unknown): GraphValidationError {
  try {
    fn()
  } catch (err) {
    assert.ok(err instanceof GraphValidationError, `expected a GraphValidationError, got ${String(err)}`)
    return err
  }
  assert.fail('expected createTask to refuse the graph')
}

async function rejected(p: Promise<unknown>): Promise<GraphValidationError> {
  try {
    await p
  } catch (err) {
    assert.ok(err instanceof GraphValidationError, `expected a GraphValidationError, got ${String(err)}`)
    return err
  }
  assert.fail('expected createTask to refuse the graph')
}

test('defect 7: a node whose TASK_START exceeds maxMessageBytes is refused at createTask, naming the node, the size and the limit', async () => {
  const rt = await startRuntime({ handlers: { step: done } })
  try {
    const before = await rt.store.listTaskIds(['queued', 'running'])
    const err = await rejected(
      rt.coordinator.createTask({
        graph: {
          nodes: [
            { node_id: 'small', type: 'step' },
            { node_id: 'huge', type: 'step', depends_on: ['small'], io: { input_inline: { rows: 'x'.repeat(1_200_000) } } },
          ],
        },
      }),
    )
    assert.equal(err.code, ErrorCode.GraphLimit)
    assert.equal(err.path, 'nodes[1].io')
    assert.match(err.message, /node "huge": its TASK_START would take up to 1,4\d\d,\d{3} bytes/)
    assert.match(err.message, /over the limit of 1,000,000 bytes \(coordinator config maxMessageBytes/)
    assert.equal(err.details['node_id'], 'huge')
    assert.equal(err.details['max'], 1_000_000)
    assert.ok((err.details['bytes'] as number) > 1_200_000)
    // nothing was stored
    assert.deepEqual(await rt.store.listTaskIds(['queued', 'running']), before)

    // A START well under the limit (with the room kept for variables) goes through and runs.
    const id = await rt.coordinator.createTask({
      graph: { nodes: [{ node_id: 'big_ok', type: 'step', io: { input_inline: { rows: 'y'.repeat(600_000) } } }] },
    })
    assert.equal((await rt.coordinator.waitForTask(id, { timeoutMs: 60_000 })).status, 'finished')
  } finally {
    await rt.stop()
  }
})

test('defect 7: maxMessageBytes and maxParamsBytes are configurable and count UTF-8 bytes', () => {
  const limits = { maxMessageBytes: 400_000, maxParamsBytes: 1000 }
  // 50,000 three-byte characters: 150,000 bytes of io + 262,144 kept for variables > 400,000
  const io = { input_inline: { text: '€'.repeat(50_000) } }
  const err = caught(() => buildTask({ graph: { nodes: [{ node_id: 'euro', type: 'step', io }] } }, { ...OPTS, limits }, 0))
  assert.equal(err.code, ErrorCode.GraphLimit)
  assert.match(err.message, /node "euro"/)
  assert.match(err.message, /over the limit of 400,000 bytes/)
  // the same node fits the default limit
  buildTask({ graph: { nodes: [{ node_id: 'euro', type: 'step', io }] } }, OPTS, 0)

  const params = caught(() => buildTask({ params: { note: 'z'.repeat(2000) }, graph: { nodes: [{ node_id: 'a', type: 'step' }] } }, { ...OPTS, limits }, 0))
  assert.equal(params.code, ErrorCode.GraphLimit)
  assert.equal(params.path, 'params')
  assert.match(params.message, /task params take 2,\d{3} bytes of JSON, over the limit of 1,000 \(coordinator config maxParamsBytes\)/)

  // coordinator functions send no START: only the whole task's size bounds their args
  buildTask({ graph: { nodes: [{ node_id: 'f', type: 'coordinator_fn', io: { fn: 'noop', fn_args: { blob: 'q'.repeat(500_000) } } }] } }, { ...OPTS, coordinatorFns: new Set(['noop']), limits }, 0)
  const whole = caught(() =>
    buildTask(
      { graph: { nodes: [{ node_id: 'f', type: 'coordinator_fn', io: { fn: 'noop', fn_args: { blob: 'q'.repeat(500_000) } } }] } },
      { ...OPTS, coordinatorFns: new Set(['noop']), limits: { maxTaskBytes: 400_000 } },
      0,
    ),
  )
  assert.equal(whole.code, ErrorCode.GraphLimit)
  assert.match(whole.message, /over the limit of 400,000 \(coordinator config maxTaskBytes\)/)
})

test('defect 7: a TASK_START the bus refuses for good fails its node (start_undeliverable) instead of hanging', async () => {
  const log = new MemoryLogger()
  const rt = await startRuntime({
    logger: log,
    handlers: { step: done },
    coordinator: { outboxMaxRetry: 2, outboxBackoffMinMs: 20, outboxBackoffMaxMs: 50 },
    // The broker refuses every record of the "toobig" command topic (as Kafka does with
    // MESSAGE_TOO_LARGE for a record over its limit); everything else goes through.
    coordinatorBus: (bus) =>
      withBusFaults(bus, {
        produce: (records) => {
          if (records.some((r) => r.topic.endsWith('cmd.toobig.v1'))) throw new Error('MESSAGE_TOO_LARGE: the record is larger than the broker accepts (injected)')
          return records
        },
      }),
  })
  try {
    const id = await rt.coordinator.createTask({
      graph: { nodes: [{ node_id: 'stuck', type: 'toobig', retry_policy: { max: 2, backoff_sec: 0 } }] },
    })
    // Generous: two attempts, each dead-lettered after two sends with a short backoff.
    const task = await rt.coordinator.waitForTask(id, { timeoutMs: REAL_E2E ? 90_000 : 60_000 })
    assert.equal(task.status, 'failed')
    const node = task.nodes.find((n) => n.node_id === 'stuck')
    assert.equal(node?.status, 'failed')
    assert.equal(node?.last_error?.reason_code, 'retries_exhausted')
    assert.match(node?.last_error?.error ?? '', /start_undeliverable: MESSAGE_TOO_LARGE/)
    // each attempt's START is parked as a dead letter an operator can see
    await waitFor(async () => (await rt.store.outboxList({ status: 'failed' })).filter((r) => r.topic.endsWith('cmd.toobig.v1')).length === 2, {
      timeoutMs: 10_000,
      message: 'both STARTs dead-lettered',
    })
    assert.ok(log.records.some((r) => r.event === 'outbox.failed'))
  } finally {
    await rt.stop()
  }
})

test('defect 7: the size checked at createTask is the TASK_START the coordinator sends, byte for byte', async () => {
  const starts: string[] = []
  const rt = await startRuntime({
    handlers: { step: done },
    coordinatorBus: (bus) =>
      withBusFaults(bus, {
        produce: (records) => {
          for (const r of records) if (r.topic.endsWith('cmd.step.v1') && envelopeOf(r.value)?.['msg_type'] === 'cmd') starts.push(r.value)
          return records
        },
      }),
  })
  try {
    const id = await rt.coordinator.createTask({
      graph: {
        nodes: [
          { node_id: 'set', type: 'coordinator_fn', io: { fn: 'vars.set', fn_args: { kv: { 'cfg.mode': 'fast', 'cfg.note': 'ünïcödé' } } } },
          {
            node_id: 'io',
            type: 'step',
            depends_on: ['set'],
            io: { input_ref: { uri: 's3://bucket/key' }, input_inline: { rows: ['€', 1, null] }, batching: { size: 10 } },
          },
        ],
      },
    })
    assert.equal((await rt.coordinator.waitForTask(id, { timeoutMs: 30_000 })).status, 'finished')
    const stored = await rt.store.getTask(id)
    const spec = stored?.graph.nodes.find((n) => n.node_id === 'io')
    assert.ok(spec)
    const sent = starts.map((v) => ({ v, env: envelopeOf(v) as Record<string, unknown> & { payload: Record<string, unknown> } })).filter((s) => s.env.payload['cmd'] === 'TASK_START')
    assert.ok(sent.length >= 1, 'the START was captured')
    for (const { v, env } of sent) {
      const rebuilt = startEnvelope(id, spec, env['attempt_epoch'] as number, env['ts_ms'] as number, env.payload['vars'] as Record<string, unknown>)
      rebuilt.corr_id = env['corr_id'] as string
      // If this fails, commands.ts changed what a START holds: update startEnvelope with it.
      assert.equal(encode(rebuilt), v)
    }
    assert.deepEqual(sent[0]?.env.payload['vars'], { cfg: { mode: 'fast', note: 'ünïcödé' } })
  } finally {
    await rt.stop()
  }
})
