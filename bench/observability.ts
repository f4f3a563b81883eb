/**
 * chain_observability (`--only chain --observability`): what traces and metrics cost on the chain
 * bench. Each round runs the chain bench once per setting, each in a fresh process, exactly as the
 * headline chain bench runs (its warm-up, then the timed chains), the order rotating each round so
 * a drift of the machine's load does not favour one setting:
 *
 *   off      `observability: false` (no spans, no metrics, no wrappers);
 *   default  the default: Prometheus metrics on, tracing through the OpenTelemetry API with no SDK
 *            registered (no-op spans);
 *   sampled  metrics + an OpenTelemetry SDK sampling 10 % of the traces (ParentBased ratio 0.1;
 *            the trace context still travels with every record);
 *   full     metrics + an OpenTelemetry SDK recording every span (BasicTracerProvider, always-on
 *            sampling, BatchSpanProcessor) into an exporter that drops them (export cost aside).
 *
 * Then the same settings in a long-running process (embedded only): chain_steady (8 rounds of the
 * chains back to back, ended tasks purged) in a fresh process per setting, 3 in turns, each
 * reporting the median of its rounds after the first — what a coordinator that runs for hours pays,
 * where the chain bench's timed part is the first seconds of a process.
 *
 * A fresh process per run: in one process the settings' runs share a heap, and the garbage and
 * the heap growth of one run land in the next (the same setting measured 3.5 % and 11 % over off
 * in two runs of the earlier in-process rounds). Only the SDK settings load the SDK.
 *
 * After the rounds, the per-node work is also replayed in tight loops, the settings in turns
 * (bench/observability-cost.ts), which the load of a shared machine barely moves. Reports, per
 * setting, the median node runs/s and the median CPU time per node run (process CPU, user +
 * system, of the timed part), the median of each round's overhead against the off run of the same
 * round (paired), the best of each, and the overheads relative to `off` by each measure.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { ObservabilityOptions } from 'flowkit'
import { benchInChild, resultOf } from './child.ts'
import { emit, log, percentile, round, type Result } from './stats.ts'

export const SETTINGS = ['off', 'default', 'sampled', 'full'] as const
/** Processes per setting of the long-running (chain_steady) comparison. */
const STEADY_ROUNDS = 3
export type Setting = (typeof SETTINGS)[number]

export interface ChainObservabilityOptions {
  real: boolean
  logLevel: string
  tasks: number
  concurrency: number
  rounds: number
}

/** The runtime's observability option for `s`, and the count of spans its SDK exported so far. */
export async function observabilitySetting(s: Setting): Promise<{ observability: ObservabilityOptions | false | undefined; spans: () => Promise<number | null> }> {
  if (s === 'off') return { observability: false, spans: async () => null }
  if (s === 'default') return { observability: undefined, spans: async () => null }
  // Loaded by the SDK settings only: its code and data are part of what using it costs.
  const sdk = await import('@opentelemetry/sdk-trace-base')
  let exported = 0
  const exporter = {
    export(spans: unknown[], done: (r: { code: 0 }) => void): void {
      exported += spans.length
      done({ code: 0 })
    },
    async shutdown(): Promise<void> {},
    async forceFlush(): Promise<void> {},
  }
  const provider = new sdk.BasicTracerProvider({
    ...(s === 'sampled' ? { sampler: new sdk.ParentBasedSampler({ root: new sdk.TraceIdRatioBasedSampler(0.1) }) } : {}),
    spanProcessors: [new sdk.BatchSpanProcessor(exporter, { maxQueueSize: 65_536, maxExportBatchSize: 2048 })],
  })
  return {
    observability: { tracing: provider },
    spans: async () => {
      await provider.forceFlush()
      return exported
    },
  }
}

/**
 * chain_steady (one long-running process: 8 rounds of the chains back to back, ended tasks purged)
 * in a fresh process under setting `s`: the median CPU per node run and node runs/s of its rounds
 * after the first (the part a long-running coordinator lives in; embedded only).
 */
