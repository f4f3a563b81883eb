/**
 * Traces under sampling: the sampler decides on the task span (and sees its attributes); a trace
 * it drops makes no attempt or run spans, yet its context still travels (the START and status
 * records carry the task span's `traceparent`, flags 00) and the log records name it; a sampled
 * trace is complete (attributes, events, the link). A span the sampler drops below a sampled task
 * gets nothing built for it, and the worker follows its flags.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { type Attributes, type Context, type Link, SamplingDecision, type SpanKind } from '@opentelemetry/api'
import { BasicTracerProvider, InMemorySpanExporter, ParentBasedSampler, type ReadableSpan, type Sampler, type SamplingResult, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base'
import { type BusRecord, Coordinator, MemoryBus, MemoryLogger, MemoryStore, Worker } from 'flowkit'
import { noopHandler, sourceHandler } from '../helpers/runtime.ts'
import { waitFor } from '../helpers/wait.ts'
import { isStart, statusKind, spyBus } from './helpers.ts'

/** Samples the task spans in turn (first yes, second no, …) and records what it was asked. */
class EveryOtherTask implements Sampler {
  n = 0
  readonly seen: { name: string; attributes: Attributes }[] = []
  shouldSample(_ctx: Context, _traceId: string, name: string, _kind: SpanKind, attributes: Attributes, _links: Link[]): SamplingResult {
    this.seen.push({ name, attributes: { ...attributes } })
    if (name !== 'flowkit.task') return { decision: SamplingDecision.RECORD_AND_SAMPLED }
    return { decision: this.n++ % 2 === 0 ? SamplingDecision.RECORD_AND_SAMPLED : SamplingDecision.NOT_RECORD }
  }
  toString(): string {
    return 'EveryOtherTask'
  }
}

/** Records task spans, drops every attempt span (a sampler that does not follow the parent). */
class NoAttempts implements Sampler {
  shouldSample(_ctx: Context, _traceId: string, name: string): SamplingResult {
    return { decision: name === 'flowkit.node.attempt' ? SamplingDecision.NOT_RECORD : SamplingDecision.RECORD_AND_SAMPLED }
  }
  toString(): string {
    return 'NoAttempts'
  }
}

const GRAPH = { nodes: [{ node_id: 'src', type: 'src' }, { node_id: 'sink', type: 'sink', depends_on: ['src'] }] }

function setup(sampler: Sampler) {
  const exporter = new InMemorySpanExporter()
  const provider = new BasicTracerProvider({ sampler, spanProcessors: [new SimpleSpanProcessor(exporter)] })
  const bus = new MemoryBus()
  const store = new MemoryStore()
  const produced: BusRecord[] = []
  const logger = new MemoryLogger()
  const observability = { tracing: provider, metrics: false } as const
  const c = new Coordinator({ bus: spyBus(bus, produced), store, logger, observability, config: { schedulerTickSec: 0.05 } })
  const w = new Worker({ bus: spyBus(bus, produced), store, logger, observability, handlers: { src: sourceHandler(4, 2), sink: noopHandler() } })
  const spans = (name: string, taskId?: string): ReadableSpan[] =>
    exporter.getFinishedSpans().filter((s) => s.name === name && (taskId === undefined || s.attributes['flowkit.task.id'] === taskId))
  const recordsOf = (taskId: string): BusRecord[] => produced.filter((r) => r.key?.startsWith(`${taskId}:`) === true)
  return { c, w, logger, spans, recordsOf }
}

