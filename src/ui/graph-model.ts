/**
 * What the dashboard draws of a task's graph, and a stored graph turned back into submittable
 * JSON (resubmit).
 *
 * Edge kinds: a child that starts on its parent's first batch (`io.start_when: first_batch`) or an
 * `edges_ex` edge with `mode: async` and `trigger: on_batch` streams (`first_batch` / `on_batch`); any other
 * dependency waits for the parent to end (`ready`). Routing targets are edges of their own
 * (`on_success` / `on_failure`).
 */
import { graphJson } from '../graph/to-json.ts'
import type { GraphSpec, NodeSpec } from '../graph/types.ts'
import type { TaskDoc } from '../ports/store.ts'
import type { CreateTaskInput } from '../coordinator/submit.ts'

export { graphJson }

export type EdgeKind = 'ready' | 'first_batch' | 'on_batch' | 'on_success' | 'on_failure'

export interface GraphEdge {
  from: string
  to: string
  kind: EdgeKind
  /** Where the edge comes from in the graph: depends_on, edges, edges_ex or routing. */
  via: 'depends_on' | 'edges' | 'edges_ex' | 'routing'
  mode?: string
  trigger?: string
}

export interface GraphNode {
  id: string
  type: string
  fan_in: string
  start_when: string
  /** Coordinator function name (type coordinator_fn). */
  fn?: string
  input_adapter?: string
  retry_max?: number
  timeout_sec?: number
  /** The node has a `when` guard on task variables. */
  guarded: boolean
}

export interface GraphModel {
  nodes: GraphNode[]
  edges: GraphEdge[]
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined
}

function nodeOf(n: NodeSpec): GraphNode {
  const inline = n.io.input_inline
  const out: GraphNode = {
    id: n.node_id,
    type: n.type,
    fan_in: n.fan_in_raw,
    start_when: n.io.start_when ?? 'ready',
    guarded: (n.when ?? null) !== null || n.extra['when'] !== undefined,
  }
  const fn = str(n.io.fn)
  if (fn !== undefined) out.fn = fn
  const adapter = inline !== null && inline !== undefined ? str(inline['input_adapter']) : undefined
  if (adapter !== undefined) out.input_adapter = adapter
  if (n.retry_policy !== null) out.retry_max = n.retry_policy.max
  if (n.timeout_sec !== undefined) out.timeout_sec = n.timeout_sec
  return out
}

export function graphModel(graph: GraphSpec): GraphModel {
  const startWhen = new Map(graph.nodes.map((n) => [n.node_id, n.io.start_when ?? 'ready']))
  const byPair = new Map<string, GraphEdge>()
  const plain = (to: string): EdgeKind => (startWhen.get(to) === 'first_batch' ? 'first_batch' : 'ready')
  // edges_ex first: they say the most (mode, trigger); a plain link between the same pair adds nothing.
  for (const e of graph.edges_ex) {
    // (Only an async on_batch edge streams, as the scheduler reads it: graph/deps.ts.)
    const kind: EdgeKind = e.mode === 'async' && e.trigger === 'on_batch' ? 'on_batch' : plain(e.to)
    byPair.set(`${e.from}\u0000${e.to}`, { from: e.from, to: e.to, kind, via: 'edges_ex', mode: e.mode, trigger: e.trigger })
  }
  for (const n of graph.nodes) {
    for (const dep of n.depends_on) {
      const key = `${dep}\u0000${n.node_id}`
      if (!byPair.has(key)) byPair.set(key, { from: dep, to: n.node_id, kind: plain(n.node_id), via: 'depends_on' })
    }
  }
  for (const [from, to] of graph.edges) {
    const key = `${from}\u0000${to}`
    if (!byPair.has(key)) byPair.set(key, { from, to, kind: plain(to), via: 'edges' })
  }
  const edges = [...byPair.values()]
  for (const n of graph.nodes) {
    for (const to of n.routing?.on_success ?? []) edges.push({ from: n.node_id, to, kind: 'on_success', via: 'routing' })
    for (const to of n.routing?.on_failure ?? []) edges.push({ from: n.node_id, to, kind: 'on_failure', via: 'routing' })
  }
  return { nodes: graph.nodes.map(nodeOf), edges }
}

/** The input that submits a stored task again: same graph, params and deadline, a new id. */
export function resubmitInput(task: TaskDoc): CreateTaskInput {
  const input: CreateTaskInput = { params: task.params, graph: graphJson(task.graph) }
  const deadline = task.deadline_at_ms ?? null
  if (deadline !== null) input.deadlineSec = Math.max(1, Math.round((deadline - task.created_at_ms) / 1000))
  return input
}
