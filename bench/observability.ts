/**
 * chain_observability (`--only chain --observability`): what traces and metrics cost on the chain
 * bench, measured in one process, in interleaved rounds (the order rotates each round, so a drift
 * of the machine's load does not favour one setting):
 *
 *   off      `observability: false` (no spans, no metrics, no wrappers);
 *   default  the default: Prometheus metrics on, tracing through the OpenTelemetry API with no SDK
 *            registered (no-op spans);
 *   sampled  metrics + an OpenTelemetry SDK sampling 10 % of the traces (ParentBased ratio 0.1;
 *            the trace context still travels with every record);
 *   full     metrics + an OpenTelemetry SDK recording every span (BasicTracerProvider, always-on
 *            sampling, BatchSpanProcessor) into an exporter that drops them (export cost aside).
 *
 * A first round of each setting warms the process up and is not counted. After the rounds, the
 * per-node work is also replayed in tight loops, the settings in turns (bench/observability-cost.ts),
 * which the load of a shared machine barely moves. Reports, per setting,
 * the median node runs/s and the median CPU time per node run (process CPU, user + system, over
 * the whole round: on a loaded machine it varies less than the wall time), the median of each
 * round's overhead against the off round of the same round (paired), the best of each (the
 * least disturbed round: on a shared machine the closest to the intrinsic cost), and the
 * overheads relative to `off` by each measure.
 */
import { BasicTracerProvider, BatchSpanProcessor, ParentBasedSampler, type ReadableSpan, type SpanExporter, TraceIdRatioBasedSampler } from '@opentelemetry/sdk-trace-base'
import type { ObservabilityOptions } from 'flowkit'
import { chain } from './chain.ts'
import { observabilityCostPerNode } from './observability-cost.ts'
import { emit, log, percentile, round, type Result } from './stats.ts'

export interface ChainObservabilityOptions {
  real: boolean
  logLevel: string
  tasks: number
  concurrency: number
  rounds: number
}

type Setting = 'off' | 'default' | 'sampled' | 'full'
const SETTINGS: readonly Setting[] = ['off', 'default', 'sampled', 'full']

/** Counts the spans handed to it and drops them. */
class DroppingExporter implements SpanExporter {
  spans = 0
  export(spans: ReadableSpan[], done: (r: { code: 0 }) => void): void {
    this.spans += spans.length
    done({ code: 0 })
  }
  async shutdown(): Promise<void> {}
  async forceFlush(): Promise<void> {}
}

