/**
 * The trace context crosses real Kafka: with an SDK registered globally (the default tracing of a
 * Coordinator and Worker), the TASK_START record the worker consumes from Kafka carries the
 * attempt span's `traceparent` header, the worker's run span is its child, and the status events
 * the coordinator consumes carry the run span back. Runs on the runtime of test/helpers/runtime.ts
 * with FLOWKIT_E2E_RUNTIME=real (set here when Kafka and the MongoDB-protocol server are
 * configured: FLOWKIT_KAFKA_BROKERS, FLOWKIT_MONGO_URL); skipped otherwise.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { trace } from '@opentelemetry/api'
import type { BusMessage } from 'flowkit'
import { realSkip } from '../helpers/real.ts'
import { waitFor } from '../helpers/wait.ts'
import { isStart, memoryTracing, parentSpanId, spyBus, statusKind } from './helpers.ts'

const skip = realSkip('both')
if (skip === false) process.env['FLOWKIT_E2E_RUNTIME'] = 'real'

test('traceparent crosses Kafka: START to the worker, status events back', { skip, timeout: 120_000 }, async () => {
  const { REAL_E2E, sourceHandler, startRuntime } = await import('../helpers/runtime.ts')
  assert.ok(REAL_E2E, 'runs on real Kafka')
  const { provider, spans } = memoryTracing()
  assert.ok(trace.setGlobalTracerProvider(provider))
  const toWorker: BusMessage[] = []
  const toCoordinator: BusMessage[] = []
  const rt = await startRuntime({
    handlers: { src: sourceHandler(4, 2) },
    workerBus: (bus) => spyBus(bus, [], toWorker),
    coordinatorBus: (bus) => spyBus(bus, [], toCoordinator),
  })
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'src', type: 'src' }] } })
    assert.equal((await rt.coordinator.waitForTask(id, { timeoutMs: 60_000 })).status, 'finished')
    await waitFor(() => spans('flowkit.worker.run').length === 1)
    const [attempt] = spans('flowkit.node.attempt')
    const [run] = spans('flowkit.worker.run')
    assert.ok(attempt !== undefined && run !== undefined)
    const start = toWorker.find((m) => isStart(m) && m.value.includes(`"task_id":"${id}"`))
    assert.ok(start, 'the worker consumed the START from Kafka')
    assert.match(start.headers?.['traceparent'] ?? '', /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/)
    assert.equal(parentSpanId(start.headers), attempt.spanContext().spanId, 'the START header names the attempt span')
    assert.equal(run.parentSpanContext?.spanId, attempt.spanContext().spanId, 'the run span is a child of the attempt span')
    assert.equal(run.spanContext().traceId, attempt.spanContext().traceId)
    const events = toCoordinator.filter((m) => m.value.includes(`"task_id":"${id}"`) && statusKind(m) !== undefined)
    assert.ok(events.some((m) => statusKind(m) === 'BATCH_OK'))
    for (const e of events) assert.equal(parentSpanId(e.headers), run.spanContext().spanId, `${statusKind(e)} consumed from Kafka carries the run span`)
    assert.ok(attempt.links.some((l) => l.context.spanId === run.spanContext().spanId), 'the attempt links the run')
  } finally {
    await rt.stop()
    trace.disable()
  }
})