test('a dropped trace makes no attempt or run spans but carries its context; a sampled one is complete', async () => {
  const sampler = new EveryOtherTask()
  const { c, w, logger, spans, recordsOf } = setup(new ParentBasedSampler({ root: sampler }))
  await c.start()
  await w.start()
  try {
    const kept = await c.createTask({ graph: GRAPH })
    assert.equal((await c.waitForTask(kept, { timeoutMs: 10_000 })).status, 'finished')
    const dropped = await c.createTask({ graph: GRAPH })
    assert.equal((await c.waitForTask(dropped, { timeoutMs: 10_000 })).status, 'finished')
    await waitFor(() => spans('flowkit.worker.run', kept).length === 2, { message: 'the sampled trace has its two runs' })

    // The sampler decided on the task spans, with their attributes.
    const roots = sampler.seen.filter((s) => s.name === 'flowkit.task')
    assert.deepEqual(
      roots.map((s) => s.attributes['flowkit.task.id']),
      [kept, dropped],
    )
    assert.equal(roots[0]?.attributes['flowkit.task.nodes'], 2)

    // The sampled trace: every span, with attributes, events and the link.
    const [task] = spans('flowkit.task', kept)
    assert.ok(task)
    const attempts = spans('flowkit.node.attempt', kept)
    const runs = spans('flowkit.worker.run', kept)
    assert.equal(attempts.length, 2)
    for (const a of attempts) {
      assert.equal(a.parentSpanContext?.spanId, task.spanContext().spanId)
      assert.equal(a.attributes['flowkit.attempt.outcome'], 'finished')
      assert.equal(typeof a.attributes['flowkit.node.type'], 'string')
      assert.equal(a.attributes['flowkit.worker.id'], w.workerId)
      assert.ok(a.events.some((e) => e.name === 'accepted'))
      const run = runs.find((r) => r.parentSpanContext?.spanId === a.spanContext().spanId)
      assert.ok(run, 'the run is a child of its attempt')
      assert.equal(run.attributes['flowkit.node.id'], a.attributes['flowkit.node.id'])
      assert.equal(run.attributes['flowkit.lease.id'], a.attributes['flowkit.lease.id'])
      assert.ok(a.links.some((l) => l.context.spanId === run.spanContext().spanId))
    }
    const srcAttempt = attempts.find((a) => a.attributes['flowkit.node.id'] === 'src') as ReadableSpan
    assert.equal(srcAttempt.events.filter((e) => e.name === 'batch').length, 2)
    for (const r of recordsOf(kept).filter(isStart)) assert.match(r.headers?.['traceparent'] ?? '', /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/)

    // The dropped trace: no span of it at all, whatever its kind.
    assert.equal(spans('flowkit.task', dropped).length, 0)
    assert.equal(spans('flowkit.node.attempt', dropped).length, 0)
    assert.equal(spans('flowkit.worker.run', dropped).length, 0)
    assert.ok(!sampler.seen.some((s) => s.attributes['flowkit.task.id'] === dropped && s.name !== 'flowkit.task'), 'nothing else asked for it')
    // …but its context travels to the workers: the task span's, not sampled, on every START.
    const created = logger.records.find((r) => r.event === 'task.created' && r.fields['task_id'] === dropped)
    const traceId = created?.fields['trace_id']
    const spanId = created?.fields['span_id']
    assert.equal(typeof traceId, 'string')
    const expected = `00-${String(traceId)}-${String(spanId)}-00`
    const starts = recordsOf(dropped).filter(isStart)
    assert.equal(starts.length, 2)
    for (const r of starts) assert.equal(r.headers?.['traceparent'], expected)
    // The runs' status events carry none back: the coordinator has nothing to link them to.
    const events = recordsOf(dropped).filter((r) => statusKind(r) !== undefined)
    assert.ok(events.length >= 2 * 2)
    for (const e of events) assert.equal(e.headers?.['traceparent'], undefined, `${statusKind(e)} carries no trace context`)
    // The log records about it name that context too (coordinator and worker).
    const done = logger.records.filter((r) => r.event === 'node.done' && r.fields['task_id'] === dropped)
    assert.ok(done.length >= 2)
    for (const r of done) {
      assert.equal(r.fields['trace_id'], traceId)
      assert.equal(r.fields['span_id'], spanId)
    }
  } finally {
    await w.stop()
    await c.stop()
  }
})

test('an attempt span the sampler drops gets nothing built for it; the worker follows its flags', async () => {
  const { c, w, spans, recordsOf } = setup(new NoAttempts())
  await c.start()
  await w.start()
  try {
    const id = await c.createTask({ graph: GRAPH })
    assert.equal((await c.waitForTask(id, { timeoutMs: 10_000 })).status, 'finished')
    await waitFor(() => spans('flowkit.task', id).length === 1, { message: 'the task span ended' })
    const task = spans('flowkit.task', id)[0] as ReadableSpan
    assert.equal(task.attributes['flowkit.task.status'], 'finished')
    assert.equal(spans('flowkit.node.attempt').length, 0)
    assert.equal(spans('flowkit.worker.run').length, 0, 'a start whose trace is not sampled makes no run span')
    // Each START carries its own (dropped) attempt span: same trace, not the task span, flags 00.
    const starts = recordsOf(id).filter(isStart)
    assert.equal(starts.length, 2)
    const parents = new Set<string>()
    for (const s of starts) {
      const [v, trace, span, flags] = (s.headers?.['traceparent'] ?? '').split('-')
      assert.equal(v, '00')
      assert.equal(trace, task.spanContext().traceId)
      assert.notEqual(span, task.spanContext().spanId)
      assert.equal(flags, '00')
      parents.add(s.headers?.['traceparent'] ?? '')
    }
    assert.equal(parents.size, 2)
    // The runs' status events carry no context back (the trace is not sampled).
    const events = recordsOf(id).filter((r) => statusKind(r) !== undefined)
    assert.ok(events.length >= 2 * 2)
    for (const e of events) assert.equal(e.headers?.['traceparent'], undefined, `${statusKind(e)} carries no trace context`)
  } finally {
    await w.stop()
    await c.stop()
  }
})
