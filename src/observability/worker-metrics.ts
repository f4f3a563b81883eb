/**
 * The worker's Prometheus metrics (one prom-client Registry per worker): runs by outcome and
 * duration, batches and items, time per batch, command lag, active runs and the status backlog.
 * Names are prefixed `flowkit_worker_` so a worker's registry merges with a coordinator's.
 */
import { Gauge, type Registry } from 'prom-client'
import { FastCounter, FastHistogram } from './fast.ts'
import { DURATION_BUCKETS, LATENCY_BUCKETS } from './options.ts'

/** What the gauges read at scrape time. */
export interface WorkerParts {
  activeRuns(): number
  concurrency(): number
  statusBacklog(): number
}

export class WorkerMetrics {
  readonly #runs: FastHistogram
  readonly #batches: FastCounter
  readonly #items: FastCounter
  readonly #batchFailures: FastCounter
  readonly #batchSeconds: FastHistogram
  readonly #commandLag: FastHistogram
  readonly #logEvents: FastCounter

  constructor(registry: Registry, parts: () => WorkerParts | null) {
    const registers = [registry]
    const c = (name: string, help: string, labelNames: string[]) => new FastCounter(registry, name, help, labelNames)
    const h = (name: string, help: string, labelNames: string[], buckets: number[]) => new FastHistogram(registry, name, help, labelNames, buckets)
    new Gauge({ name: 'flowkit_worker_runs_active', help: 'Runs in progress on this worker', registers, collect() { this.set(parts()?.activeRuns() ?? 0) } })
    new Gauge({ name: 'flowkit_worker_concurrency', help: 'Runs this worker takes at once (its slots)', registers, collect() { this.set(parts()?.concurrency() ?? 0) } })
    new Gauge({ name: 'flowkit_worker_status_backlog', help: 'Status events waiting for (or in) a produce', registers, collect() { this.set(parts()?.statusBacklog() ?? 0) } })
    this.#runs = h('flowkit_worker_run_duration_seconds', 'Runs from their start to their end, by role and outcome (finished, failed, cancelled, abandoned)', ['role', 'outcome'], DURATION_BUCKETS)
    this.#batches = c('flowkit_worker_batches_total', 'Batches processed successfully, by role', ['role'])
    this.#items = c('flowkit_worker_batch_items_total', 'Items of those batches (their numeric `count` metric), by role', ['role'])
    this.#batchFailures = c('flowkit_worker_batch_failures_total', 'Batches that failed, by role', ['role'])
    this.#batchSeconds = h('flowkit_worker_batch_seconds', 'Time per batch (since the previous batch report, or the acceptance), by role', ['role'], LATENCY_BUCKETS)
    this.#commandLag = h('flowkit_worker_command_lag_seconds', 'Commands: from the record timestamp to their receipt by the worker (dispatch→received), by role', ['role'], LATENCY_BUCKETS)
    this.#logEvents = c('flowkit_worker_log_events_total', 'Log records of the worker (at any level, logged or not), by event and level', ['event', 'level'])
  }

  runEnded(role: string, outcome: string, seconds: number): void {
    this.#runs.labels(role, outcome).observe(Math.max(0, seconds))
  }

  batch(role: string, items: number, seconds: number): void {
    this.#batches.labels(role).inc()
    if (items > 0) this.#items.labels(role).inc(items)
    this.#batchSeconds.labels(role).observe(Math.max(0, seconds))
  }

  batchFailed(role: string): void {
    this.#batchFailures.labels(role).inc()
  }

  command(role: string, seconds: number): void {
    this.#commandLag.labels(role).observe(Math.max(0, seconds))
  }

  record(level: string, event: string): void {
    this.#logEvents.labels(event, level).inc()
  }
}
