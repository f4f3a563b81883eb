/**
 * Traces on the memory runtime, asserted with an in-memory span exporter: a span per task, per
 * node attempt (a retried node has two), per worker run — the run a child of its attempt through
 * the `traceparent` header of the TASK_START record, the attempt linked back to the run through
 * the status events' header — events per batch, and trace ids in the logs. Without an SDK (or
 * with tracing off) no header is written, and a start without one (a Python coordinator's) still
 * runs, as a root span.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { AsyncLocalStorage } from 'node:async_hooks'
import { type Context, type ContextManager, ROOT_CONTEXT, SpanKind, SpanStatusCode, context, trace } from '@opentelemetry/api'
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base'
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { type BusRecord, Coordinator, EVENTS_CHANNEL, type FlowkitEventMessage, MemoryBus, MemoryLogger, MemoryStore, type RoleHandler, Worker } from 'flowkit'
import { noopHandler, sourceHandler } from '../helpers/runtime.ts'
import { waitFor } from '../helpers/wait.ts'
import { ObservedLogger } from '../../src/observability/logger.ts'
import { contextManaged } from '../../src/observability/worker.ts'
import { isStart, memoryTracing, parentSpanId, spyBus, statusKind } from './helpers.ts'

const attr = (s: ReadableSpan, k: string): unknown => s.attributes[k]

/** Fails its first attempt (transient), succeeds after. */
function flakyOnce(): RoleHandler {
  let calls = 0
  return {
    async processBatch() {
      calls++
      if (calls === 1) throw new Error('boom (first attempt)')
      return { metrics: { count: 1 } }
    },
  }
}

/** Its first call hangs (until cancelled); the later ones return at once. */
function hangsFirstCall(): RoleHandler {
  let calls = 0
  return {
    async processBatch(_b, ctx) {
      calls++
      if (calls === 1) await ctx.sleep(60_000)
      return {}
    },
  }
}

const GRAPH = {
  nodes: [
    { node_id: 'src', type: 'src' },
    { node_id: 'sink', type: 'sink', depends_on: ['src'] },
    { node_id: 'flaky', type: 'flaky', depends_on: ['src'], retry_policy: { max: 3, backoff_sec: 0.01 } },
  ],
}

