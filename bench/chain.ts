/**
 * chain:        T tasks of a 3-node chain (n1→n2→n3, no-op handlers), all submitted at once, one
 *               worker of concurrency 32 → node runs/s, tasks/s, task latency p50/p95.
 * chain_single: one 3-node chain at a time, N times → latency p50/p95 (nothing else running).
 */
import type { Coordinator, ObservabilityOptions } from 'flowkit'
import { methodMs, methodTable, perNodeRun, resetCounters } from './counting.ts'
import { noop, withRuntime } from './runtime.ts'
import { emit, latencyFields, log, percentile, rate, round, type Result } from './stats.ts'
import { TerminalTracker } from './terminal.ts'

export const CHAIN_GRAPH = {
  nodes: [
    { node_id: 'n1', type: 'a' },
    { node_id: 'n2', type: 'b', depends_on: ['n1'] },
    { node_id: 'n3', type: 'c', depends_on: ['n2'] },
  ],
}
export const HANDLERS = { a: noop, b: noop, c: noop }

export interface ChainOptions {
  real: boolean
  logLevel: string
  tasks: number
  concurrency: number
  /** Traces and metrics of the runtime (bench/observability.ts compares settings). */
  observability?: ObservabilityOptions | false
}

/** Chains run before timing, after the first (half the timed count, at most 1,000): the JIT's warm-up; bench/bullmq.ts runs as many flows. */
export const warmUpCount = (tasks: number): number => Math.min(1000, Math.ceil(tasks / 2))

/**
 * One chain so connections, topics and consumer groups are in place, then `more` at once so the
 * timed run measures the steady state rather than the JIT compiling the hot path (the first
 * thousand node runs of a fresh process cost about 1.5x the later ones).
 */
export async function warmUp(c: Coordinator, more: number): Promise<void> {
  const first = await c.createTask({ graph: CHAIN_GRAPH })
  const t = await c.waitForTask(first, { timeoutMs: 60_000 })
  if (t.status !== 'finished') throw new Error(`warm-up chain ${t.status}`)
  const ids = await Promise.all(Array.from({ length: more }, () => c.createTask({ graph: CHAIN_GRAPH })))
  for (const id of ids) {
    const v = await c.waitForTask(id, { timeoutMs: 120_000 })
    if (v.status !== 'finished') throw new Error(`warm-up chain ${v.status}`)
  }
}

export async function chain(o: ChainOptions): Promise<Result> {
  const obs = o.observability === undefined ? {} : { observability: o.observability }
  return withRuntime({ real: o.real, logLevel: o.logLevel, handlers: HANDLERS, concurrency: o.concurrency, ...obs }, async ({ coordinator: c, counters, kind }) => {
    await warmUp(c, warmUpCount(o.tasks))
    resetCounters(counters)
    const tracker = new TerminalTracker()
    try {
      const submitted = new Map<string, number>()
      const cpu0 = process.cpuUsage()
      const t0 = performance.now()
      const ids = await Promise.all(
        Array.from({ length: o.tasks }, async () => {
          const at = performance.now()
          const id = await c.createTask({ graph: CHAIN_GRAPH })
          submitted.set(id, at)
          return id
        }),
      )
      const submitMs = performance.now() - t0
      log(`chain: ${o.tasks} tasks submitted in ${round(submitMs, 0)} ms`)
      const views = await tracker.waitAll(c, ids, { timeoutMs: o.real ? 600_000 : 300_000 })
      const end = Math.max(...ids.map((id) => tracker.at.get(id) as number))
      const ms = end - t0
      const cpu = process.cpuUsage(cpu0)
      const bad = views.filter((v) => v.status !== 'finished')
      if (bad.length > 0) throw new Error(`chain: ${bad.length} tasks not finished (first: ${bad[0]?.status})`)
      const lat = ids.map((id) => (tracker.at.get(id) as number) - (submitted.get(id) as number))
      const nodeRuns = o.tasks * 3
      return emit({
        bench: 'chain',
        runtime: kind,
        tasks: o.tasks,
        node_runs: nodeRuns,
        concurrency: o.concurrency,
        seconds: round(ms / 1000, 3),
        submit_ms: round(submitMs, 0),
        node_runs_per_s: rate(nodeRuns, ms),
        tasks_per_s: rate(o.tasks, ms),
        // Process CPU (user + system) of the timed part; with --real the servers' CPU is not in it.
        cpu_us_per_node_run: round((cpu.user + cpu.system) / nodeRuns, 1),
        ...latencyFields('task_latency', lat),
        terminal_seen_by_poll: tracker.polled,
        lease_expiries: tracker.leaseExpiries,
        ...perNodeRun(counters, nodeRuns),
        calls: methodTable(counters),
        call_ms: methodMs(counters),
      })
    } finally {
      tracker.close()
    }
  })
}

export async function chainSingle(o: Omit<ChainOptions, 'tasks'> & { runs: number }): Promise<Result> {
  return withRuntime({ real: o.real, logLevel: o.logLevel, handlers: HANDLERS, concurrency: o.concurrency }, async ({ coordinator: c, counters, kind }) => {
    await warmUp(c, 0)
    resetCounters(counters)
    const tracker = new TerminalTracker()
    try {
      const lat: number[] = []
      for (let i = 0; i < o.runs; i++) {
        const t0 = performance.now()
        const id = await c.createTask({ graph: CHAIN_GRAPH })
        const [v] = await tracker.waitAll(c, [id], { timeoutMs: 120_000, pollMs: 1000 })
        if (v?.status !== 'finished') throw new Error(`chain_single: task ${v?.status}`)
        lat.push((tracker.at.get(id) as number) - t0)
      }
      return emit({
        bench: 'chain_single',
        runtime: kind,
        runs: o.runs,
        ...latencyFields('latency', lat),
        per_node_p50_ms: round(percentile(lat, 50) / 3, 1),
        terminal_seen_by_poll: tracker.polled,
        lease_expiries: tracker.leaseExpiries,
        ...perNodeRun(counters, o.runs * 3),
      })
    } finally {
      tracker.close()
    }
  })
}
