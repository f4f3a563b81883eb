/**
 * The dashboard on the embedded runtime (memory bus + memory store, a coordinator and a worker in
 * this process), with handlers a test can hold: `ticker` emits batches at a steady pace and waits
 * at its last batch until the test opens `hold`; `stream` processes what it pulls from an upstream
 * node as it arrives (start_when first_batch); `sink` finishes at once.
 */
import type { RoleHandler } from 'flowkit'
import { type Gate, gate } from '../helpers/gate.ts'
import { type Runtime, startRuntime } from '../helpers/runtime.ts'
import { type Dashboard, type DashboardOptions, startDashboard } from '../../src/ui/server.ts'

export interface UiRuntime {
  rt: Runtime
  dashboard: Dashboard
  /** The ticker's last batch waits for this. */
  hold: Gate
  stop(): Promise<void>
}

export function tickerHandler(hold: () => Gate, batches = 6, everyMs = 80): RoleHandler {
  return {
    async *iterBatches() {
      for (let i = 0; i < batches; i++) yield { batch_uid: `b${i}`, payload: { items: [i * 2, i * 2 + 1], last: i === batches - 1 } }
    },
    async processBatch(batch, ctx) {
      await ctx.sleep(everyMs)
      if (batch.payload['last'] === true) await hold().wait(ctx.signal)
      const items = batch.payload['items'] as number[]
      return { meta: { items }, metrics: { rows: items.length } }
    },
  }
}

export function streamHandler(everyMs = 40): RoleHandler {
  return {
    async processBatch(batch, ctx) {
      await ctx.sleep(everyMs)
      const items = ((batch.payload['meta'] as { items?: number[] } | undefined)?.items ?? []) as number[]
      return { meta: { doubled: items.map((n) => n * 2) }, metrics: { rows: items.length } }
    },
  }
}

export function sinkHandler(): RoleHandler {
  return {
    async processBatch() {
      return { metrics: { written: 1 } }
    },
  }
}

/** ticker → (first_batch, pulls its artifacts) stream → sink; a coordinator fn sums the rows. */
export function demoGraph(): Record<string, unknown> {
  return {
    nodes: [
      { node_id: 'extract', type: 'ticker' },
      {
        node_id: 'transform',
        type: 'stream',
        depends_on: ['extract'],
        io: { start_when: 'first_batch', input_inline: { input_adapter: 'pull.from_artifacts', input_args: { from_nodes: ['extract'], poll_ms: 20 } } },
      },
      { node_id: 'load', type: 'sink', depends_on: ['transform'] },
      { node_id: 'count', type: 'coordinator_fn', depends_on: ['transform'], io: { fn: 'metrics.aggregate', fn_args: { from_nodes: ['transform'], metric: 'rows', mode: 'sum' } } },
    ],
    edges_ex: [{ from: 'extract', to: 'transform', mode: 'async', trigger: 'on_batch' }],
  }
}

export async function startUi(options: Partial<DashboardOptions> & { batches?: number; everyMs?: number } = {}): Promise<UiRuntime> {
  let hold = gate()
  const rt = await startRuntime({
    handlers: { ticker: tickerHandler(() => hold, options.batches, options.everyMs), stream: streamHandler(), sink: sinkHandler() },
    worker: { concurrency: 4, workerId: 'ui-worker-1' },
  })
  let dashboard: Dashboard
  try {
    dashboard = await startDashboard({ coordinator: rt.coordinator, store: rt.store, port: 0, progressMs: 300, refreshMs: 300, ...options })
  } catch (err) {
    await rt.stop()
    throw err
  }
  return {
    rt,
    dashboard,
    get hold() {
      return hold
    },
    set hold(g: Gate) {
      hold = g
    },
    async stop() {
      hold.open()
      await dashboard.close()
      await rt.stop()
    },
  }
}