test('spans per task, node attempt and worker run; the run is a child of its attempt across the bus; trace ids in the logs', async () => {
  const { provider, spans } = memoryTracing()
  const bus = new MemoryBus()
  const store = new MemoryStore()
  const produced: BusRecord[] = []
  const logger = new MemoryLogger()
  const observability = { tracing: provider, metrics: false } as const
  const c = new Coordinator({ bus: spyBus(bus, produced), store, logger, observability, config: { schedulerTickSec: 0.05 } })
  const w = new Worker({ bus: spyBus(bus, produced), store, logger, observability, handlers: { src: sourceHandler(6, 2), sink: noopHandler(), flaky: flakyOnce() } })
  await c.start()
  await w.start()
  try {
    const id = await c.createTask({ graph: GRAPH })
    const view = await c.waitForTask(id, { timeoutMs: 20_000 })
    assert.equal(view.status, 'finished')
    await waitFor(() => spans('flowkit.worker.run').length === 4, { message: 'four run spans ended' })

    const [task, ...moreTasks] = spans('flowkit.task')
    assert.ok(task !== undefined && moreTasks.length === 0, 'one task span')
    assert.equal(attr(task, 'flowkit.task.id'), id)
    assert.equal(attr(task, 'flowkit.task.status'), 'finished')
    assert.equal(task.parentSpanContext, undefined)
    const traceId = task.spanContext().traceId

    const attempts = spans('flowkit.node.attempt')
    assert.deepEqual(attempts.map((a) => `${attr(a, 'flowkit.node.id')}@${attr(a, 'flowkit.attempt.epoch')}`).sort(), ['flaky@1', 'flaky@2', 'sink@1', 'src@1'])
    for (const a of attempts) {
      assert.equal(a.spanContext().traceId, traceId)
      assert.equal(a.parentSpanContext?.spanId, task.spanContext().spanId, 'attempts are children of the task span')
      assert.equal(a.kind, SpanKind.PRODUCER)
      assert.equal(attr(a, 'flowkit.task.id'), id)
      assert.equal(attr(a, 'flowkit.worker.id'), w.workerId)
      assert.equal(typeof attr(a, 'flowkit.lease.id'), 'string')
      assert.notEqual(attr(a, 'flowkit.lease.id'), '')
    }
    const attempt = (node: string, epoch: number): ReadableSpan => {
      const a = attempts.find((s) => attr(s, 'flowkit.node.id') === node && attr(s, 'flowkit.attempt.epoch') === epoch)
      assert.ok(a, `attempt ${node}@${epoch}`)
      return a
    }
    assert.equal(attr(attempt('flaky', 1), 'flowkit.attempt.outcome'), 'retry')
    assert.equal(attempt('flaky', 1).status.code, SpanStatusCode.ERROR)
    assert.equal(attr(attempt('flaky', 2), 'flowkit.attempt.outcome'), 'finished')
    assert.equal(attr(attempt('src', 1), 'flowkit.attempt.outcome'), 'finished')
    assert.deepEqual(attempt('src', 1).events.filter((e) => e.name === 'batch').map((e) => e.attributes?.['flowkit.batch.uid']), ['s0', 's1', 's2'])
    assert.ok(attempt('src', 1).events.some((e) => e.name === 'accepted'))

    const runs = spans('flowkit.worker.run')
    for (const r of runs) {
      const a = attempt(attr(r, 'flowkit.node.id') as string, attr(r, 'flowkit.attempt.epoch') as number)
      assert.equal(r.spanContext().traceId, traceId, 'the run is in the task trace')
      assert.equal(r.parentSpanContext?.spanId, a.spanContext().spanId, 'the run is a child of its attempt span')
      assert.equal(r.parentSpanContext?.isRemote, true, 'its parent came over the bus')
      assert.equal(r.kind, SpanKind.CONSUMER)
      assert.equal(attr(r, 'flowkit.lease.id'), attr(a, 'flowkit.lease.id'))
      assert.equal(attr(r, 'flowkit.worker.id'), w.workerId)
      assert.ok(
        a.links.some((l) => l.context.spanId === r.spanContext().spanId),
        'the attempt span links the run span (its status events carried it back)',
      )
    }
    const srcRun = runs.find((r) => attr(r, 'flowkit.node.id') === 'src') as ReadableSpan
    assert.equal(srcRun.events.filter((e) => e.name === 'batch').length, 3)
    assert.equal(attr(srcRun, 'flowkit.run.outcome'), 'finished')
    const failedRun = runs.find((r) => attr(r, 'flowkit.node.id') === 'flaky' && attr(r, 'flowkit.attempt.epoch') === 1) as ReadableSpan
    assert.equal(attr(failedRun, 'flowkit.run.outcome'), 'failed')
    assert.equal(failedRun.status.code, SpanStatusCode.ERROR)

    // The records themselves: every START carries its attempt; every status event its run.
    const starts = produced.filter(isStart)
    assert.equal(starts.length, 4)
    for (const s of starts) assert.ok(attempts.some((a) => a.spanContext().spanId === parentSpanId(s.headers)), 'START traceparent names an attempt span')
    const events = produced.filter((r) => statusKind(r) !== undefined && !statusKind(r)?.startsWith('WORKER_'))
    assert.ok(events.length >= 4 + 3)
    for (const e of events) assert.ok(runs.some((r) => r.spanContext().spanId === parentSpanId(e.headers)), `${statusKind(e)} traceparent names a run span`)

    // Logs: records about a task or node carry the ids of its span.
    const created = logger.records.find((r) => r.event === 'task.created')
    assert.equal(created?.fields['trace_id'], traceId)
    assert.equal(created?.fields['span_id'], task.spanContext().spanId)
    const done = logger.records.find((r) => r.event === 'node.done' && r.fields['component'] === 'worker' && r.fields['node_id'] === 'src')
    assert.equal(done?.fields['span_id'], srcRun.spanContext().spanId)
    assert.equal(done?.fields['trace_id'], traceId)
    const accepted = logger.records.find((r) => r.event === 'node.accepted' && r.fields['component'] === 'coordinator' && r.fields['node_id'] === 'sink')
    assert.equal(accepted?.fields['span_id'], attempt('sink', 1).spanContext().spanId)
    // A record of the retry (epoch 2) never names the failed attempt's span: its own, or the task's
    // (the dispatch is logged before the new attempt's span starts).
    const retried = logger.records.filter((r) => r.fields['component'] === 'coordinator' && r.fields['node_id'] === 'flaky' && r.fields['attempt_epoch'] === 2)
    assert.ok(retried.length >= 2, 'records of the second attempt')
    for (const r of retried) {
      assert.notEqual(r.fields['span_id'], attempt('flaky', 1).spanContext().spanId, `${r.event} names the first attempt's span`)
      assert.ok([attempt('flaky', 2).spanContext().spanId, task.spanContext().spanId].includes(r.fields['span_id'] as string), `${r.event}: its attempt's span or the task's`)
    }
    // The task's end too (logged once its entry is durable, after the entry ended the task span).
    const ended = logger.records.find((r) => r.event === 'task.finished')
    assert.equal(ended?.fields['trace_id'], traceId)
    assert.equal(ended?.fields['span_id'], task.spanContext().spanId)
  } finally {
    await w.stop()
    await c.stop()
  }
})