export async function chainObservability(o: ChainObservabilityOptions): Promise<Result> {
  const exporter = new DroppingExporter()
  const provider = new BasicTracerProvider({ spanProcessors: [new BatchSpanProcessor(exporter, { maxQueueSize: 65_536, maxExportBatchSize: 2048 })] })
  const sampledExporter = new DroppingExporter()
  const sampledProvider = new BasicTracerProvider({
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(0.1) }),
    spanProcessors: [new BatchSpanProcessor(sampledExporter, { maxQueueSize: 65_536, maxExportBatchSize: 2048 })],
  })
  const settings: Record<Setting, ObservabilityOptions | false | undefined> = { off: false, default: undefined, sampled: { tracing: sampledProvider }, full: { tracing: provider } }
  const rates: Record<Setting, number[]> = { off: [], default: [], sampled: [], full: [] }
  const cpu: Record<Setting, number[]> = { off: [], default: [], sampled: [], full: [] }
  const nodeRuns = o.tasks * 3
  let kind = 'memory'
  for (let round_ = 0; round_ <= o.rounds; round_++) {
    for (let i = 0; i < SETTINGS.length; i++) {
      const s = SETTINGS[(i + round_) % SETTINGS.length] as Setting
      const observability = settings[s]
      const c0 = process.cpuUsage()
      const r = await chain({ real: o.real, logLevel: o.logLevel, tasks: o.tasks, concurrency: o.concurrency, warmUp: 0, ...(observability === undefined ? {} : { observability }) })
      const used = process.cpuUsage(c0)
      kind = r.runtime
      const cpuUs = round((used.user + used.system) / nodeRuns, 1)
      const label = round_ === 0 ? 'warm-up' : `round ${round_}/${o.rounds}`
      log(`chain_observability: ${label} ${s}: ${String(r['node_runs_per_s'])} node runs/s, ${cpuUs} µs CPU per node run`)
      if (round_ === 0) continue
      rates[s].push(r['node_runs_per_s'] as number)
      cpu[s].push(cpuUs)
    }
  }
  for (const p of [provider, sampledProvider]) {
    await p.forceFlush()
    await p.shutdown()
  }
  const cost = await observabilityCostPerNode()
  const median = (s: Setting): number => percentile(rates[s], 50)
  const medianCpu = (s: Setting): number => percentile(cpu[s], 50)
  const overhead = (s: Setting): number => round((1 - median(s) / median('off')) * 100, 1)
  const cpuOverhead = (s: Setting): number => round((medianCpu(s) / medianCpu('off') - 1) * 100, 1)
  // Paired: each round's setting against the off round of the same round (run next to it, so a
  // drift of the machine's speed between rounds cancels out), then the median of those.
  const paired = (s: Setting): number => round(percentile(rates[s].map((r, i) => (1 - r / (rates.off[i] as number)) * 100), 50), 1)
  const pairedCpu = (s: Setting): number => round(percentile(cpu[s].map((c, i) => (c / (cpu.off[i] as number) - 1) * 100), 50), 1)
  const best = (s: Setting): number => Math.max(...rates[s])
  const bestCpu = (s: Setting): number => Math.min(...cpu[s])
  return emit({
    bench: 'chain_observability',
    runtime: kind,
    tasks: o.tasks,
    rounds: o.rounds,
    off_node_runs_per_s: median('off'),
    default_node_runs_per_s: median('default'),
    sampled_node_runs_per_s: median('sampled'),
    full_node_runs_per_s: median('full'),
    overhead_default_pct: overhead('default'),
    overhead_sampled_pct: overhead('sampled'),
    overhead_full_pct: overhead('full'),
    off_cpu_us_per_node_run: medianCpu('off'),
    default_cpu_us_per_node_run: medianCpu('default'),
    sampled_cpu_us_per_node_run: medianCpu('sampled'),
    full_cpu_us_per_node_run: medianCpu('full'),
    cpu_overhead_default_pct: cpuOverhead('default'),
    cpu_overhead_sampled_pct: cpuOverhead('sampled'),
    cpu_overhead_full_pct: cpuOverhead('full'),
    paired_overhead_default_pct: paired('default'),
    paired_overhead_sampled_pct: paired('sampled'),
    paired_overhead_full_pct: paired('full'),
    paired_cpu_overhead_default_pct: pairedCpu('default'),
    paired_cpu_overhead_sampled_pct: pairedCpu('sampled'),
    paired_cpu_overhead_full_pct: pairedCpu('full'),
    best_off_cpu_us_per_node_run: bestCpu('off'),
    best_off_node_runs_per_s: best('off'),
    best_default_node_runs_per_s: best('default'),
    best_sampled_node_runs_per_s: best('sampled'),
    best_full_node_runs_per_s: best('full'),
    best_overhead_default_pct: round((1 - best('default') / best('off')) * 100, 1),
    best_overhead_sampled_pct: round((1 - best('sampled') / best('off')) * 100, 1),
    best_overhead_full_pct: round((1 - best('full') / best('off')) * 100, 1),
    best_cpu_overhead_default_pct: round((bestCpu('default') / bestCpu('off') - 1) * 100, 1),
    best_cpu_overhead_sampled_pct: round((bestCpu('sampled') / bestCpu('off') - 1) * 100, 1),
    best_cpu_overhead_full_pct: round((bestCpu('full') / bestCpu('off') - 1) * 100, 1),
    rounds_node_runs_per_s: rates,
    rounds_cpu_us_per_node_run: cpu,
    // per full round: a task span, plus an attempt span and a run span per node run (and warm-ups)
    // The same comparison from the replayed per-node work (bench/observability-cost.ts): µs per
    // node run, and as a share of the CPU per node run with observability off (best round).
    ...cost,
    replay_overhead_default_pct: round(((cost['default_obs_us_per_node_run'] ?? 0) / bestCpu('off')) * 100, 1),
    replay_overhead_sampled_pct: round(((cost['sampled_obs_us_per_node_run'] ?? 0) / bestCpu('off')) * 100, 1),
    replay_overhead_full_pct: round(((cost['full_obs_us_per_node_run'] ?? 0) / bestCpu('off')) * 100, 1),
    spans_exported: exporter.spans,
    sampled_spans_exported: sampledExporter.spans,
    spans_expected_at_least: (o.rounds + 1) * (o.tasks + 2 * nodeRuns),
  })
}
