/**
 * The coordinator's Prometheus metrics (one prom-client Registry per coordinator). Gauges of
 * tasks and nodes are computed at scrape time from the tasks the coordinator holds in memory;
 * counters and histograms are fed by durable journal entries (coordinator.ts in this folder), by
 * status events as they are received and applied, and by log records (retries, lease expiries,
 * cancellations, dead letters). Names and labels: docs/observability.md.
 */
import { Counter, Gauge, type Registry } from 'prom-client'
import type { LogFields } from '../log.ts'
import type { NodeState } from '../model/state.ts'
import { FastCounter, FastHistogram } from './fast.ts'
import { DURATION_BUCKETS, LATENCY_BUCKETS } from './options.ts'

/** What the metrics read from the coordinator at scrape time. */
export interface CoordinatorParts {
  tasks(): Iterable<{ status: string; terminal: boolean; nodes: readonly NodeState[] }>
  stats(): Record<string, number>
  outboxBacklog(): number
  /** The type of a node of a task this coordinator holds (for nodes that never ran: no attempt says it). */
  nodeType?(taskId: string, nodeId: string): string | undefined
}

const ACTIVE_TASK_STATUSES = ['queued', 'running', 'cancelling'] as const

/**
 * Node types a coordinator's metrics label by name: the first this many it sees. Types come from
 * the submitted graphs (not from the workers' roles), so a graph of made-up types must not create
 * series without bound (every counter and histogram series lives as long as the process): the
 * types after these are counted under `OTHER_TYPE`, which no node type can be (graph/parse-context.ts).
 */
export const MAX_TYPE_LABELS = 200
export const OTHER_TYPE = '(other)'