test('no SDK registered: no trace headers; a START without headers (a Python coordinator) still runs, as a root run span', async () => {
  const { provider, spans } = memoryTracing()
  const bus = new MemoryBus()
  const store = new MemoryStore()
  const produced: BusRecord[] = []
  // The coordinator traces on the global provider: no SDK is registered in this process.
  const c = new Coordinator({ bus: spyBus(bus, produced), store, config: { schedulerTickSec: 0.05 } })
  const w = new Worker({ bus, store, handlers: { src: sourceHandler(4, 2) }, observability: { tracing: provider } })
  await c.start()
  await w.start()
  try {
    const id = await c.createTask({ graph: { nodes: [{ node_id: 'src', type: 'src' }] } })
    assert.equal((await c.waitForTask(id, { timeoutMs: 10_000 })).status, 'finished')
    const starts = produced.filter(isStart)
    assert.equal(starts.length, 1)
    assert.equal(starts[0]?.headers, undefined, 'no headers without an SDK')
    await waitFor(() => spans('flowkit.worker.run').length === 1)
    assert.equal(spans('flowkit.worker.run')[0]?.parentSpanContext, undefined)
  } finally {
    await w.stop()
    await c.stop()
  }
})

/** The smallest context manager (what the OTel SDK registers): the active context in AsyncLocalStorage. */
class AlsContextManager implements ContextManager {
  readonly #als = new AsyncLocalStorage<Context>()
  active(): Context {
    return this.#als.getStore() ?? ROOT_CONTEXT
  }
  with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(ctx: Context, fn: F, thisArg?: ThisParameterType<F>, ...args: A): ReturnType<F> {
    return this.#als.run(ctx, () => fn.call(thisArg, ...args))
  }
  bind<T>(_ctx: Context, target: T): T {
    return target
  }
  enable(): this {
    return this
  }
  disable(): this {
    this.#als.disable()
    return this
  }
}

