/**
 * chain_steady (embedded only): the chain bench's workload as a long-running process sees it. One
 * runtime, the chain bench's warm-up, then R rounds of T chains (each round submitted at once, as
 * the chain bench does), back to back, with the coordinator purging ended tasks a second after
 * their end (`taskRetentionSec: 1`, `sweepIntervalSec: 1`), so the store holds about one round.
 * Per round: node runs/s, process CPU per node run and the heap in use after it (garbage not yet
 * collected included: V8 lets the old generation grow before a full collection). The chain bench measures
 * the first T chains after the warm-up of a fresh process instead; both are reported.
 */
import type { ObservabilityOptions } from 'flowkit'
import { CHAIN_GRAPH, HANDLERS, warmUp, warmUpCount } from './chain.ts'
import { withRuntime } from './runtime.ts'
import { emit, log, percentile, rate, round, type Result } from './stats.ts'

export interface SteadyOptions {
  logLevel: string
  tasks: number
  concurrency: number
  rounds: number
  /** The runtime's observability option (`--chain-observability`; the runtime's default when absent). */
  observability?: ObservabilityOptions | false
}

export async function chainSteady(o: SteadyOptions): Promise<Result> {
  const coordinatorConfig = { taskRetentionSec: 1, sweepIntervalSec: 1 }
  return withRuntime({ real: false, logLevel: o.logLevel, handlers: HANDLERS, concurrency: o.concurrency, coordinatorConfig, ...(o.observability === undefined ? {} : { observability: o.observability }) }, async ({ coordinator: c, kind }) => {
    await warmUp(c, warmUpCount(o.tasks))
    const rates: number[] = []
    const cpu: number[] = []
    const heap: number[] = []
    for (let r = 1; r <= o.rounds; r++) {
      const cpu0 = process.cpuUsage()
      const t0 = performance.now()
      const ids = await Promise.all(Array.from({ length: o.tasks }, () => c.createTask({ graph: CHAIN_GRAPH })))
      const views = await Promise.all(ids.map((id) => c.waitForTask(id, { timeoutMs: 300_000 })))
      const ms = performance.now() - t0
      const used = process.cpuUsage(cpu0)
      const bad = views.filter((v) => v.status !== 'finished')
      if (bad.length > 0) throw new Error(`chain_steady: ${bad.length} tasks not finished (first: ${bad[0]?.status})`)
      rates.push(rate(o.tasks * 3, ms))
      cpu.push(round((used.user + used.system) / (o.tasks * 3), 1))
      heap.push(round(process.memoryUsage().heapUsed / 2 ** 20, 0))
      log(`chain_steady: round ${r}/${o.rounds}: ${rates.at(-1)} node runs/s, ${cpu.at(-1)} µs CPU per node run, heap ${heap.at(-1)} MB`)
    }
    return emit({
      bench: 'chain_steady',
      runtime: kind,
      method: 'one process: the chain bench warm-up, then rounds of chains back to back, ended tasks purged 1 s after their end',
      tasks_per_round: o.tasks,
      rounds: o.rounds,
      concurrency: o.concurrency,
      node_runs_per_s: round(percentile(rates, 50), 1),
      node_runs_per_s_min: Math.min(...rates),
      node_runs_per_s_max: Math.max(...rates),
      cpu_us_per_node_run: round(percentile(cpu, 50), 1),
      heap_mb_first: heap[0],
      heap_mb_last: heap.at(-1),
      heap_mb_max: Math.max(...heap),
      rounds_node_runs_per_s: rates,
      rounds_cpu_us_per_node_run: cpu,
      rounds_heap_mb: heap,
    })
  })
}
