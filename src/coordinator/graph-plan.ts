/**
 * What a task runtime derives from its graph alone: the dependency index, node ordinals, and per
 * node its fan-in parents, the children it feeds (and whether it streams into them), the nodes to
 * re-evaluate when it changes, and whether another node pulls its output. Graphs are immutable
 * once a task is built (frozen), and tasks of one DAG share one graph object (submit.ts caches
 * the parsed graph), so the plan is computed once per graph and shared, read-only, by every task.
 */
import { buildDependencyIndex, type DependencyIndex } from '../graph/deps.ts'
import { COORDINATOR_FN_TYPE, type GraphSpec, type NodeSpec } from '../graph/types.ts'

export interface GraphPlan {
  readonly index: DependencyIndex
  readonly ord: ReadonlyMap<string, number>
  /** Per node: its fan-in parents (routing sources excluded). */
  readonly parents: readonly (readonly number[])[]
  /** Per parent: the children whose fan-in counts it, with whether it streams into them. */
  readonly fanout: readonly (readonly { child: number; streaming: boolean }[])[]
  /** Per node: the nodes to re-evaluate when it changes (dependents and routing targets). */
  readonly reeval: readonly (readonly number[])[]
  /** Per node: whether a parent streams into it (`streaming[child]` has the parent's ordinal). */
  readonly streamingInto: readonly ReadonlySet<number>[]
  /** Nodes whose output another node pulls (input adapter `from_nodes`). */
  readonly pulled: ReadonlySet<number>
  /** Per node: the nodes whose output it pulls (its input adapter's `from_nodes` / `from_node`). */
  readonly pullsFrom: readonly ReadonlySet<number>[]
  /** Per node: the nodes that pull its output (the reverse of pullsFrom; a puller need not depend on it). */
  readonly pulledBy: readonly (readonly number[])[]
  /** The worker types of its nodes (coordinator functions aside), each once. */
  readonly workerTypes: readonly string[]
  /**
   * Per node: whether a node that waits for data while it runs (a streaming consumer or a puller)
   * is reachable from it through dependents and pullers — the nodes yield.ts may search from.
   */
  readonly feedsConsumer: readonly boolean[]
}

const PLANS = new WeakMap<GraphSpec, GraphPlan>()

/** The plan of `graph`: cached when the graph is frozen (it cannot change under the cache). */
export function planOf(graph: GraphSpec): GraphPlan {
  const known = PLANS.get(graph)
  if (known !== undefined) return known
  const plan = buildPlan(graph)
  if (Object.isFrozen(graph)) PLANS.set(graph, plan)
  return plan
}

function buildPlan(graph: GraphSpec): GraphPlan {
  const index = buildDependencyIndex(graph)
  const specs = graph.nodes
  const ord = new Map<string, number>()
  specs.forEach((s, i) => {
    ord.set(s.node_id, i)
  })
  const n = specs.length
  const parents: number[][] = []
  const fanout: { child: number; streaming: boolean }[][] = Array.from({ length: n }, () => [])
  const streamingInto: Set<number>[] = []
  const reeval = specs.map((s) => (index.children.get(s.node_id) ?? []).map((c) => ord.get(c) as number))
  for (let i = 0; i < n; i++) {
    const id = (specs[i] as NodeSpec).node_id
    const routed = new Set((index.routedFrom.get(id) ?? []).map((r) => r.source))
    const streaming = index.streamingParents.get(id)
    const ps = (index.parents.get(id) ?? []).filter((p) => !routed.has(p)).map((p) => ord.get(p) as number)
    parents.push(ps)
    const into = new Set<number>()
    for (const p of streaming ?? []) {
      const o = ord.get(p)
      if (o !== undefined) into.add(o)
    }
    streamingInto.push(into)
    for (const p of ps) fanout[p]?.push({ child: i, streaming: into.has(p) })
  }
  const pulled = new Set<number>()
  const pullsFrom = specs.map(() => new Set<number>())
  const pulledBy: number[][] = specs.map(() => [])
  specs.forEach((spec, i) => {
    for (const io of [spec.io.input_inline, spec.io.input_ref]) {
      const args = io !== null && typeof io === 'object' ? (io as Record<string, unknown>)['input_args'] : undefined
      if (args === null || typeof args !== 'object') continue
      for (const key of ['from_nodes', 'from_node']) {
        const v = (args as Record<string, unknown>)[key]
        for (const ref of Array.isArray(v) ? v : [v]) {
          const o = typeof ref === 'string' ? ord.get(ref) : undefined
          if (o === undefined) continue
          pulled.add(o)
          if (!pullsFrom[i]?.has(o)) pulledBy[o]?.push(i)
          pullsFrom[i]?.add(o)
        }
      }
    }
  })
  const workerTypes = [...new Set(specs.filter((n) => n.type !== COORDINATOR_FN_TYPE).map((n) => n.type))]
  const feedsConsumer = consumersBelow(n, reeval, pulledBy, streamingInto, pullsFrom)
  return { index, ord, parents, fanout, reeval, streamingInto, pulled, pullsFrom, pulledBy, workerTypes, feedsConsumer }
}

/**
 * For each node, whether a consumer of some node (streaming into it or pulling it) is reachable
 * from it through dependents and pullers. Iterative (no recursion depth on long chains); a cycle
 * through a pull (allowed: a puller need not depend on what it pulls) counts as reachable.
 */
function consumersBelow(
  n: number,
  reeval: readonly (readonly number[])[],
  pulledBy: readonly (readonly number[])[],
  streamingInto: readonly ReadonlySet<number>[],
  pullsFrom: readonly ReadonlySet<number>[],
): boolean[] {
  const out = new Array<boolean>(n).fill(false)
  const state = new Uint8Array(n) // 0 new, 1 on the stack, 2 done
  const next = Array.from({ length: n }, (_, p) => [...(reeval[p] ?? []), ...(pulledBy[p] ?? [])])
  const at = new Uint32Array(n) // per node on the stack: the next of its children to look at
  for (let root = 0; root < n; root++) {
    if (state[root] !== 0) continue
    const stack: number[] = [root]
    state[root] = 1
    while (stack.length > 0) {
      const p = stack[stack.length - 1] as number
      const children = next[p] as number[]
      const i = at[p] as number
      if (i < children.length) {
        at[p] = i + 1
        const c = children[i] as number
        if (state[c] === 0) {
          state[c] = 1
          stack.push(c)
        }
        continue
      }
      stack.pop()
      state[p] = 2
      out[p] = children.some((c) => streamingInto[c]?.has(p) === true || pullsFrom[c]?.has(p) === true || out[c] === true || state[c] === 1)
    }
  }
  return out
}
