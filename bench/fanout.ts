/**
 * fanout: one task of W independent no-op nodes (worker concurrency 32), for each width W →
 * node runs/s per width (the median of up to 9 such tasks run in turn, so that each width covers
 * about 2,000 node runs), and the ratio of the widest to the narrowest (1.0 = cost per node does
 * not grow with the width of the task; well below 1 = per-event work grows with the task).
 */
import { methodTable, perNodeRun, resetCounters } from './counting.ts'
import { noop, withRuntime } from './runtime.ts'
import { emit, log, percentile, rate, round, type Result } from './stats.ts'
import { TerminalTracker } from './terminal.ts'

/** Node runs each width covers at least (in tasks of that width), up to MAX_REPS tasks. */
const NODE_RUNS_PER_WIDTH = 2000
const MAX_REPS = 9

export interface FanoutOptions {
  real: boolean
  logLevel: string
  widths: number[]
  concurrency: number
}

export async function fanout(o: FanoutOptions): Promise<Result> {
  return withRuntime({ real: o.real, logLevel: o.logLevel, handlers: { a: noop }, concurrency: o.concurrency }, async ({ coordinator: c, counters, kind }) => {
    // Warm-up: a small fan-out so topics, groups and connections exist before timing.
    const w = await c.createTask({ graph: { nodes: [{ node_id: 'w0', type: 'a' }, { node_id: 'w1', type: 'a' }] } })
    if ((await c.waitForTask(w, { timeoutMs: 120_000 })).status !== 'finished') throw new Error('fanout warm-up failed')
    const perWidth: Record<string, unknown>[] = []
    for (const width of o.widths) {
      // A narrow task lasts a few milliseconds embedded: one pause (a major collection, a timer)
      // would decide its number. Each width runs `reps` tasks in turn; the median counts.
      const reps = Math.min(MAX_REPS, Math.ceil(NODE_RUNS_PER_WIDTH / width))
      resetCounters(counters)
      const rates: number[] = []
      let totalMs = 0
      for (let r = 0; r < reps; r++) {
        const tracker = new TerminalTracker()
        try {
          const t0 = performance.now()
          const id = await c.createTask({ graph: { nodes: Array.from({ length: width }, (_, i) => ({ node_id: `n${i}`, type: 'a' })) } })
          const [v] = await tracker.waitAll(c, [id], { timeoutMs: o.real ? 600_000 : 300_000, pollMs: 1000 })
          const ms = (tracker.at.get(id) as number) - t0
          if (v?.status !== 'finished') throw new Error(`fanout ${width}: task ${v?.status}`)
          rates.push(rate(width, ms))
          totalMs += ms
        } finally {
          tracker.close()
        }
      }
      const entry = {
        width,
        tasks: reps,
        seconds: round(totalMs / 1000 / reps, 3),
        node_runs_per_s: round(percentile(rates, 50), 1),
        node_runs_per_s_min: round(Math.min(...rates), 1),
        node_runs_per_s_max: round(Math.max(...rates), 1),
        ...perNodeRun(counters, width * reps),
        calls: methodTable(counters),
      }
      log(`fanout: width ${width}: ${entry.node_runs_per_s} node runs/s (median of ${reps})`)
      perWidth.push(entry)
    }
    const first = perWidth[0] as { width: number; node_runs_per_s: number }
    const last = perWidth[perWidth.length - 1] as { width: number; node_runs_per_s: number }
    return emit({
      bench: 'fanout',
      runtime: kind,
      concurrency: o.concurrency,
      widths: perWidth,
      [`ratio_w${last.width}_over_w${first.width}`]: round(last.node_runs_per_s / first.node_runs_per_s, 3),
      ratio_widest_over_narrowest: round(last.node_runs_per_s / first.node_runs_per_s, 3),
    })
  })
}
