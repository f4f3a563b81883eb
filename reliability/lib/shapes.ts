/**
 * The graphs of the workload and what every finished task must show. Two shapes, both with a
 * coordinator function last (`count`: vars.incr runs += 1, applied exactly once):
 *
 *   pipeline (4 nodes, streaming):
 *     src (rel_src: B batches of I items) ──on_batch──▶ map (rel_map, first_batch, pull.from_artifacts)
 *       ──▶ sink (rel_sink, pull.from_artifacts.rechunk:R) ──▶ count
 *
 *   diamond (5 nodes, each worker node starts once the nodes it depends on finished):
 *     src ──▶ left  ──┐
 *         └─▶ right ──┴─▶ join ──▶ count
 *   Its four worker nodes are generators (rel_src: B batches of I items each, no input read):
 *   many tasks at once, each node's metrics and artifacts still exact. (Pulling upstream artifacts
 *   does not scale to hundreds of tasks on FerretDB 1.x: every poll scans the artifacts collection.)
 *
 * The node that fails a task meant to fail (PermanentError `planned_failure` at its second batch,
 * or its only one) is `map` in the pipeline, `left` in the diamond.
 */
export type Shape = 'pipeline' | 'diamond'

export interface ShapeParams {
  shape?: Shape
  batches: number
  items: number
  rechunk: number
  /** Per batch, every worker node sleeps this long (so faults land on running nodes). */
  delayMs: number
}

export type TaskKind = 'ok' | 'fail' | 'cancel'

/** What one finished worker node must show: its stats and its partial artifacts (each holding `items` in all). */
export interface NodeExpect {
  items: number
  sum: number
  partials: number
}

export interface Expected {
  /** Per worker node of the shape. */
  nodes: Record<string, NodeExpect>
  /** The node that fails the tasks meant to fail. */
  failNode: string
}

/** The worker nodes (not the coordinator function) of a shape. */
export function workerNodes(shape: Shape = 'pipeline'): string[] {
  return shape === 'diamond' ? ['src', 'left', 'right', 'join'] : ['src', 'map', 'sink']
}

export function expected(w: ShapeParams): Expected {
  const n = w.batches * w.items
  const srcSum = (n * (n - 1)) / 2
  const src = { items: n, sum: srcSum, partials: w.batches }
  const doubled = { items: n, sum: 2 * srcSum, partials: w.batches }
  if (w.shape === 'diamond') return { failNode: 'left', nodes: { src, left: src, right: src, join: src } }
  return { failNode: 'map', nodes: { src, map: doubled, sink: { items: n, sum: 2 * srcSum, partials: Math.ceil(n / w.rechunk) } } }
}

const RETRY = { max: 40, backoff_sec: 0.3 }

const COUNT = (after: string): Record<string, unknown> => ({ node_id: 'count', type: 'coordinator_fn', depends_on: [after], io: { fn: 'vars.incr', fn_args: { key: 'runs', by: 1 } } })

/** A generator node: B batches of I items; `fail`: a PermanentError at its second batch (its only one when B = 1). */
function src(w: ShapeParams, id = 'src', dependsOn: string[] = [], fail = false): Record<string, unknown> {
  const inline: Record<string, unknown> = { batches: w.batches, items: w.items, delay_ms: w.delayMs }
  if (fail) inline['fail_at'] = Math.min(1, w.batches - 1)
  return { node_id: id, type: 'rel_src', ...(dependsOn.length > 0 ? { depends_on: dependsOn } : {}), io: { input_inline: inline }, retry_policy: RETRY }
}

function sink(w: ShapeParams, id: string, from: string[]): Record<string, unknown> {
  return {
    node_id: id,
    type: 'rel_sink',
    depends_on: from,
    io: {
      input_inline: {
        input_adapter: 'pull.from_artifacts.rechunk:size',
        input_args: { from_nodes: from, size: w.rechunk, meta_list_key: 'items', poll_ms: 50, delay_ms: w.delayMs },
      },
    },
    retry_policy: RETRY,
  }
}

function pipeline(w: ShapeParams, kind: TaskKind): unknown {
  const mapArgs: Record<string, unknown> = { from_node: 'src', poll_ms: 50, delay_ms: w.delayMs }
  if (kind === 'fail') mapArgs['fail_at'] = 1
  return {
    nodes: [
      src(w),
      { node_id: 'map', type: 'rel_map', depends_on: ['src'], io: { start_when: 'first_batch', input_inline: { input_adapter: 'pull.from_artifacts', input_args: mapArgs } }, retry_policy: RETRY },
      sink(w, 'sink', ['map']),
      COUNT('sink'),
    ],
    edges_ex: [{ from: 'src', to: 'map', mode: 'async', trigger: 'on_batch' }],
  }
}

function diamond(w: ShapeParams, kind: TaskKind): unknown {
  // A task to cancel runs for a few seconds (its cancel, sent 1.5 s after it, finds it running),
  // also when the other tasks have no delay.
  const v = kind === 'cancel' ? { ...w, delayMs: Math.max(w.delayMs, 1000) } : w
  return { nodes: [src(v), src(v, 'left', ['src'], kind === 'fail'), src(v, 'right', ['src']), src(v, 'join', ['left', 'right']), COUNT('join')] }
}

export function graphOf(w: ShapeParams, kind: TaskKind): unknown {
  return w.shape === 'diamond' ? diamond(w, kind) : pipeline(w, kind)
}