test('no SDK registered: no span is started, a context handed in goes on (to the START, back from the run), and an SDK registered later takes effect from the next task', async () => {
  const { provider, spans } = memoryTracing()
  assert.equal(context.setGlobalContextManager(new AlsContextManager()), true)
  const bus = new MemoryBus()
  const store = new MemoryStore()
  const produced: BusRecord[] = []
  // Both trace on the global provider, where no SDK is registered yet.
  const c = new Coordinator({ bus: spyBus(bus, produced), store, config: { schedulerTickSec: 0.05 } })
  const w = new Worker({ bus: spyBus(bus, produced), store, handlers: { src: sourceHandler(2, 1) } })
  await c.start()
  await w.start()
  const graph = { nodes: [{ node_id: 'src', type: 'src' }] }
  try {
    // A task created in a valid (sampled) span context: that context goes to the START, and the
    // run (no SDK either) sends it back on its status events, as the API's no-op tracer would.
    const handed = { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', traceFlags: 1 }
    const a = await context.with(trace.setSpanContext(ROOT_CONTEXT, handed), () => c.createTask({ graph }))
    assert.equal((await c.waitForTask(a, { timeoutMs: 10_000 })).status, 'finished')
    const expected = `00-${handed.traceId}-${handed.spanId}-01`
    const ofA = produced.filter((r) => r.key?.startsWith(`${a}:`))
    assert.deepEqual(ofA.filter(isStart).map((r) => r.headers?.['traceparent']), [expected])
    const events = ofA.filter((r) => statusKind(r) !== undefined)
    assert.ok(events.length >= 3)
    for (const e of events) assert.equal(e.headers?.['traceparent'], expected, `${statusKind(e)} carries the context back`)
    // A task created outside any span: no headers at all.
    const b = await c.createTask({ graph })
    assert.equal((await c.waitForTask(b, { timeoutMs: 10_000 })).status, 'finished')
    assert.ok(produced.filter((r) => r.key?.startsWith(`${b}:`)).every((r) => r.headers === undefined))
    assert.equal(spans('flowkit.task').length + spans('flowkit.worker.run').length, 0)
    // An SDK registered now: the next task is traced, its run a child of its attempt.
    assert.equal(trace.setGlobalTracerProvider(provider), true)
    const d = await c.createTask({ graph })
    assert.equal((await c.waitForTask(d, { timeoutMs: 10_000 })).status, 'finished')
    await waitFor(() => spans('flowkit.task').length === 1 && spans('flowkit.worker.run').length === 1, { message: 'the task and run spans ended' })
    const attempt = spans('flowkit.node.attempt')[0] as ReadableSpan
    assert.equal(attr(attempt, 'flowkit.task.id'), d)
    assert.equal(spans('flowkit.worker.run')[0]?.parentSpanContext?.spanId, attempt.spanContext().spanId)
  } finally {
    await w.stop()
    await c.stop()
    trace.disable()
    context.disable()
  }
})

test('observability: false: no headers, no registry, the metrics handler answers 404', async () => {
  const bus = new MemoryBus()
  const store = new MemoryStore()
  const produced: BusRecord[] = []
  const c = new Coordinator({ bus: spyBus(bus, produced), store, observability: false, config: { schedulerTickSec: 0.05 } })
  const w = new Worker({ bus: spyBus(bus, produced), store, handlers: { src: sourceHandler(2, 1) }, observability: false })
  await c.start()
  await w.start()
  try {
    const id = await c.createTask({ graph: { nodes: [{ node_id: 'src', type: 'src' }] } })
    assert.equal((await c.waitForTask(id, { timeoutMs: 10_000 })).status, 'finished')
    assert.ok(produced.length > 0)
    assert.ok(produced.every((r) => r.headers === undefined))
    assert.equal(c.observability, null)
    assert.equal(w.observability, null)
    const statuses: number[] = []
    const res = {
      writeHead(s: number) {
        statuses.push(s)
        return { end: () => undefined }
      },
    }
    c.metricsHandler()({ method: 'GET' } as never, res as never)
    assert.deepEqual(statuses, [404])
  } finally {
    await w.stop()
    await c.stop()
  }
})

test('spans a handler starts are children of its run span (with a context manager registered, as the SDK does)', async () => {
  const { provider, spans } = memoryTracing()
  // Without a manager the run makes no context for its handler (context.with would ignore it).
  assert.equal(contextManaged(), false)
  assert.equal(context.setGlobalContextManager(new AlsContextManager()), true)
  assert.equal(contextManaged(), true)
  const bus = new MemoryBus()
  const store = new MemoryStore()
  const c = new Coordinator({ bus, store, observability: { tracing: provider }, config: { schedulerTickSec: 0.05 } })
  const handler: RoleHandler = {
    async processBatch() {
      await provider.getTracer('user').startActiveSpan('user.work', async (s) => {
        await new Promise((r) => setTimeout(r, 1))
        s.end()
      })
      return { metrics: { count: 1 } }
    },
  }
  const w = new Worker({ bus, store, handlers: { step: handler }, observability: { tracing: provider } })
  await c.start()
  await w.start()
  try {
    const id = await c.createTask({ graph: { nodes: [{ node_id: 'n', type: 'step' }] } })
    assert.equal((await c.waitForTask(id, { timeoutMs: 10_000 })).status, 'finished')
    await waitFor(() => spans('flowkit.worker.run').length === 1 && spans('user.work').length === 1)
    const run = spans('flowkit.worker.run')[0] as ReadableSpan
    const user = spans('user.work')[0] as ReadableSpan
    assert.equal(user.spanContext().traceId, run.spanContext().traceId)
    assert.equal(user.parentSpanContext?.spanId, run.spanContext().spanId)
  } finally {
    await w.stop()
    await c.stop()
    context.disable()
    void trace
  }
  assert.equal(contextManaged(), false)
})

/** Records only warn and error (says so through `enabled`), like a pino logger at level warn. */
class WarnLogger extends MemoryLogger {
  enabled(level: string): boolean {
    return level === 'warn' || level === 'error'
  }
}

test('trace ids go on the records the logger writes; a record it drops is passed on (and published) as it was', () => {
  const logger = new WarnLogger()
  const ids = { trace_id: 'a'.repeat(32), span_id: 'b'.repeat(16) }
  const log = new ObservedLogger(logger, { traceOf: () => ids, tracing: () => true }).child({ task_id: 't1' })
  const published: FlowkitEventMessage[] = []
  const listen = (m: unknown): void => {
    published.push(m as FlowkitEventMessage)
  }
  subscribe(EVENTS_CHANNEL, listen)
  try {
    log.info('task.created', { nodes: 1 })
    log.warn('node.something', { node_id: 'a' })
  } finally {
    unsubscribe(EVENTS_CHANNEL, listen)
  }
  const [dropped, written] = logger.records
  assert.equal(dropped?.event, 'task.created')
  assert.equal(dropped?.fields['trace_id'], undefined, 'a dropped info record is passed on as it was')
  assert.equal(published.find((m) => m.event === 'task.created')?.fields['trace_id'], undefined, 'and published as it was')
  assert.equal(written?.fields['trace_id'], ids.trace_id, 'a written record carries its trace')
  assert.equal(published.find((m) => m.event === 'node.something')?.fields['span_id'], ids.span_id)
})

test('an attempt handed back (its worker stopped mid-run) ends handed_back, not retry or superseded; a retry due at once ends retry, with status ERROR', async () => {
  const { provider, spans } = memoryTracing()
  const bus = new MemoryBus()
  const store = new MemoryStore()
  const observability = { tracing: provider, metrics: false } as const
  const c = new Coordinator({ bus, store, observability, config: { schedulerTickSec: 0.05 } })
  const slowFirst = hangsFirstCall()
  const first = new Worker({ bus, store, observability, handlers: { step: slowFirst, flaky: flakyOnce() }, config: { workerId: 'first', concurrency: 2 } })
  await c.start()
  await first.start()
  let second: Worker | null = null
  try {
    const id = await c.createTask({ graph: { nodes: [{ node_id: 'n', type: 'step', retry_policy: { max: 3, backoff_sec: 0 } }, { node_id: 'f', type: 'flaky', retry_policy: { max: 3, backoff_sec: 0 } }] } })
    await waitFor(async () => (await c.getTask(id))?.nodes.find((n) => n.node_id === 'n')?.accepted_at_ms != null)
    await waitFor(async () => (await c.getTask(id))?.nodes.find((n) => n.node_id === 'f')?.status === 'finished')
    await first.stop() // hands its run of n back
    second = new Worker({ bus, store, observability, handlers: { step: slowFirst, flaky: noopHandler() }, config: { workerId: 'second' } })
    await second.start()
    assert.equal((await c.waitForTask(id, { timeoutMs: 20_000 })).status, 'finished')
    await waitFor(() => spans('flowkit.node.attempt').length === 4, { message: `four attempt spans ended: ${spans('flowkit.node.attempt').map((s) => `${attr(s, 'flowkit.node.id')}@${attr(s, 'flowkit.attempt.epoch')}:${attr(s, 'flowkit.attempt.outcome')}`).join(' ')}` })
    const outcome = (node: string, epoch: number): [unknown, SpanStatusCode] => {
      const a = spans('flowkit.node.attempt').find((s) => attr(s, 'flowkit.node.id') === node && attr(s, 'flowkit.attempt.epoch') === epoch)
      assert.ok(a, `${node}@${epoch}`)
      return [attr(a, 'flowkit.attempt.outcome'), a.status.code]
    }
    assert.deepEqual(outcome('n', 1), ['handed_back', SpanStatusCode.UNSET])
    assert.deepEqual(outcome('n', 2), ['finished', SpanStatusCode.UNSET])
    assert.deepEqual(outcome('f', 1), ['retry', SpanStatusCode.ERROR])
    assert.deepEqual(outcome('f', 2), ['finished', SpanStatusCode.UNSET])
  } finally {
    await second?.stop()
    await c.stop()
    await provider.shutdown()
  }
})

for (const backoff of [0, 0.3]) {
  test(`the TASK_CANCEL sent to a lost lease's holder carries that attempt's span, not the retry's (backoff ${backoff} s)`, async () => {
    const { provider, spans } = memoryTracing()
    const bus = new MemoryBus()
    const store = new MemoryStore()
    const produced: BusRecord[] = []
    const observability = { tracing: provider, metrics: false } as const
    const c = new Coordinator({ bus: spyBus(bus, produced), store, observability, config: { schedulerTickSec: 0.05 } })
    const slowFirst = hangsFirstCall()
    const workerConfig = { leaseTtlSec: 1, hbIntervalSec: 0.2 }
    const doomed = new Worker({ bus, store, observability, handlers: { step: slowFirst }, config: { ...workerConfig, workerId: 'doomed' } })
    await c.start()
    await doomed.start()
    let second: Worker | null = null
    try {
      const id = await c.createTask({ graph: { nodes: [{ node_id: 'n', type: 'step', retry_policy: { max: 3, backoff_sec: backoff } }] } })
      await waitFor(async () => (await c.getTask(id))?.nodes[0]?.lease.worker_id === 'doomed')
      await doomed.kill()
      second = new Worker({ bus, store, observability, handlers: { step: slowFirst }, config: { ...workerConfig, workerId: 'second' } })
      await second.start()
      assert.equal((await c.waitForTask(id, { timeoutMs: 20_000 })).status, 'finished')
      await waitFor(() => spans('flowkit.node.attempt').length === 2)
      const spanOf = new Map(spans('flowkit.node.attempt').map((s) => [s.spanContext().spanId, attr(s, 'flowkit.attempt.epoch')]))
      const cancels = produced.filter((r) => r.value.includes('"cmd":"TASK_CANCEL"'))
      assert.ok(cancels.length >= 1, 'the lost holder was told to give the run up')
      for (const r of cancels) {
        const epoch = Number(/"attempt_epoch":(\d+)/.exec(r.value)?.[1])
        const spanId = r.headers?.['traceparent']?.split('-')[2]
        assert.equal(spanOf.get(spanId ?? ''), epoch, `TASK_CANCEL of epoch ${epoch} carries span ${spanId ?? 'none'}`)
      }
    } finally {
      await second?.stop()
      await c.stop()
      await provider.shutdown()
    }
  })
}

test('a coordinator stopped while an attempt runs ends its spans as unfinished: the task span flowkit.task.unfinished, the attempt outcome "unfinished"', async () => {
  const { provider, spans } = memoryTracing()
  const bus = new MemoryBus()
  const store = new MemoryStore()
  const observability = { tracing: provider, metrics: false } as const
  const c = new Coordinator({ bus, store, observability })
  const w = new Worker({ bus, store, observability, handlers: { slow: hangsFirstCall() } })
  await c.start()
  await w.start()
  try {
    const id = await c.createTask({ graph: { nodes: [{ node_id: 'a', type: 'slow' }] } })
    await waitFor(async () => (await c.getTask(id))?.nodes[0]?.accepted_at_ms != null, { message: 'the attempt runs' })
    await c.stop()
    const [task] = spans('flowkit.task')
    assert.equal(attr(task as ReadableSpan, 'flowkit.task.unfinished'), true)
    const [attempt] = spans('flowkit.node.attempt')
    assert.equal(attr(attempt as ReadableSpan, 'flowkit.attempt.outcome'), 'unfinished')
  } finally {
    await w.stop()
    await c.stop()
  }
})

test('a worker at capacity logs the START it holds back with the trace the START carries (the run and its span do not exist yet)', async () => {
  const { provider, spans } = memoryTracing()
  const bus = new MemoryBus()
  const store = new MemoryStore()
  const logger = new MemoryLogger()
  const observability = { tracing: provider, metrics: false } as const
  const c = new Coordinator({ bus, store, logger, observability })
  const w = new Worker({ bus, store, logger, observability, config: { concurrency: 1 }, handlers: { slow: { async processBatch(_b, ctx) { await ctx.sleep(50); return {} } } } })
  await c.start()
  await w.start()
  try {
    const id = await c.createTask({ graph: { nodes: [{ node_id: 'a', type: 'slow' }, { node_id: 'b', type: 'slow' }] } })
    assert.equal((await c.waitForTask(id, { timeoutMs: 20_000 })).status, 'finished')
    const held = logger.records.filter((r) => r.event === 'worker.at_capacity')
    assert.ok(held.length >= 1, 'one START waited for the slot')
    await waitFor(() => spans('flowkit.node.attempt').length === 2, { message: 'both attempt spans ended' })
    for (const r of held) {
      const attempt = spans('flowkit.node.attempt').find((a) => attr(a, 'flowkit.node.id') === r.fields['node_id'])
      assert.equal(r.fields['trace_id'], attempt?.spanContext().traceId)
      assert.equal(r.fields['span_id'], attempt?.spanContext().spanId, "the coordinator's attempt span")
    }
  } finally {
    await w.stop()
    await c.stop()
  }
})
