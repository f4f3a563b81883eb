/**
 * `--compare bullmq`: flowkit's chain bench and BullMQ's (bench/bullmq.ts) side by side, in
 * rounds. Each round runs both, each in a fresh process, in turns (flowkit first in odd rounds,
 * BullMQ first in even ones), so a drift of the machine's speed hits both alike. Reports each
 * side's median, its spread, and the median of the per-round ratios (each ratio of two runs made
 * next to each other).
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { benchInChild, resultOf } from './child.ts'
import { emit, log, percentile, round, type Result } from './stats.ts'

export interface PairedOptions {
  real: boolean
  logLevel: string
  chains: number
  concurrency: number
  rounds: number
}

export async function pairedChainBullmq(o: PairedOptions): Promise<Result> {
  const flowkit: number[] = []
  const bullmq: number[] = []
  const ratios: number[] = []
  let runtime = 'memory'
  let bullRuntime = 'bullmq'
  const dir = mkdtempSync(join(tmpdir(), 'flowkit-bench-paired-'))
  try {
    for (let r = 1; r <= o.rounds; r++) {
      const runFlowkit = async (): Promise<number> => {
        const out = join(dir, `chain-${r}.json`)
        const args = ['--only', 'chain', '--chain-tasks', String(o.chains), '--log-level', o.logLevel, '--out', out]
        if (o.real) args.push('--real')
        const res = resultOf(await benchInChild('run.ts', args, out), 'chain', `round ${r}: flowkit chain`)
        runtime = res.runtime
        return res['node_runs_per_s'] as number
      }
      const runBull = async (): Promise<number> => {
        const res = resultOf(await benchInChild('bullmq-proc.ts', [String(o.chains), String(o.concurrency)]), 'bullmq_chain', `round ${r}: bullmq`)
        bullRuntime = res.runtime
        return res['jobs_per_s'] as number
      }
      let f: number
      let b: number
      if (r % 2 === 1) {
        f = await runFlowkit()
        b = await runBull()
      } else {
        b = await runBull()
        f = await runFlowkit()
      }
      flowkit.push(f)
      bullmq.push(b)
      ratios.push(f / b)
      log(`chain vs bullmq: round ${r}/${o.rounds}: flowkit ${f} node runs/s, bullmq ${b} jobs/s, ratio ${round(f / b, 2)}`)
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
  const med = (xs: number[]): number => round(percentile(xs, 50), 1)
  return emit({
    bench: 'chain_vs_bullmq',
    runtime,
    bullmq_runtime: bullRuntime,
    method: 'rounds of two fresh processes run in turns: the flowkit chain bench, then BullMQ (the other way round in even rounds)',
    chains: o.chains,
    concurrency: o.concurrency,
    rounds: o.rounds,
    flowkit_node_runs_per_s: med(flowkit),
    flowkit_min: Math.min(...flowkit),
    flowkit_max: Math.max(...flowkit),
    bullmq_jobs_per_s: med(bullmq),
    bullmq_min: Math.min(...bullmq),
    bullmq_max: Math.max(...bullmq),
    ratio_of_medians: round(percentile(flowkit, 50) / percentile(bullmq, 50), 3),
    paired_ratio_median: round(percentile(ratios, 50), 3),
    rounds_flowkit_node_runs_per_s: flowkit,
    rounds_bullmq_jobs_per_s: bullmq,
    rounds_ratio: ratios.map((x) => round(x, 3)),
  })
}
