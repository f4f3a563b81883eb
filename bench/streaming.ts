/**
 * streaming: a source of B batches × 10 items → a `first_batch` consumer whose input adapter is
 * `pull.from_artifacts.rechunk:size` (size 10, meta_list_key items, poll_ms 5) → batches/s end to
 * end (source batches + consumer batches, over the task's wall time). The consumer's
 * stats.count must equal B × 10.
 */
import type { RoleHandler } from 'flowkit'
import { perNodeRun, resetCounters } from './counting.ts'
import { withRuntime } from './runtime.ts'
import { emit, rate, round, type Result } from './stats.ts'
import { TerminalTracker } from './terminal.ts'

export interface StreamingOptions {
  real: boolean
  logLevel: string
  batches: number
  batchSize: number
}

export async function streaming(o: StreamingOptions): Promise<Result> {
  const source: RoleHandler = {
    async *iterBatches() {
      for (let b = 0; b < o.batches; b++) {
        yield { batch_uid: `s${b}`, payload: { items: Array.from({ length: o.batchSize }, (_, i) => b * o.batchSize + i) } }
      }
    },
    async processBatch(batch) {
      const items = batch.payload['items'] as number[]
      return { meta: { items }, metrics: { count: items.length } }
    },
  }
  let consumerBatches = 0
  const consumer: RoleHandler = {
    async processBatch(batch) {
      consumerBatches++
      const items = (batch.payload['items'] as unknown[] | undefined) ?? []
      return { metrics: { count: items.length } }
    },
  }
  return withRuntime({ real: o.real, logLevel: o.logLevel, handlers: { src: source, first_batch: consumer }, concurrency: 4 }, async ({ coordinator: c, counters, kind }) => {
    resetCounters(counters)
    const tracker = new TerminalTracker()
    try {
      const t0 = performance.now()
      const id = await c.createTask({
        graph: {
          nodes: [
            { node_id: 'source', type: 'src' },
            {
              node_id: 'consumer',
              type: 'first_batch',
              depends_on: ['source'],
              io: {
                start_when: 'first_batch',
                input_inline: {
                  input_adapter: 'pull.from_artifacts.rechunk:size',
                  input_args: { from_nodes: ['source'], size: o.batchSize, meta_list_key: 'items', poll_ms: 5 },
                },
              },
            },
          ],
        },
      })
      const [t] = await tracker.waitAll(c, [id], { timeoutMs: o.real ? 600_000 : 300_000, pollMs: 1000 })
      const ms = (tracker.at.get(id) as number) - t0
      const items = o.batches * o.batchSize
      const count = t?.nodes.find((n) => n.node_id === 'consumer')?.stats['count']
      if (t?.status !== 'finished' || count !== items) throw new Error(`streaming: task ${t?.status}, consumer count ${String(count)} (want ${items})`)
      const total = o.batches + consumerBatches
      return emit({
        bench: 'streaming',
        runtime: kind,
        source_batches: o.batches,
        consumer_batches: consumerBatches,
        items,
        consumer_count: count,
        count_ok: count === items,
        seconds: round(ms / 1000, 3),
        batches_per_s: rate(total, ms),
        source_batches_per_s: rate(o.batches, ms),
        items_per_s: rate(items, ms),
        ...Object.fromEntries(Object.entries(perNodeRun(counters, total)).map(([k, v]) => [k.replace(/_per_node$/, '_per_batch'), v])),
      })
    } finally {
      tracker.close()
    }
  })
}
