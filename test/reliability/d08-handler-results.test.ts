/**
 * Defect 8 (issue 7): a malformed handler result (non-object `metrics` from processBatch or
 * finalize, …) hung the node until its lease expired (the coordinator drops an event whose metrics
 * are not an object), and an oversized meta or result failed with the driver's cryptic "offset out
 * of range" (MongoDB) or MESSAGE_TOO_LARGE (Kafka). The worker now checks handler results before
 * storing or sending them and fails the run permanently (TASK_FAILED permanent: true) with a
 * message naming the field and what is wrong, or the size and the limit. Runs on memory and, with
 * FLOWKIT_E2E_RUNTIME=real, on Kafka + the MongoDB-protocol server.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import type { RoleHandler, TaskView } from 'flowkit'
import { startRuntime } from '../helpers/runtime.ts'

type Node = TaskView['nodes'][number]

/** Runs one node with `handler` (retries allowed) and returns it once the task ended. */
async function runOne(handler: RoleHandler): Promise<{ task: TaskView; node: Node; calls: number }> {
  let calls = 0
  const counted: RoleHandler = {
    ...handler,
    async processBatch(batch, ctx) {
      calls++
      return handler.processBatch(batch, ctx)
    },
  }
  const rt = await startRuntime({ handlers: { step: counted } })
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'step', retry_policy: { max: 3, backoff_sec: 0 } }] } })
    // Far less than the lease (60 s): the failure is reported, not found out by lease expiry.
    const task = await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })
    return { task, node: task.nodes.find((n) => n.node_id === 'n')!, calls }
  } finally {
    await rt.stop()
  }
}

function assertPermanent(r: { task: TaskView; node: Node; calls: number }, reasonCode: string, message: RegExp): void {
  assert.equal(r.task.status, 'failed')
  assert.equal(r.node.status, 'failed')
  assert.equal(r.node.attempt_epoch, 1, 'permanent: not retried')
  assert.equal(r.node.last_error?.permanent, true)
  assert.equal(r.node.last_error?.reason_code, reasonCode)
  assert.match(r.node.last_error?.error ?? '', message)
}

describe('defect 8: malformed handler results', () => {
  test('defect 8: non-object metrics from processBatch fail the node permanently with a message naming the field', async () => {
    const r = await runOne({
      async processBatch() {
        return { metrics: 'seven' as unknown as Record<string, number> }
      },
    })
    assertPermanent(r, 'bad_handler_result', /^processBatch result: metrics must be an object of numbers, got string$/)
  })

  test('defect 8: non-object metrics from finalize fail the node permanently', async () => {
    const r = await runOne({
      async processBatch() {
        return { metrics: { count: 1 } }
      },
      async finalize() {
        return { metrics: [1, 2] as unknown as Record<string, number> }
      },
    })
    assertPermanent(r, 'bad_handler_result', /^finalize result: metrics must be an object of numbers, got array$/)
  })

  test('defect 8: a metric that is not a number, a non-object result or a non-object meta is refused by name', async () => {
    const cases: [unknown, RegExp][] = [
      [{ metrics: { count: '3' } }, /^processBatch result: metrics must be an object of numbers, got string for metrics\.count$/],
      [{ metrics: { count: Number.NaN } }, /^processBatch result: metrics\.count must be a finite number, got NaN$/],
      ['done', /^processBatch result must be an object \(or nothing\), got string$/],
      [{ meta: [1, 2, 3] }, /^processBatch result: meta must be an object, got array$/],
      [{ artifacts_ref: 'x' }, /^processBatch result: artifacts_ref must be an object, got string$/],
      [{ success: 'no' }, /^processBatch result: success must be a boolean, got string$/],
    ]
    for (const [result, message] of cases) {
      const r = await runOne({
        async processBatch() {
          return result as never
        },
      })
      assertPermanent(r, 'bad_handler_result', message)
    }
  })

  test("defect 8: a handler's classifyError cannot turn a refused result into a transient failure", async () => {
    const r = await runOne({
      async processBatch() {
        return { metrics: 42 as unknown as Record<string, number> }
      },
      classifyError: () => ({ reasonCode: 'flaky', permanent: false }),
    })
    assertPermanent(r, 'bad_handler_result', /metrics must be an object of numbers, got number/)
  })
})

describe('defect 8: oversized results', () => {
  test('defect 8: a 17 MB meta fails the node permanently with its size and the store limit', async () => {
    const r = await runOne({
      async processBatch() {
        return { metrics: { count: 1 }, meta: { blob: 'x'.repeat(17 * 1024 * 1024) } }
      },
    })
    assertPermanent(
      r,
      'result_too_large',
      /^partial artifact meta of batch b0 is too large: 17825\d{3} bytes encoded for the store, more than the limit of 16760832 bytes/,
    )
  })

  test('defect 8: a 17 MB complete meta from finalize fails the node permanently', async () => {
    const r = await runOne({
      async processBatch() {
        return { metrics: { count: 1 } }
      },
      async finalize() {
        return { meta: { blob: 'x'.repeat(17 * 1024 * 1024) } }
      },
    })
    assertPermanent(r, 'result_too_large', /^complete artifact meta is too large: \d+ bytes encoded for the store, more than the limit of 16760832 bytes/)
  })

  test('defect 8: a BATCH_OK or TASK_DONE larger than a bus message fails the node permanently with its size and the limit', async () => {
    const big = { blob: 'x'.repeat(2 * 1024 * 1024) }
    const batch = await runOne({
      async processBatch() {
        return { metrics: { count: 1 }, artifacts_ref: big }
      },
    })
    assertPermanent(
      batch,
      'result_too_large',
      /^BATCH_OK of batch b0 \(its metrics and artifacts_ref\) is too large: \d+ bytes encoded, more than the bus message limit of 1047552 bytes/,
    )
    const done = await runOne({
      async processBatch() {
        return { metrics: { count: 1 } }
      },
      async finalize() {
        return { artifacts_ref: big }
      },
    })
    assertPermanent(done, 'result_too_large', /^TASK_DONE \(the finalize metrics and artifacts_ref\) is too large: \d+ bytes encoded/)
  })

  test('defect 8: a failure whose error text is larger than a bus message is still reported (cut), not left to the lease', async () => {
    const r = await runOne({
      async processBatch() {
        throw Object.assign(new Error(`bad input: ${'y'.repeat(3 * 1024 * 1024)}`), { permanent: true, reasonCode: 'bad_input' })
      },
    })
    assertPermanent(r, 'bad_input', /^bad input: y+… \(\d+ more characters cut\)$/)
    assert.ok((r.node.last_error?.error ?? '').length < 10_000)
  })
})
