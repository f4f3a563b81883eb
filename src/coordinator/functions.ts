/**
 * Coordinator functions: nodes of type `coordinator_fn` that run in the coordinator, inside the
 * task's single writer, without a worker. A function returns what the node produced; the
 * coordinator writes it as the node's complete artifact and stats.
 */
import type { Logger } from '../log.ts'
import type { ArtifactDoc, NodeState, Store, TaskDoc } from '../ports/store.ts'
import { countingAttempt } from '../ports/store-rules.ts'
import type { NodeSpec } from '../graph/types.ts'
import { PermanentError } from '../errors.ts'
import { closest } from '../graph/parse-context.ts'
import { varsIncr, varsMerge, varsSet, varsUnset } from './vars.ts'

export interface CoordinatorFnContext {
  /**
   * The task as it is when the function starts: the function's own copy (the graph aside, which
   * is frozen), so changing it in place changes nothing of the task. A function changes the task
   * by what it returns (`vars`, `stats`, `nodeStats`).
   */
  task: TaskDoc
  node: NodeSpec
  args: Record<string, unknown>
  store: Store
  now: number
  log: Logger
  /**
   * Aborted once this attempt no longer counts — it passed its `timeout_sec` (its retry runs), the
   * task or node is cancelled, the task ended, the coordinator stops: a function that waits on
   * something (an HTTP call) should stop then; what it returns afterwards is ignored.
   */
  signal: AbortSignal
}

export interface CoordinatorFnResult {
  /** Meta of the node's complete artifact. */
  meta?: Record<string, unknown>
  /** Merged into the node's stats. */
  stats?: Record<string, unknown>
  /** New task variables (replaces coordinator.vars) when set. */
  vars?: Record<string, unknown>
  /** Stats patches for other nodes of the task (metrics.aggregate writes onto a target node). */
  nodeStats?: Record<string, Record<string, unknown>>
}

export type CoordinatorFn = (ctx: CoordinatorFnContext) => Promise<CoordinatorFnResult>

/** `from_nodes` (an id or a list of ids) and `from_node`, as the parser accepts them, without repeats. */
export function fromNodes(args: Readonly<Record<string, unknown>>): string[] {
  const out: string[] = []
  for (const v of [args['from_nodes'], args['from_node']]) {
    if (typeof v === 'string') out.push(v)
    else if (Array.isArray(v)) for (const x of v) if (typeof x === 'string') out.push(x)
  }
  return [...new Set(out)]
}

async function upstreamArtifacts(ctx: CoordinatorFnContext, nodes: string[]): Promise<ArtifactDoc[]> {
  const out: ArtifactDoc[] = []
  for (const nodeId of nodes) {
    const all = countingAttempt(await ctx.store.listArtifacts(ctx.task.id, { nodeId }))
    const partials = all.filter((a) => a.status === 'partial')
    // A node's output is its partial artifacts when it streamed, else its complete artifact.
    out.push(...(partials.length > 0 ? partials : all.filter((a) => a.status === 'complete')))
  }
  return out
}

/** The fields merge.generic writes beside its merged items (its `target.key` cannot be one). */
export const MERGE_SUMMARY_FIELDS: readonly string[] = ['from_nodes', 'count', 'merged_from', 'complete_nodes', 'partial_batches', 'distinct_batch_uids']

/**
 * Merges the upstream artifacts' metas under `target.key` (default "merged") into this node's
 * complete artifact, with the seed's summary fields beside them (`merged_from`, `complete_nodes`,
 * `partial_batches`, `distinct_batch_uids`).
 */
const mergeGeneric: CoordinatorFn = async (ctx) => {
  const nodes = fromNodes(ctx.args)
  if (nodes.length === 0) throw new PermanentError('merge.generic needs from_nodes', 'bad_fn_args')
  const target = ctx.args['target']
  const key =
    target !== null && typeof target === 'object' && typeof (target as Record<string, unknown>)['key'] === 'string'
      ? ((target as Record<string, unknown>)['key'] as string)
      : 'merged'
  // Refused at submission too (fn-args.ts): a function registered under another name reaches here unchecked.
  if (MERGE_SUMMARY_FIELDS.includes(key)) throw new PermanentError(`merge.generic: target.key ${JSON.stringify(key)} is one of its summary fields (${MERGE_SUMMARY_FIELDS.join(', ')})`, 'bad_fn_args')
  const artifacts = await upstreamArtifacts(ctx, nodes)
  const items = artifacts.map((a) => ({ node_id: a.node_id, batch_uid: a.batch_uid, meta: a.meta }))
  const completeNodes: string[] = []
  let partialBatches = 0
  const uids = new Set<string>()
  for (const n of nodes) {
    for (const a of countingAttempt(await ctx.store.listArtifacts(ctx.task.id, { nodeId: n }))) {
      if (a.status === 'complete') completeNodes.push(n)
      else if (a.status === 'partial') {
        partialBatches++
        if (a.batch_uid) uids.add(a.batch_uid)
      }
    }
  }
  return {
    meta: {
      [key]: items,
      from_nodes: nodes,
      count: items.length,
      merged_from: nodes,
      complete_nodes: [...new Set(completeNodes)].sort(),
      partial_batches: partialBatches,
      distinct_batch_uids: uids.size,
    },
    stats: { merged: items.length },
  }
}

