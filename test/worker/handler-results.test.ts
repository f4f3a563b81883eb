/**
 * What a handler gives back is checked and owned by the worker (an audit of the handler API found
 * each of these getting through):
 * - an `artifacts_ref` nested deeper than a coordinator reads, or not JSON, failed nothing on the
 *   worker: the coordinator dropped the event (the node stalled until its lease expired, its
 *   metrics short) or the run crashed into `classifyError` (retried to exhaustion);
 * - a meta object the handler reuses for its next batch was written late, with the later data;
 * - a batch named `__final__` lost its metrics to the run's final ones;
 * - a thrown object without a prototype marked permanent crashed the run (retried as worker_error);
 * - a batch_uid too large for a bus message crashed the run the same way;
 * - a worker stopped while it claimed a START kept the claim: no other worker could run it.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryLogger, MemoryStore, type RoleHandler, type TaskView } from 'flowkit'
import { startRuntime } from '../helpers/runtime.ts'
import { overrideStore } from '../helpers/store-proxy.ts'

const one = (node = 'a', type = 'h') => ({ nodes: [{ node_id: node, type, retry_policy: { max: 3, backoff_sec: 0 } }] })

async function runOne(h: RoleHandler): Promise<TaskView> {
  const rt = await startRuntime({ handlers: { h } })
  try {
    const id = await rt.coordinator.createTask({ graph: one() })
    return await rt.coordinator.waitForTask(id, { timeoutMs: 10_000 })
  } finally {
    await rt.stop()
  }
}

test('artifacts_ref nested too deep or not JSON fails the node at once with bad_handler_result, classifyError not asked', async () => {
  let deep: Record<string, unknown> = { leaf: 1 }
  for (let i = 0; i < 40; i++) deep = { d: deep }
  let asked = 0
  for (const ref of [deep, { n: 1n }]) {
    for (const where of ['batch', 'finalize'] as const) {
      const h: RoleHandler = {
        async processBatch() {
          return where === 'batch' ? { metrics: { rows: 1 }, artifacts_ref: ref } : { metrics: { rows: 1 } }
        },
        ...(where === 'finalize' ? { async finalize() { return { artifacts_ref: ref } } } : {}),
        classifyError() {
          asked++
          return { permanent: false, reasonCode: 'transient' }
        },
      }
      const t = await runOne(h)
      const n = t.nodes[0]
      assert.equal(t.status, 'failed', `${where}: ${JSON.stringify(n?.last_error)}`)
      assert.equal(n?.attempt_epoch, 1)
      assert.equal(n?.last_error?.reason_code, 'bad_handler_result')
      assert.match(n?.last_error?.error ?? '', /artifacts_ref (is nested deeper than 32 levels|cannot be encoded as JSON)/)
    }
  }
  assert.equal(asked, 0)
})

test('a result whose metrics, meta or fields throw when read (a getter) fails the node at once with bad_handler_result, as a meta does', async () => {
  let asked = 0
  const boom = (): never => {
    throw new Error('getter exploded')
  }
  const results: Record<string, () => Record<string, unknown>> = {
    metrics: () => ({ metrics: Object.defineProperty({}, 'rows', { enumerable: true, get: boom }) }),
    meta: () => ({ meta: Object.defineProperty({}, 'rows', { enumerable: true, get: boom }) }),
    success: () => Object.defineProperty({ metrics: { rows: 1 } }, 'success', { enumerable: true, get: boom }),
    finalize: () => ({}),
  }
  for (const [what, make] of Object.entries(results)) {
    const h: RoleHandler = {
      async processBatch() {
        return make()
      },
      ...(what === 'finalize' ? { async finalize() { return { metrics: Object.defineProperty({}, 'rows', { enumerable: true, get: boom }) } } } : {}),
      classifyError() {
        asked++
        return { permanent: false, reasonCode: 'transient' }
      },
    }
    const t = await runOne(h)
    const n = t.nodes[0]
    assert.equal(t.status, 'failed', `${what}: ${JSON.stringify(n?.last_error)}`)
    assert.equal(n?.attempt_epoch, 1, `${what}: not retried`)
    assert.equal(n?.last_error?.reason_code, 'bad_handler_result', what)
    assert.match(n?.last_error?.error ?? '', /getter exploded/, what)
  }
  assert.equal(asked, 0)
})

test('a meta object the handler reuses for its next batch: each partial artifact holds its own batch', async () => {
  const rows: number[] = []
  const meta = { rows }
  const h: RoleHandler = {
    iterBatches: () => [0, 1, 2].map((i) => ({ batch_uid: `p${i}`, payload: { i } })),
    async processBatch(b) {
      const i = b.payload['i'] as number
      rows.length = 0
      rows.push(i * 10, i * 10 + 1)
      return { meta }
    },
  }
  const rt = await startRuntime({ handlers: { h } })
  try {
    const id = await rt.coordinator.createTask({ graph: one() })
    assert.equal((await rt.coordinator.waitForTask(id, { timeoutMs: 10_000 })).status, 'finished')
    const parts = (await rt.coordinator.listArtifacts(id, { nodeId: 'a' })).filter((x) => x.status === 'partial')
    assert.deepEqual(Object.fromEntries(parts.map((x) => [x.batch_uid, x.meta['rows']])), { p0: [0, 1], p1: [10, 11], p2: [20, 21] })
  } finally {
    await rt.stop()
  }
})

test('a batch named __final__ keeps its metrics (renamed, as a duplicate uid is)', async () => {
  const h: RoleHandler = {
    iterBatches: () => ['part_1', '__final__', 'part_2'].map((batch_uid) => ({ batch_uid, payload: {} })),
    async processBatch() {
      return { metrics: { rows: 100 } }
    },
    async finalize() {
      return { metrics: { files: 1 } }
    },
  }
  const t = await runOne(h)
  assert.equal(t.status, 'finished')
  assert.deepEqual(t.nodes[0]?.stats, { rows: 300, files: 1 })
})

test('a thrown object without a prototype marked permanent fails the node permanently, once', async () => {
  let calls = 0
  const h: RoleHandler = {
    async processBatch() {
      calls++
      throw Object.assign(Object.create(null) as object, { permanent: true, reason_code: 'bad_record' })
    },
  }
  const t = await runOne(h)
  assert.equal(t.status, 'failed')
  assert.equal(calls, 1)
  assert.equal(t.nodes[0]?.last_error?.reason_code, 'bad_record')
  assert.equal(t.nodes[0]?.last_error?.permanent, true)
})

test('a batch_uid too large for a bus message fails the node permanently, naming batch_uid', async () => {
  let calls = 0
  const h: RoleHandler = {
    iterBatches: () => [{ batch_uid: 'u'.repeat(1_200_000), payload: {} }],
    async processBatch() {
      calls++
      return {}
    },
  }
  const t = await runOne(h)
  assert.equal(t.status, 'failed')
  assert.equal(t.nodes[0]?.attempt_epoch, 1)
  assert.equal(t.nodes[0]?.last_error?.reason_code, 'bad_handler_result')
  assert.match(t.nodes[0]?.last_error?.error ?? '', /batch_uid is 1200000 characters long, more than 2048/)
  assert.equal(calls, 0)
})

test('a batch uid that is not well-formed Unicode (a lone surrogate) fails the node permanently, from iterBatches or writePartial: MongoDB would store U+FFFD and merge such batches into one artifact', async () => {
  for (const source of ['iterBatches', 'writePartial']) {
    let calls = 0
    const h: RoleHandler =
      source === 'iterBatches'
        ? {
            iterBatches: () => [{ batch_uid: 'p\ud800', payload: {} }],
            async processBatch() {
              calls++
              return {}
            },
          }
        : {
            async processBatch(_b, ctx) {
              calls++
              await ctx.artifacts.writePartial('p\udfff', { rows: [1] })
              return {}
            },
          }
    const t = await runOne(h)
    assert.equal(t.status, 'failed', source)
    assert.equal(t.nodes[0]?.attempt_epoch, 1, source)
    assert.equal(t.nodes[0]?.last_error?.reason_code, 'bad_handler_result', source)
    assert.match(t.nodes[0]?.last_error?.error ?? '', /is not well-formed Unicode \(a lone surrogate\)/, source)
    assert.equal(calls, source === 'iterBatches' ? 0 : 1, source)
  }
})

test('a worker stopped while it claims a START hands it back: another worker runs it at once', async () => {
  const inner = new MemoryStore()
  let slow = true
  const slowly = (fn: (...a: unknown[]) => unknown) => async (...a: unknown[]) => {
    if (slow) await new Promise((r) => setTimeout(r, 300))
    return fn(...a)
  }
  const store = overrideStore(inner, { claimAttempts: slowly, claimAttempt: slowly })
  const ran: string[] = []
  const h: RoleHandler = {
    async processBatch(_b, ctx) {
      ran.push(`${ctx.workerId}@${ctx.attemptEpoch}`)
      return {}
    },
  }
  const rt = await startRuntime({ store, handlers: { h }, worker: { workerId: 'A' } })
  try {
    const id = await rt.coordinator.createTask({ graph: one() })
    await new Promise((r) => setTimeout(r, 100)) // A is claiming
    const a = rt.workers[0]
    await a?.stop()
    rt.workers.splice(0, 1)
    slow = false
    await rt.addWorker({ h }, { workerId: 'B' })
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10_000 })
    assert.equal(t.status, 'finished')
    assert.deepEqual(ran, ['B@2'])
  } finally {
    await rt.stop()
  }
})

test('a result field the worker does not read (metric for metrics) is warned about once per role, with the field it meant; a metrics.aggregate metric no node has names the stat it meant', async () => {
  const logger = new MemoryLogger()
  // From JavaScript: `metric` instead of `metrics` (the stats would silently stay 0).
  const typo = { async processBatch() { return { metric: { rows: 1 } } } } as unknown as RoleHandler
  const ok: RoleHandler = { async processBatch() { return { metrics: { sum: 5 } } } }
  const rt = await startRuntime({ logger, handlers: { h: typo, s: ok } })
  try {
    const id = await rt.coordinator.createTask({
      graph: {
        nodes: [
          { node_id: 'a', type: 'h' },
          { node_id: 'b', type: 'h', depends_on: ['a'] },
          { node_id: 's', type: 's' },
          { node_id: 'agg', type: 'coordinator_fn', depends_on: ['s'], io: { fn: 'metrics.aggregate', fn_args: { from_nodes: ['s'], metric: 'sums', mode: 'sum' } } },
        ],
      },
    })
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10_000 })
    assert.equal(t.status, 'finished', 'a warning, not a failure')
    const warned = logger.records.filter((r) => r.event === 'worker.result_unknown_field')
    assert.equal(warned.length, 1, 'once for the role, not per batch or node')
    assert.equal(warned[0]?.fields['field'], 'metric')
    assert.equal(warned[0]?.fields['did_you_mean'], 'metrics')
    const missing = logger.records.find((r) => r.event === 'node.fn_metric_missing')
    assert.equal(missing?.fields['metric'], 'sums')
    assert.equal(missing?.fields['did_you_mean'], 'sum')
  } finally {
    await rt.stop()
  }
})

test('an iterBatches that returns something the run cannot walk (a number, null, a promise of one) fails at once with bad_handler_result and says what it got; a promise of an array is awaited', async () => {
  const cases: [unknown, RegExp][] = [
    [42, /got number/],
    [null, /got null/],
    [Promise.resolve(7), /got number/],
  ]
  for (const [returned, said] of cases) {
    const h = { iterBatches: () => returned, async processBatch() { return {} } } as unknown as RoleHandler
    const t = await runOne(h)
    const n = t.nodes[0]
    assert.equal(t.status, 'failed')
    assert.equal(n?.attempt_epoch, 1, 'permanent: not retried')
    assert.equal(n?.last_error?.reason_code, 'bad_handler_result')
    assert.match(n?.last_error?.error ?? '', /iterBatches must return an array, an iterable or an async iterable of batches/)
    assert.match(n?.last_error?.error ?? '', said)
  }
})

test('an async iterBatches that returns its batches (not an async generator) runs them', async () => {
  const h = { async iterBatches() { return [{ batch_uid: 'x', payload: {} }, { batch_uid: 'y', payload: {} }] }, async processBatch() { return { metrics: { n: 1 } } } } as unknown as RoleHandler
  const t = await runOne(h)
  assert.equal(t.status, 'finished', JSON.stringify(t.nodes[0]?.last_error))
  assert.deepEqual(t.nodes[0]?.stats, { n: 2 })
})

test('an empty reason code (a PermanentError\'s, a classifyError\'s) is no code: the default one is kept; a result\'s empty reason_code is refused as such', async () => {
  const { PermanentError } = await import('flowkit')
  const perm = await runOne({ async processBatch() { throw new PermanentError({ code: '', message: 'bad row' }) } })
  assert.equal(perm.nodes[0]?.last_error?.reason_code, 'permanent_error')
  assert.equal(perm.nodes[0]?.attempt_epoch, 1, 'still permanent')
  const classified = await runOne({
    async processBatch() {
      throw new Error('boom')
    },
    classifyError: () => ({ reasonCode: '', permanent: true }),
  })
  assert.equal(classified.nodes[0]?.last_error?.reason_code, 'unexpected_error')
  const result = await runOne({ async processBatch() { return { success: false, reason_code: '' } } })
  assert.match(result.nodes[0]?.last_error?.error ?? '', /reason_code must be a non-empty string, got an empty string/)
})

test('a long reason code is cut to 200 characters, as the coordinator cuts a foreign worker\'s: no mark added (permanent_on matches codes)', async () => {
  const t = await runOne({
    async processBatch() {
      throw new Error('boom')
    },
    classifyError: () => ({ reasonCode: `c${'x'.repeat(300)}`, permanent: true }),
  })
  assert.equal(t.nodes[0]?.last_error?.reason_code, `c${'x'.repeat(199)}`)
})
