/**
 * fanout: one task of W independent no-op nodes (worker concurrency 32), for each width W →
 * node runs/s per width, and the ratio of the widest to the narrowest (1.0 = cost per node does
 * not grow with the width of the task; well below 1 = per-event work grows with the task).
 */
import { methodTable, perNodeRun, resetCounters } from './counting.ts'
import { noop, withRuntime } from './runtime.ts'
import { emit, log, rate, round, type Result } from './stats.ts'
import { TerminalTracker } from './terminal.ts'

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
      resetCounters(counters)
      const tracker = new TerminalTracker()
      try {
        const t0 = performance.now()
        const id = await c.createTask({ graph: { nodes: Array.from({ length: width }, (_, i) => ({ node_id: `n${i}`, type: 'a' })) } })
        const [v] = await tracker.waitAll(c, [id], { timeoutMs: o.real ? 600_000 : 300_000, pollMs: 1000 })
        const ms = (tracker.at.get(id) as number) - t0
        if (v?.status !== 'finished') throw new Error(`fanout ${width}: task ${v?.status}`)
        const entry = { width, seconds: round(ms / 1000, 3), node_runs_per_s: rate(width, ms), ...perNodeRun(counters, width), calls: methodTable(counters) }
        log(`fanout: width ${width}: ${entry.node_runs_per_s} node runs/s`)
        perWidth.push(entry)
      } finally {
        tracker.close()
      }
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
