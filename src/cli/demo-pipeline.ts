/**
 * The demo pipeline (`flowkit demo`, `npm start`) on the embedded runtime: read a CSV shipped in examples/data, enrich its rows
 * in a streaming stage that starts on the first upstream batch, aggregate per region in a sink
 * that pulls the enriched batches, and total the revenue with a coordinator function.
 *
 *   extract (csv_reader) ──on_batch──▶ enrich (enricher, rechunk 40 rows) ──▶ report (reporter)
 *                                                                      └──▶ total (metrics.aggregate)
 */
import { readFile } from 'node:fs/promises'
import type { RoleHandler } from '../worker/handler.ts'

export interface Row {
  order_id: number
  region: string
  product: string
  qty: number
  unit_price: number
}

export function parseCsv(text: string): Row[] {
  const [header, ...lines] = text.trim().split(/\r?\n/)
  const cols = (header ?? '').split(',')
  return lines.map((line) => {
    const cells = line.split(',')
    const rec = Object.fromEntries(cols.map((c, i) => [c, cells[i] ?? '']))
    return {
      order_id: Number(rec['order_id']),
      region: String(rec['region']),
      product: String(rec['product']),
      qty: Number(rec['qty']),
      unit_price: Number(rec['unit_price']),
    }
  })
}

/** Reads the CSV named by input_inline.path and emits it in batches of input_inline.batch_size rows. */
export const csvReader: RoleHandler = {
  async loadInput(_ref, inline) {
    const path = String(inline?.['path'] ?? '')
    if (path === '') throw new TypeError('csv_reader needs input_inline.path')
    return { rows: parseCsv(await readFile(path, 'utf8')), batchSize: Number(inline?.['batch_size'] ?? 25) }
  },
  async *iterBatches(loaded) {
    const { rows, batchSize } = loaded as { rows: Row[]; batchSize: number }
    for (let i = 0; i < rows.length; i += batchSize) {
      yield { batch_uid: `rows-${i}`, payload: { rows: rows.slice(i, i + batchSize) } }
    }
  },
  async processBatch(batch, ctx) {
    await ctx.sleep(15) // pretend reading takes a moment, so the streaming overlap is visible
    const rows = batch.payload['rows'] as Row[]
    return { meta: { rows }, metrics: { rows: rows.length } }
  },
}

/** Adds revenue to each row of a rechunked batch. */
export const enricher: RoleHandler = {
  async processBatch(batch, ctx) {
    await ctx.sleep(20)
    const rows = (batch.payload['items'] as Row[]).map((r) => ({ ...r, revenue: Math.round(r.qty * r.unit_price * 100) / 100 }))
    const revenue = rows.reduce((s, r) => s + r.revenue, 0)
    return { meta: { rows }, metrics: { rows: rows.length, revenue: Math.round(revenue * 100) / 100 } }
  },
}

/** Totals revenue per region over every enriched batch it pulls. */
export function reporter(): RoleHandler {
  const byRun = new Map<string, Record<string, { orders: number; revenue: number }>>()
  return {
    async processBatch(batch, ctx) {
      const key = `${ctx.taskId}:${ctx.attemptEpoch}`
      const totals = byRun.get(key) ?? {}
      byRun.set(key, totals)
      const rows = ((batch.payload['meta'] as { rows?: (Row & { revenue: number })[] }).rows ?? [])
      for (const r of rows) {
        const t = totals[r.region] ?? { orders: 0, revenue: 0 }
        totals[r.region] = t
        t.orders++
        t.revenue = Math.round((t.revenue + r.revenue) * 100) / 100
      }
      return { metrics: { rows: rows.length } }
    },
    async finalize(ctx) {
      const key = `${ctx.taskId}:${ctx.attemptEpoch}`
      const totals = byRun.get(key) ?? {}
      byRun.delete(key)
      return { meta: { by_region: totals } }
    },
  }
}

export function salesGraph(csvPath: string): Record<string, unknown> {
  return {
    nodes: [
      { node_id: 'extract', type: 'csv_reader', io: { input_inline: { path: csvPath, batch_size: 25 } } },
      {
        node_id: 'enrich',
        type: 'enricher',
        depends_on: ['extract'],
        io: {
          start_when: 'first_batch',
          input_inline: {
            input_adapter: 'pull.from_artifacts.rechunk:size',
            input_args: { from_nodes: ['extract'], size: 40, meta_list_key: 'rows', poll_ms: 20 },
          },
        },
      },
      {
        node_id: 'report',
        type: 'reporter',
        depends_on: ['enrich'],
        io: { input_inline: { input_adapter: 'pull.from_artifacts', input_args: { from_nodes: ['enrich'], poll_ms: 20 } } },
      },
      {
        node_id: 'total',
        type: 'coordinator_fn',
        depends_on: ['enrich'],
        io: { fn: 'metrics.aggregate', fn_args: { from_nodes: ['enrich'], metric: 'revenue', mode: 'sum' } },
      },
    ],
    edges_ex: [{ from: 'extract', to: 'enrich', mode: 'async', trigger: 'on_batch' }],
  }
}
