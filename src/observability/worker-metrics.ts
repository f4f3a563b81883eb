/**
 * The worker's Prometheus metrics (one prom-client Registry per worker): runs by outcome and
 * duration, batches and items, time per batch, command lag, active runs and the status backlog.
 * Names are prefixed `flowkit_worker_` so a worker's registry merges with a coordinator's.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import { Children, DURATION_BUCKETS, LATENCY_BUCKETS } from './options.ts'

type Inc = { inc(value?: number): void }
type Observe = { observe(value: number): void }

/** What the gauges read at scrape time. */
export interface WorkerParts {
  activeRuns(): number
  concurrency(): number
  statusBacklog(): number
}

export class WorkerMetrics {
  readonly #runs: Children<Observe>
  readonly #batches: Children<Inc>
  readonly #items: Children<Inc>
  readonly #batchFailures: Children<Inc>
  readonly #batchSeconds: Children<Observe>
  readonly #commandLag: Children<Observe>
  readonly #logEvents: Children<Inc>

  constructor(registry: Registry, parts: () => WorkerParts | null) {
    const registers = [registry]
    const c = (name: string, help: string, labelNames: string[]) => new Counter({ name, help, labelNames, registers })
    const h = (name: string, help: string, labelNames: string[], buckets: number[]) => new Histogram({ name, help, labelNames, buckets, registers })
    new Gauge({ name: 'flowkit_worker_runs_active', help: 'Runs in progress on this worker', registers, collect() { this.set(parts()?.activeRuns() ?? 0) } })
    new Gauge({ name: 'flowkit_worker_concurrency', help: 'Runs this worker takes at once (its slots)', registers, collect() { this.set(parts()?.concurrency() ?? 0) } })
    new Gauge({ name: 'flowkit_worker_status_backlog', help: 'Status events waiting for (or in) a produce', registers, collect() { this.set(parts()?.statusBacklog() ?? 0) } })
    const runs = h('flowkit_worker_run_duration_seconds', 'Runs from their start to their end, by role and outcome (finished, failed, cancelled, abandoned)', ['role', 'outcome'], DURATION_BUCKETS)
    this.#runs = new Children((r, o) => runs.labels(r as string, o as string))
    const batches = c('flowkit_worker_batches_total', 'Batches processed successfully, by role', ['role'])
    this.#batches = new Children((r) => batches.labels(r as string))
    const items = c('flowkit_worker_batch_items_total', 'Items of those batches (their numeric `count` metric), by role', ['role'])
    this.#items = new Children((r) => items.labels(r as string))
    const failures = c('flowkit_worker_batch_failures_total', 'Batches that failed, by role', ['role'])
    this.#batchFailures = new Children((r) => failures.labels(r as string))
    const batchSeconds = h('flowkit_worker_batch_seconds', 'Time per batch (since the previous batch report, or the acceptance), by role', ['role'], LATENCY_BUCKETS)
    this.#batchSeconds = new Children((r) => batchSeconds.labels(r as string))
    const lag = h('flowkit_worker_command_lag_seconds', 'Commands: from the record timestamp to their receipt by the worker (dispatch→received), by role', ['role'], LATENCY_BUCKETS)
    this.#commandLag = new Children((r) => lag.labels(r as string))
    const logEvents = c('flowkit_worker_log_events_total', 'Log records of the worker (at any level, logged or not), by event and level', ['event', 'level'])
    this.#logEvents = new Children((e, l) => logEvents.labels(e as string, l as string))
  }

  runEnded(role: string, outcome: string, seconds: number): void {
    this.#runs.get(role, outcome).observe(Math.max(0, seconds))
  }

  batch(role: string, items: number, seconds: number): void {
    this.#batches.get(role).inc()
    if (items > 0) this.#items.get(role).inc(items)
    this.#batchSeconds.get(role).observe(Math.max(0, seconds))
  }

  batchFailed(role: string): void {
    this.#batchFailures.get(role).inc()
  }

  command(role: string, seconds: number): void {
    this.#commandLag.get(role).observe(Math.max(0, seconds))
  }

  record(level: string, event: string): void {
    this.#logEvents.get(event, level).inc()
  }
}