/**
 * Aggregates metrics with `mode` sum|mean, in one of two forms:
 * - the seed's `{ node_id, mode }`: every numeric metric of that node's batch rows (sum, or mean
 *   over the rows that carry it), written onto that node's stats;
 * - `{ from_nodes, metric?, mode, target_node?, target_key? }`: one stat (`metric`, default
 *   "count") of several nodes, summed or averaged, written onto `target_node` (default this node)
 *   under `target_key` (default `<metric>_<mode>`).
 */
/** A sum of finite stats that is not finite: refused, as `vars.incr` refuses one. */
const overflow = (metric: string, nodes: readonly string[]): PermanentError =>
  new PermanentError(`metrics.aggregate: the sum of ${JSON.stringify(metric)} over ${nodes.slice(0, 5).join(', ')}${nodes.length > 5 ? ', …' : ''} is not a finite number (overflow)`, 'metric_overflow')

const metricsAggregate: CoordinatorFn = async (ctx) => {
  const mode = ctx.args['mode'] ?? 'sum'
  if (mode !== 'sum' && mode !== 'mean') throw new PermanentError(`metrics.aggregate mode must be sum or mean, got ${String(mode)}`, 'bad_fn_args')
  const single = ctx.args['node_id']
  if (typeof single === 'string' && fromNodes(ctx.args).length === 0) {
    if (!(single in ctx.task.nodes)) throw new PermanentError(`metrics.aggregate: unknown node ${JSON.stringify(single)}`, 'bad_fn_args')
    // Maps: metric names are the workers' keys (`__proto__` too).
    const acc = new Map<string, number>()
    const cnt = new Map<string, number>()
    // The batches the node's stats count, as the coordinator holds them (the journal's truth);
    // the store's rows when the task came without them.
    const counted = (ctx.task as { batches?: Record<string, Record<string, [number, Record<string, unknown>]>> }).batches?.[single]
    const rows = counted !== undefined ? Object.values(counted).map(([, metrics]) => ({ metrics })) : await ctx.store.listBatchMetrics(ctx.task.id, single)
    for (const row of rows) {
      for (const [k, v] of Object.entries(row.metrics)) {
        if (typeof v !== 'number' || !Number.isFinite(v)) continue
        acc.set(k, (acc.get(k) ?? 0) + v)
        cnt.set(k, (cnt.get(k) ?? 0) + 1)
      }
    }
    const out = Object.fromEntries([...acc].map(([k, v]) => [k, mode === 'sum' ? v : v / Math.max(1, cnt.get(k) ?? 1)]))
    for (const [k, v] of Object.entries(out)) if (!Number.isFinite(v)) throw overflow(k, [single])
    const res: CoordinatorFnResult = { meta: { node_id: single, mode, stats: out } }
    if (single === ctx.node.node_id) res.stats = out
    else res.nodeStats = { [single]: out }
    return res
  }
  const nodes = fromNodes(ctx.args)
  if (nodes.length === 0) throw new PermanentError('metrics.aggregate needs node_id or from_nodes', 'bad_fn_args')
  const metric = typeof ctx.args['metric'] === 'string' ? ctx.args['metric'] : 'count'
  const values: number[] = []
  for (const n of nodes) {
    const st = (ctx.task.nodes[n] as NodeState | undefined)?.stats?.[metric]
    if (typeof st === 'number' && Number.isFinite(st)) values.push(st)
  }
  if (values.length === 0) {
    // No node has this stat while they have others: most likely a misspelt metric (the result would be a silent 0).
    const seen = [...new Set(nodes.flatMap((n) => Object.keys((ctx.task.nodes[n] as NodeState | undefined)?.stats ?? {})))]
    if (seen.length > 0) ctx.log.warn('node.fn_metric_missing', { metric, from_nodes: nodes.slice(0, 20), stats: seen.slice(0, 20), did_you_mean: closest(metric, seen) })
  }
  const sum = values.reduce((a, b) => a + b, 0)
  const value = mode === 'sum' ? sum : values.length === 0 ? 0 : sum / values.length
  if (!Number.isFinite(value)) throw overflow(metric, nodes)
  const targetKey = typeof ctx.args['target_key'] === 'string' ? ctx.args['target_key'] : `${metric}_${mode}`
  const targetNode = typeof ctx.args['target_node'] === 'string' ? ctx.args['target_node'] : ctx.node.node_id
  const stat = { [targetKey]: value }
  const res: CoordinatorFnResult = { meta: { [targetKey]: value, from_nodes: nodes, mode, metric } }
  if (targetNode === ctx.node.node_id) res.stats = stat
  else res.nodeStats = { [targetNode]: stat }
  return res
}

export const BUILTIN_FUNCTIONS: Record<string, CoordinatorFn> = {
  noop: async () => ({}),
  'merge.generic': mergeGeneric,
  'metrics.aggregate': metricsAggregate,
  'vars.set': varsSet,
  'vars.merge': varsMerge,
  'vars.incr': varsIncr,
  'vars.unset': varsUnset,
}