/** The `type` label of a node type (see MAX_TYPE_LABELS). */
export class TypeLabels {
  readonly #seen = new Set<string>()
  of(type: string): string {
    if (this.#seen.has(type)) return type
    if (this.#seen.size >= MAX_TYPE_LABELS) return OTHER_TYPE
    this.#seen.add(type)
    return type
  }
}
/** stats() counters exposed as counters: stats key → metric name suffix. */
const STAT_COUNTERS: ReadonlyArray<readonly [string, string, string]> = [
  ['flushes', 'flushes_total', 'Group commits (flushes) written'],
  ['journal_entries', 'journal_entries_total', 'Journal entries written'],
  ['events_applied', 'events_applied_total', 'Worker status events applied'],
  ['produce_calls', 'produce_calls_total', 'Bus produce calls of the outbox'],
  ['commands_sent', 'commands_sent_total', 'Commands sent by the outbox'],
  ['snapshot_writes', 'snapshot_writes_total', 'Task snapshots written'],
  ['forwarded', 'forwarded_total', 'Status events and requests sent on to the coordinator owning their task (docs/scaling.md)'],
  ['claims', 'claims_total', 'Tasks loaded and claimed from the store (hand-over, adoption, restart)'],
  ['fenced', 'fenced_total', 'Task writes refused because another coordinator wrote the task first, or dropped because its partition moved'],
]

export class CoordinatorMetrics {
  readonly #attempt: FastHistogram
  readonly #accept: FastHistogram
  readonly #received: FastHistogram
  readonly #applied: FastHistogram
  readonly #batches: FastCounter
  readonly #items: FastCounter
  readonly #taskDone: FastCounter
  readonly #taskDuration: FastHistogram
  readonly #created: FastCounter
  readonly #adopted: FastCounter
  readonly #retries: FastCounter
  readonly #leaseExpiries: FastCounter
  readonly #timeouts: FastCounter
  readonly #cancellations: FastCounter
  readonly #deadLetters: FastCounter
  readonly #outboxRetries: FastCounter
  readonly #logEvents: FastCounter
  readonly #types = new TypeLabels()

  constructor(registry: Registry, parts: () => CoordinatorParts | null) {
    const registers = [registry]
    const c = (name: string, help: string, labelNames: string[] = []) => new FastCounter(registry, name, help, labelNames)
    const types = this.#types
    const h = (name: string, help: string, labelNames: string[], buckets: number[]) => new FastHistogram(registry, name, help, labelNames, buckets)
    new Gauge({
      name: 'flowkit_tasks',
      help: 'Active tasks this coordinator holds, by status',
      labelNames: ['status'],
      registers,
      collect() {
        const counts: Record<string, number> = { queued: 0, running: 0, cancelling: 0 }
        for (const t of parts()?.tasks() ?? []) if (!t.terminal && t.status in counts) counts[t.status] = (counts[t.status] ?? 0) + 1
        for (const s of ACTIVE_TASK_STATUSES) this.set({ status: s }, counts[s] ?? 0)
      },
    })
    new Gauge({
      name: 'flowkit_nodes',
      help: 'Nodes of the active tasks this coordinator holds, by status and type',
      labelNames: ['status', 'type'],
      registers,
      collect() {
        const counts = new Map<string, [string, string, number]>()
        for (const t of parts()?.tasks() ?? []) {
          if (t.terminal) continue
          for (const n of t.nodes) {
            const type = types.of(n.type)
            const key = `${n.status}\u0000${type}`
            const e = counts.get(key)
            if (e === undefined) counts.set(key, [n.status, type, 1])
            else e[2]++
          }
        }
        this.reset()
        for (const [status, type, v] of counts.values()) this.set({ status, type }, v)
      },
    })
    new Gauge({ name: 'flowkit_outbox_backlog', help: 'Commands waiting in the outbox to be sent', registers, collect() { this.set(parts()?.outboxBacklog() ?? 0) } })
    new Gauge({ name: 'flowkit_coordinator_snapshot_backlog', help: 'Task snapshots waiting to be written', registers, collect() { this.set(parts()?.stats()['snapshot_backlog'] ?? 0) } })
    new Gauge({ name: 'flowkit_coordinator_owned_partitions', help: "Partitions of the owners' topic this coordinator owns (docs/scaling.md)", registers, collect() { this.set(parts()?.stats()['owned_partitions'] ?? 0) } })
    new Gauge({ name: 'flowkit_coordinator_timers', help: 'Armed timers of the tasks held (leases, accept timeouts, retries, deadlines)', registers, collect() { this.set(parts()?.stats()['timers'] ?? 0) } })
    for (const [key, suffix, help] of STAT_COUNTERS) {
      let last = 0
      new Counter({
        name: `flowkit_coordinator_${suffix}`,
        help,
        registers,
        collect() {
          const v = parts()?.stats()[key] ?? last
          if (v > last) this.inc(v - last)
          last = v
        },
      })
    }
    this.#created = c('flowkit_tasks_created_total', 'Tasks created on this coordinator, or submitted through the store (flowkit submit, flowkit ui) and first taken up here')
    this.#adopted = c('flowkit_tasks_adopted_total', 'Tasks this coordinator loaded from the store (a submission through the store, a recovery after a restart, a hand-over from another coordinator)')
    this.#taskDone = c('flowkit_tasks_completed_total', 'Tasks that reached a terminal status (durably), by status', ['status'])
    this.#taskDuration = h('flowkit_task_duration_seconds', 'Tasks from creation to their terminal status, by status', ['status'], DURATION_BUCKETS)
    this.#attempt = h('flowkit_node_attempt_duration_seconds', 'Node attempts from dispatch to their end, by node type and outcome', ['type', 'outcome'], DURATION_BUCKETS)
    this.#accept = h('flowkit_node_dispatch_accept_seconds', 'Hop latency from a node dispatch to its acceptance by a worker, by node type', ['type'], LATENCY_BUCKETS)
    this.#received = h('flowkit_event_receive_lag_seconds', 'Worker status events: from the record timestamp to their receipt by the coordinator (consumer lag in time), by kind', ['kind'], LATENCY_BUCKETS)
    this.#applied = h('flowkit_event_apply_seconds', 'Worker status events: from the record timestamp to their durable application (batch→applied for BATCH_OK), by kind', ['kind'], LATENCY_BUCKETS)
    this.#batches = c('flowkit_batches_total', 'Batch reports applied (durably), by node type; a batch a retry reports again counts again', ['type'])
    this.#items = c('flowkit_batch_items_total', 'Items of those batch reports (their numeric `count` metric), by node type', ['type'])
    this.#retries = c('flowkit_node_retries_total', 'Transient node failures that scheduled a retry, by node type', ['type'])
    this.#leaseExpiries = c('flowkit_node_lease_expiries_total', 'Attempts given up because their lease expired or heartbeats stopped, by node type and why', ['type', 'why'])
    this.#timeouts = c('flowkit_node_timeouts_total', 'Attempts cancelled for running past their timeout_sec, by node type', ['type'])
    this.#cancellations = c('flowkit_node_cancellations_total', 'Nodes that ended cancelled, by node type', ['type'])
    this.#deadLetters = c('flowkit_outbox_dead_letters_total', 'Commands parked as dead letters after their last send attempt')
    this.#outboxRetries = c('flowkit_outbox_send_retries_total', 'Commands whose send failed and was scheduled again')
    this.#logEvents = c('flowkit_coordinator_log_events_total', 'Log records of the coordinator (at any level, logged or not), by event and level', ['event', 'level'])
  }

  taskCreated(): void {
    this.#created.labels().inc()
  }

  taskEnded(status: string, seconds: number | null): void {
    this.#taskDone.labels(status).inc()
    if (seconds !== null) this.#taskDuration.labels(status).observe(Math.max(0, seconds))
  }

  attemptEnded(type: string, outcome: string, seconds: number): void {
    this.#attempt.labels(this.#types.of(type), outcome).observe(Math.max(0, seconds))
  }

  accepted(type: string, seconds: number): void {
    this.#accept.labels(this.#types.of(type)).observe(Math.max(0, seconds))
  }

  batch(type: string, items: number): void {
    const label = this.#types.of(type)
    this.#batches.labels(label).inc()
    if (items > 0) this.#items.labels(label).inc(items)
  }

  received(kind: string, seconds: number): void {
    this.#received.labels(kind).observe(Math.max(0, seconds))
  }

  applied(kind: string, seconds: number): void {
    this.#applied.labels(kind).observe(Math.max(0, seconds))
  }

  /** A log record: counted, and the ones that mark a retry, expiry, cancel or dead letter. */
  record(level: string, event: string, fields: LogFields | undefined, typeOf: (f: LogFields | undefined) => string): void {
    this.#logEvents.labels(event, level).inc()
    switch (event) {
      case 'node.deferred':
        this.#retries.labels(this.#types.of(typeOf(fields))).inc()
        return
      case 'node.lease_expired':
        this.#leaseExpiries.labels(this.#types.of(typeOf(fields)), 'lease_expired').inc()
        return
      case 'node.heartbeat_lost':
        this.#leaseExpiries.labels(this.#types.of(typeOf(fields)), 'heartbeat_lost').inc()
        return
      case 'node.timeout':
        this.#timeouts.labels(this.#types.of(typeOf(fields))).inc()
        return
      case 'node.cancelled':
        this.#cancellations.labels(this.#types.of(typeOf(fields))).inc()
        return
      case 'outbox.failed':
        this.#deadLetters.labels().inc()
        return
      case 'task.adopted':
        // (One submitted through the store is counted as created by taskSubmitted, with its span.)
        this.#adopted.labels().inc()
        return
      case 'coordinator.acquired': {
        // The tasks of partitions gained (a start, a restart, a rebalance), loaded at once.
        const n = fields?.['tasks']
        if (typeof n === 'number' && n > 0) this.#adopted.labels().inc(n)
        return
      }
      case 'outbox.retry': {
        const n = fields?.['records']
        this.#outboxRetries.labels().inc(typeof n === 'number' && n > 0 ? n : 1)
        return
      }
    }
  }
}