async function steadyIn(s: Setting, o: ChainObservabilityOptions, dir: string, n: number): Promise<{ cpu: number; rate: number }> {
  const out = join(dir, `steady-${s}-${n}.json`)
  const args = ['--only', 'chain_steady', '--chain-observability', s, '--chain-tasks', String(o.tasks), '--log-level', o.logLevel, '--out', out]
  const r = resultOf(await benchInChild('run.ts', args, out), 'chain_steady', `chain_steady under ${s}`)
  const later = <T>(xs: T[]): T[] => xs.slice(1)
  return { cpu: percentile(later(r['rounds_cpu_us_per_node_run'] as number[]), 50), rate: percentile(later(r['rounds_node_runs_per_s'] as number[]), 50) }
}

/** One chain bench in a fresh process under setting `s`: its result line. */
async function chainIn(s: Setting, o: ChainObservabilityOptions, dir: string, n: number): Promise<Result> {
  const out = join(dir, `${s}-${n}.json`)
  const args = ['--only', 'chain', '--chain-observability', s, '--chain-tasks', String(o.tasks), '--log-level', o.logLevel, '--out', out]
  if (o.real) args.push('--real')
  return resultOf(await benchInChild('run.ts', args, out), 'chain', `chain under ${s}`)
}

export async function chainObservability(o: ChainObservabilityOptions): Promise<Result> {
  const rates: Record<Setting, number[]> = { off: [], default: [], sampled: [], full: [] }
  const cpu: Record<Setting, number[]> = { off: [], default: [], sampled: [], full: [] }
  const spans: Record<Setting, number> = { off: 0, default: 0, sampled: 0, full: 0 }
  let kind = 'memory'
  const dir = mkdtempSync(join(tmpdir(), 'flowkit-bench-obs-'))
  try {
    for (let r = 1; r <= o.rounds; r++) {
      for (let i = 0; i < SETTINGS.length; i++) {
        const s = SETTINGS[(i + r - 1) % SETTINGS.length] as Setting
        const res = await chainIn(s, o, dir, r)
        kind = res.runtime as string
        rates[s].push(res['node_runs_per_s'] as number)
        cpu[s].push(res['cpu_us_per_node_run'] as number)
        spans[s] += (res['spans_exported'] as number | undefined) ?? 0
        log(`chain_observability: round ${r}/${o.rounds} ${s}: ${String(res['node_runs_per_s'])} node runs/s, ${String(res['cpu_us_per_node_run'])} µs CPU per node run`)
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
  // The same settings in a long-running process (embedded only): rounds in turns, the order rotating.
  const steadyCpu: Record<Setting, number[]> = { off: [], default: [], sampled: [], full: [] }
  const steadyRate: Record<Setting, number[]> = { off: [], default: [], sampled: [], full: [] }
  if (!o.real) {
    const sdir = mkdtempSync(join(tmpdir(), 'flowkit-bench-obs-steady-'))
    try {
      for (let r = 1; r <= STEADY_ROUNDS; r++) {
        for (let i = 0; i < SETTINGS.length; i++) {
          const s = SETTINGS[(i + r - 1) % SETTINGS.length] as Setting
          const m = await steadyIn(s, o, sdir, r)
          steadyCpu[s].push(m.cpu)
          steadyRate[s].push(m.rate)
          log(`chain_observability: steady round ${r}/${STEADY_ROUNDS} ${s}: ${m.rate} node runs/s, ${m.cpu} µs CPU per node run`)
        }
      }
    } finally {
      rmSync(sdir, { recursive: true, force: true })
    }
  }
  const steadyOverhead = (s: Setting): Record<string, number> =>
    o.real
      ? {}
      : {
          [`steady_${s}_cpu_us_per_node_run`]: percentile(steadyCpu[s], 50),
          [`steady_${s}_node_runs_per_s`]: percentile(steadyRate[s], 50),
          ...(s === 'off'
            ? {}
            : {
                [`steady_cpu_overhead_${s}_pct`]: round((percentile(steadyCpu[s], 50) / percentile(steadyCpu.off, 50) - 1) * 100, 1),
                [`steady_overhead_${s}_pct`]: round((1 - percentile(steadyRate[s], 50) / percentile(steadyRate.off, 50)) * 100, 1),
              }),
        }
  const { observabilityCostPerNode } = await import('./observability-cost.ts')
  const cost = await observabilityCostPerNode()
  const median = (s: Setting): number => percentile(rates[s], 50)
  const medianCpu = (s: Setting): number => percentile(cpu[s], 50)
  const overhead = (s: Setting): number => round((1 - median(s) / median('off')) * 100, 1)
  const cpuOverhead = (s: Setting): number => round((medianCpu(s) / medianCpu('off') - 1) * 100, 1)
  // Paired: each round's setting against the off run of the same round (run next to it, so a
  // drift of the machine's speed between rounds cancels out), then the median of those.
  const paired = (s: Setting): number => round(percentile(rates[s].map((r, i) => (1 - r / (rates.off[i] as number)) * 100), 50), 1)
  const pairedCpu = (s: Setting): number => round(percentile(cpu[s].map((c, i) => (c / (cpu.off[i] as number) - 1) * 100), 50), 1)
  const best = (s: Setting): number => Math.max(...rates[s])
  const bestCpu = (s: Setting): number => Math.min(...cpu[s])
  const bySetting = <T>(f: (s: Setting) => T, name: (s: Setting) => string): Record<string, T> => Object.fromEntries(SETTINGS.map((s) => [name(s), f(s)]))
  const others = SETTINGS.filter((s) => s !== 'off')
  const byOther = <T>(f: (s: Setting) => T, name: (s: Setting) => string): Record<string, T> => Object.fromEntries(others.map((s) => [name(s), f(s)]))
  return emit({
    bench: 'chain_observability',
    runtime: kind,
    method: 'a fresh process per round and setting (the chain bench: warm-up, then the timed chains)',
    tasks: o.tasks,
    rounds: o.rounds,
    ...bySetting(median, (s) => `${s}_node_runs_per_s`),
    ...byOther(overhead, (s) => `overhead_${s}_pct`),
    ...bySetting(medianCpu, (s) => `${s}_cpu_us_per_node_run`),
    ...byOther(cpuOverhead, (s) => `cpu_overhead_${s}_pct`),
    ...byOther(paired, (s) => `paired_overhead_${s}_pct`),
    ...byOther(pairedCpu, (s) => `paired_cpu_overhead_${s}_pct`),
    best_off_cpu_us_per_node_run: bestCpu('off'),
    ...bySetting(best, (s) => `best_${s}_node_runs_per_s`),
    ...byOther((s) => round((1 - best(s) / best('off')) * 100, 1), (s) => `best_overhead_${s}_pct`),
    ...byOther((s) => round((bestCpu(s) / bestCpu('off') - 1) * 100, 1), (s) => `best_cpu_overhead_${s}_pct`),
    rounds_node_runs_per_s: rates,
    rounds_cpu_us_per_node_run: cpu,
    // chain_steady per setting, fresh processes in turns: the medians of their rounds after the first.
    ...Object.assign({}, ...SETTINGS.map(steadyOverhead)),
    ...(o.real ? {} : { steady_rounds: STEADY_ROUNDS, steady_rounds_cpu_us_per_node_run: steadyCpu }),
    // The same comparison from the replayed per-node work (bench/observability-cost.ts): µs per
    // node run, and as a share of the CPU per node run with observability off (best run).
    ...cost,
    ...byOther((s) => round(((cost[`${s}_obs_us_per_node_run`] ?? 0) / bestCpu('off')) * 100, 1), (s) => `replay_overhead_${s}_pct`),
    // Spans the SDK settings exported, warm-ups included: every span with `full` (a task span, and
    // an attempt span and a run span per node run), about a tenth of that with `sampled`.
    spans_exported: spans.full,
    sampled_spans_exported: spans.sampled,
    spans_expected_at_least: o.rounds * (o.tasks + 2 * o.tasks * 3),
  })
}
