/**
 * The handlers of the reliability workload. Their outputs are known in advance, so every total can
 * be checked exactly, and each batch appends one effect line (task, node, epoch, batch uid, worker
 * id, pid) to the worker's effects file before it returns: the record of a side effect.
 *
 * - `rel_src`: `batches` batches of `items` consecutive integers (batch b holds b*items ..); with
 *   `fail_at` in its input, a PermanentError (`planned_failure`) at that batch index.
 * - `rel_map`: doubles the items of each upstream partial (pull.from_artifacts); throws a
 *   PermanentError (`planned_failure`) at batch index `fail_at` when the task is meant to fail.
 * - `rel_sink`: counts and sums rechunked items.
 * Every batch reports `{ items, sum }` and sleeps `delay_ms` on the worker's clock first.
 */
import { appendFileSync } from 'node:fs'
import { PermanentError, type Batch, type RoleHandler, type RunContext } from 'flowkit'

export interface EffectLine {
  task: string
  node: string
  epoch: number
  batch: string
  worker: string
  pid: number
  t: number
}

function num(v: unknown, fallback: number): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : fallback
}

function args(ctx: RunContext): Record<string, unknown> {
  const inline = ctx.inputInline ?? {}
  const a = inline['input_args']
  return a !== null && typeof a === 'object' && !Array.isArray(a) ? (a as Record<string, unknown>) : inline
}

function itemsOf(batch: Batch): number[] {
  const direct = batch.payload['items']
  if (Array.isArray(direct)) return direct as number[]
  const meta = batch.payload['meta'] as { items?: unknown } | undefined
  return Array.isArray(meta?.items) ? (meta.items as number[]) : []
}

export function relHandlers(effectsFile: string): Record<string, RoleHandler> {
  const effect = (ctx: RunContext, batchUid: string): void => {
    const line: EffectLine = { task: ctx.taskId, node: ctx.nodeId, epoch: ctx.attemptEpoch, batch: batchUid, worker: ctx.workerId, pid: process.pid, t: Date.now() }
    appendFileSync(effectsFile, `${JSON.stringify(line)}\n`)
  }
  const step = async (batch: Batch, ctx: RunContext, transform: (items: number[]) => number[], index: number | null) => {
    const a = args(ctx)
    await ctx.sleep(num(a['delay_ms'], 0))
    ctx.throwIfCancelled()
    effect(ctx, String(batch.batch_uid))
    const failAt = a['fail_at']
    if (typeof failAt === 'number' && index !== null && index >= failAt) {
      throw new PermanentError(`planned failure at batch ${index}`, 'planned_failure')
    }
    const items = transform(itemsOf(batch))
    return { metrics: { items: items.length, sum: items.reduce((s, x) => s + x, 0) }, meta: { items } }
  }
  return {
    rel_src: {
      async *iterBatches(loaded: unknown) {
        const inline = ((loaded as { input_inline?: Record<string, unknown> } | null)?.input_inline ?? {}) as Record<string, unknown>
        const batches = num(inline['batches'], 1)
        const items = num(inline['items'], 1)
        for (let b = 0; b < batches; b++) {
          yield { batch_uid: `s${b}`, payload: { items: Array.from({ length: items }, (_, i) => b * items + i) } }
        }
      },
      processBatch: (batch, ctx) => step(batch, ctx, (xs) => xs, /^s\d+$/.test(String(batch.batch_uid)) ? Number(String(batch.batch_uid).slice(1)) : null),
    },
    rel_map: (() => {
      // Batch index within the run, for `fail_at` (a run's batches arrive one at a time).
      const seen = new Map<string, number>()
      return {
        async processBatch(batch, ctx) {
          const key = `${ctx.taskId}/${ctx.nodeId}/${ctx.attemptEpoch}`
          const index = seen.get(key) ?? 0
          seen.set(key, index + 1)
          return step(batch, ctx, (xs) => xs.map((x) => x * 2), index)
        },
      } satisfies RoleHandler
    })(),
    rel_sink: {
      processBatch: (batch, ctx) => step(batch, ctx, (xs) => xs, null),
    },
  }
}
