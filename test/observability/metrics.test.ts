/**
 * Prometheus metrics, scraped over HTTP from the handlers and parsed (text format) after small DAGs
 * on the memory runtime: tasks and nodes by status, attempt and hop-latency histograms, batches and
 * items, retries, cancellations, lease expiries, store call latency, the worker's own metrics, the
 * metricsPort server, a merged coordinator+worker endpoint and the log-derived counters.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Coordinator, CoordinatorObservability, MemoryBus, MemoryLogger, MemoryStore, type RoleHandler, SystemClock, Worker, metricsHandler } from 'flowkit'
import { gate } from '../helpers/gate.ts'
import { resolveObservability } from '../../src/observability/options.ts'
import { noopHandler, sourceHandler, startRuntime } from '../helpers/runtime.ts'
import { waitFor } from '../helpers/wait.ts'
import { get, parseMetrics, sample, scrape } from './helpers.ts'

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

test('a small DAG: task, node, batch, hop-latency, retry and store metrics on the coordinator; runs and batches on the worker', async () => {
  const bus = new MemoryBus()
  const store = new MemoryStore()
  const c = new Coordinator({ bus, store, config: { schedulerTickSec: 0.05 } })
  const w = new Worker({ bus, store, handlers: { src: sourceHandler(7, 3), sink: noopHandler(), flaky: flakyOnce() } })
  await c.start()
  await w.start()
  try {
    const id = await c.createTask({
      graph: {
        nodes: [
          { node_id: 'src', type: 'src' },
          { node_id: 'sink', type: 'sink', depends_on: ['src'] },
          { node_id: 'flaky', type: 'flaky', depends_on: ['src'], retry_policy: { max: 3, backoff_sec: 0.01 } },
        ],
      },
    })
    assert.equal((await c.waitForTask(id, { timeoutMs: 20_000 })).status, 'finished')
    const m = await scrape(c.metricsHandler())
    assert.equal(sample(m, 'flowkit_tasks_created_total'), 1)
    assert.equal(sample(m, 'flowkit_tasks_completed_total', { status: 'finished' }), 1)
    assert.equal(sample(m, 'flowkit_task_duration_seconds_count', { status: 'finished' }), 1)
    for (const status of ['queued', 'running', 'cancelling']) assert.equal(sample(m, 'flowkit_tasks', { status }), 0, `no ${status} task left`)
    assert.equal(sample(m, 'flowkit_node_attempt_duration_seconds_count', { type: 'src', outcome: 'finished' }), 1)
    assert.equal(sample(m, 'flowkit_node_attempt_duration_seconds_count', { type: 'sink', outcome: 'finished' }), 1)
    assert.equal(sample(m, 'flowkit_node_attempt_duration_seconds_count', { type: 'flaky', outcome: 'retry' }), 1)
    assert.equal(sample(m, 'flowkit_node_attempt_duration_seconds_count', { type: 'flaky', outcome: 'finished' }), 1)
    assert.equal(sample(m, 'flowkit_node_retries_total', { type: 'flaky' }), 1)
    assert.equal(sample(m, 'flowkit_node_dispatch_accept_seconds_count', { type: 'src' }), 1)
    assert.equal(sample(m, 'flowkit_node_dispatch_accept_seconds_count', { type: 'flaky' }), 2)
    assert.equal(sample(m, 'flowkit_batches_total', { type: 'src' }), 3)
    assert.equal(sample(m, 'flowkit_batch_items_total', { type: 'src' }), 7)
    assert.equal(sample(m, 'flowkit_event_apply_seconds_count', { kind: 'BATCH_OK' }), 3 + 1 + 1)
    assert.equal(sample(m, 'flowkit_event_receive_lag_seconds_count', { kind: 'TASK_DONE' }), 3)
    assert.equal(sample(m, 'flowkit_event_apply_seconds_count', { kind: 'TASK_FAILED' }), 1)
    assert.ok((sample(m, 'flowkit_coordinator_store_call_seconds_count', { op: 'appendJournal', outcome: 'ok' }) ?? 0) >= 1)
    assert.ok((sample(m, 'flowkit_coordinator_flushes_total') ?? 0) >= 1)
    assert.ok((sample(m, 'flowkit_coordinator_commands_sent_total') ?? 0) >= 4)
    assert.equal(sample(m, 'flowkit_outbox_backlog'), 0)
    assert.equal(sample(m, 'flowkit_coordinator_log_events_total', { event: 'task.created', level: 'info' }), 1)

    await waitFor(() => w.activeRuns().length === 0)
    const wm = await scrape(w.metricsHandler())
    assert.equal(sample(wm, 'flowkit_worker_run_duration_seconds_count', { role: 'src', outcome: 'finished' }), 1)
    assert.equal(sample(wm, 'flowkit_worker_run_duration_seconds_count', { role: 'flaky', outcome: 'failed' }), 1)
    assert.equal(sample(wm, 'flowkit_worker_batches_total', { role: 'src' }), 3)
    assert.equal(sample(wm, 'flowkit_worker_batch_items_total', { role: 'src' }), 7)
    assert.equal(sample(wm, 'flowkit_worker_batch_failures_total', { role: 'flaky' }), 1)
    assert.equal(sample(wm, 'flowkit_worker_command_lag_seconds_count', { role: 'flaky' }), 2)
    assert.equal(sample(wm, 'flowkit_worker_runs_active'), 0)
    assert.equal(sample(wm, 'flowkit_worker_concurrency'), w.config.concurrency)
    assert.ok((sample(wm, 'flowkit_worker_store_call_seconds_count', { op: 'writeArtifacts', outcome: 'ok' }) ?? sample(wm, 'flowkit_worker_store_call_seconds_count', { op: 'claimAttempt', outcome: 'ok' }) ?? 0) >= 1)

    // One endpoint for both (a dashboard server): the names do not clash.
    const both = await scrape(metricsHandler([c.observability?.registry ?? null, w.observability?.registry ?? null]))
    assert.equal(sample(both, 'flowkit_tasks_created_total'), 1)
    assert.equal(sample(both, 'flowkit_worker_batches_total', { role: 'src' }), 3)
    assert.equal(sample(await scrape(metricsHandler([c.observability?.registry ?? null, c.observability?.registry ?? null])), 'flowkit_tasks_created_total'), 1, 'one registry given twice is served once')
    // Two instances of one kind share every name: refused when the handler is made, naming them
    // (prom-client's merge threw at the first scrape, outside the request's error path: the process died).
    const w2 = new Worker({ bus, store, handlers: { s: noopHandler() } })
    assert.throws(() => metricsHandler([w.observability?.registry ?? null, w2.observability?.registry ?? null]), {
      code: 'CONFIG_INVALID',
      message: /metricsHandler: these registries share metric names \(flowkit_worker_[a-z_]+, .*serve the others on their own/,
    })
  } finally {
    await w.stop()
    await c.stop()
  }
})

test('nodes by status while running; a cancel and a lease expiry are counted', async () => {
  const started = gate()
  const hang: RoleHandler = {
    async processBatch(_b, ctx) {
      started.open()
      await ctx.sleep(60_000)
      return {}
    },
  }
  const rt = await startRuntime({ worker: { leaseTtlSec: 1, hbIntervalSec: 0.2 }, coordinator: { schedulerTickSec: 0.1 } })
  try {
    const doomed = await rt.addWorker({ step: hang }, { workerId: 'doomed' })
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'step' }, { node_id: 'after', type: 'step', depends_on: ['n'] }] } })
    await started.wait()
    await waitFor(async () => (await rt.coordinator.getTask(id))?.nodes.find((n) => n.node_id === 'n')?.lease.worker_id === 'doomed')
    const running = await scrape(rt.coordinator.metricsHandler())
    assert.equal(sample(running, 'flowkit_tasks', { status: 'running' }), 1)
    assert.equal(sample(running, 'flowkit_nodes', { status: 'running', type: 'step' }), 1)
    assert.equal(sample(running, 'flowkit_nodes', { status: 'queued', type: 'step' }), 1)
    await doomed.kill() // its lease expires: the node is retried on the next worker, which hangs too
    rt.workers.splice(rt.workers.indexOf(doomed), 1)
    await rt.addWorker({ step: hang }, { workerId: 'second' })
    await waitFor(async () => (await rt.coordinator.getTask(id))?.nodes.find((n) => n.node_id === 'n')?.lease.worker_id === 'second', { timeoutMs: 20_000 })
    assert.ok(await rt.coordinator.cancelTask(id))
    assert.equal((await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })).status, 'cancelled')
    const m = await scrape(rt.coordinator.metricsHandler())
    assert.equal(sample(m, 'flowkit_node_lease_expiries_total', { type: 'step', why: 'lease_expired' }), 1)
    // Both nodes, under their type: `after` never ran (it had no attempt to tell its type from).
    assert.equal(sample(m, 'flowkit_node_cancellations_total', { type: 'step' }), 2)
    assert.equal(sample(m, 'flowkit_node_cancellations_total', { type: 'unknown' }), undefined)
    assert.equal(sample(m, 'flowkit_tasks_completed_total', { status: 'cancelled' }), 1)
    assert.equal(sample(m, 'flowkit_node_attempt_duration_seconds_count', { type: 'step', outcome: 'cancelled' }), 1)
    assert.equal(sample(m, 'flowkit_tasks', { status: 'running' }), 0)
  } finally {
    await rt.stop()
  }
})

test('metricsPort (option or config) serves /metrics; other paths are 404', async () => {
  const bus = new MemoryBus()
  const store = new MemoryStore()
  const c = new Coordinator({ bus, store, observability: { metricsPort: 0, metricsHost: '127.0.0.1' } })
  // A config key (typed: no cast), camelCase or the seed's snake_case.
  const w = new Worker({ bus, store, handlers: { s: noopHandler() }, config: { metrics_port: 0 } })
  assert.equal(w.config.metricsPort, 0)
  await c.start()
  await w.start()
  try {
    const cp = c.observability?.address?.port
    const wp = w.observability?.address?.port
    assert.ok(cp !== undefined && wp !== undefined)
    const res = await get(cp, '/metrics')
    assert.equal(res.status, 200)
    assert.match(res.type, /^text\/plain; version=0\.0\.4/)
    assert.equal(sample(parseMetrics(res.body), 'flowkit_tasks_created_total'), 0)
    assert.equal((await get(cp, '/')).status, 404)
    assert.equal(sample(parseMetrics((await get(wp, '/metrics')).body), 'flowkit_worker_runs_active'), 0)
  } finally {
    await w.stop()
    await c.stop()
  }
  assert.equal(c.observability?.address, null, 'the server is closed on stop')
})

test('log-derived counters: dead letters and outbox retries; records pass through unchanged', async () => {
  const obs = CoordinatorObservability.create({}, new SystemClock())
  assert.ok(obs !== null)
  const inner = new MemoryLogger()
  const log = obs.wrapLogger(inner).child({ component: 'coordinator' })
  log.error('outbox.failed', { topic: 't', key: 'k', dedup_id: 'd', attempts: 5, error: 'down' })
  log.warn('outbox.retry', { records: 3, attempts: 1, delay_ms: 10, error: 'down' })
  const m = await scrape(obs.handler())
  assert.equal(sample(m, 'flowkit_outbox_dead_letters_total'), 1)
  assert.equal(sample(m, 'flowkit_outbox_send_retries_total'), 3)
  assert.equal(sample(m, 'flowkit_coordinator_log_events_total', { event: 'outbox.failed', level: 'error' }), 1)
  assert.deepEqual(inner.events(), ['outbox.failed', 'outbox.retry'])
  assert.equal(inner.records[0]?.fields['component'], 'coordinator')
  assert.equal(inner.records[0]?.fields['trace_id'], undefined, 'no trace: no trace ids')
})

test('metricsPort given in both spellings: the later key, as every other setting (camelCase always won)', () => {
  const bus = new MemoryBus()
  const store = new MemoryStore()
  for (const [config, port] of [
    [{ metricsPort: 19431, metrics_port: 0 }, 0],
    [{ metrics_port: 0, metricsPort: 19431 }, 19431],
  ] as const) {
    const w = new Worker({ bus, store, handlers: { s: noopHandler() }, config })
    assert.equal(w.config.metricsPort, port, JSON.stringify(config))
    // The server the worker would start (not started here): the same port.
    assert.equal(resolveObservability(undefined, config)?.port, port, JSON.stringify(config))
  }
})
