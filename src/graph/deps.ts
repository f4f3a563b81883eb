/**
 * Pure dependency helpers for the scheduler, computed once per (validated) graph.
 *
 * Every node id of the graph is a key of every map below (with an empty list / set when it has
 * nothing), so callers never need a fallback. Lists are deduplicated and in a stable order.
 */
import { ErrorCode, GraphValidationError } from '../errors.ts'
import type { GraphSpec, NodeSpec } from './types.ts'

export type RouteBranch = 'success' | 'failure'

export interface RoutedFrom {
  /** The node whose outcome decides whether this one runs. */
  source: string
  /** `success`: listed in the source's `routing.on_success`; `failure`: in `on_failure`. */
  on: RouteBranch
}

export interface DependencyIndex {
  /** Node specs by id. */
  nodes: Map<string, NodeSpec>
  /**
   * Parents of each node: depends_on ∪ edges ∪ edges_ex sources, deduplicated, in that order
   * (depends_on order, then edges order, then edges_ex order). The fan-in counts these.
   */
  parents: Map<string, string[]>
  /**
   * Nodes to re-evaluate when a node changes: its dependents (the nodes it is a parent of) and
   * its routing targets, deduplicated, in graph document order.
   */
  children: Map<string, string[]>
  /**
   * Parents whose batches may start the node early: sources of an `edges_ex` with mode `async`
   * and trigger `on_batch` into it, or every parent when its `io.start_when` is `first_batch`.
   */
  streamingParents: Map<string, Set<string>>
  /** Routing targets → the nodes that route to them and on which branch. */
  routedFrom: Map<string, RoutedFrom[]>
  /**
   * Every node id in an order where each node comes after its parents and its routing sources;
   * among nodes free to go, the earlier in the graph document goes first.
   */
  topoOrder: string[]
}

/**
 * Builds the scheduler's dependency index. The graph is expected to come from `parseGraph`;
 * a reference to an unknown node or a cycle still throws `GraphValidationError`.
 */
export function buildDependencyIndex(graph: GraphSpec): DependencyIndex {
  const nodes = new Map<string, NodeSpec>()
  const position = new Map<string, number>()
  graph.nodes.forEach((node, i) => {
    nodes.set(node.node_id, node)
    if (!position.has(node.node_id)) position.set(node.node_id, i)
  })
  const ids = [...nodes.keys()]
  const requireNode = (id: string, path: string): void => {
    if (!nodes.has(id)) {
      throw new GraphValidationError(ErrorCode.UnknownNode, `${path}: unknown node ${JSON.stringify(id)}`, path, {
        node_id: id,
      })
    }
  }

  const parents = new Map<string, string[]>()
  const parentSets = new Map<string, Set<string>>()
  const streamingParents = new Map<string, Set<string>>()
  const routedFrom = new Map<string, RoutedFrom[]>()
  const childSets = new Map<string, Set<string>>()
  for (const id of ids) {
    parents.set(id, [])
    parentSets.set(id, new Set())
    streamingParents.set(id, new Set())
    routedFrom.set(id, [])
    childSets.set(id, new Set())
  }
  const addParent = (child: string, parent: string): void => {
    const set = parentSets.get(child)!
    if (set.has(parent)) return
    set.add(parent)
    parents.get(child)!.push(parent)
    childSets.get(parent)!.add(child)
  }

  graph.nodes.forEach((node, i) => {
    node.depends_on.forEach((dep, k) => {
      requireNode(dep, `nodes[${i}].depends_on[${k}]`)
      addParent(node.node_id, dep)
    })
  })
  graph.edges.forEach(([from, to], k) => {
    requireNode(from, `edges[${k}][0]`)
    requireNode(to, `edges[${k}][1]`)
    addParent(to, from)
  })
  graph.edges_ex.forEach((edge, k) => {
    requireNode(edge.from, `edges_ex[${k}].from`)
    requireNode(edge.to, `edges_ex[${k}].to`)
    addParent(edge.to, edge.from)
    if (edge.mode === 'async' && edge.trigger === 'on_batch') streamingParents.get(edge.to)!.add(edge.from)
  })
  for (const node of nodes.values()) {
    if (node.io.start_when === 'first_batch') {
      const set = streamingParents.get(node.node_id)!
      for (const p of parents.get(node.node_id)!) set.add(p)
    }
  }

  graph.nodes.forEach((node, i) => {
    if (node.routing === null) return
    const branches: [RouteBranch, string[]][] = [
      ['success', node.routing.on_success],
      ['failure', node.routing.on_failure],
    ]
    for (const [on, targets] of branches) {
      targets.forEach((target, k) => {
        requireNode(target, `nodes[${i}].routing.on_${on}[${k}]`)
        const list = routedFrom.get(target)!
        if (!list.some((r) => r.source === node.node_id && r.on === on)) list.push({ source: node.node_id, on })
        childSets.get(node.node_id)!.add(target)
      })
    }
  })

  const byPosition = (a: string, b: string): number => position.get(a)! - position.get(b)!
  const children = new Map<string, string[]>()
  for (const [id, set] of childSets) children.set(id, [...set].sort(byPosition))

  return {
    nodes,
    parents,
    children,
    streamingParents,
    routedFrom,
    topoOrder: topologicalOrder(ids, children, position),
  }
}

/** Kahn's algorithm; a min-heap on document position keeps the order stable. */
function topologicalOrder(
  ids: string[],
  children: Map<string, string[]>,
  position: Map<string, number>,
): string[] {
  const indegree = new Map<string, number>(ids.map((id) => [id, 0]))
  for (const list of children.values()) for (const c of list) indegree.set(c, indegree.get(c)! + 1)
  const heap = new MinHeap((a: string, b: string) => position.get(a)! - position.get(b)!)
  for (const id of ids) if (indegree.get(id) === 0) heap.push(id)
  const order: string[] = []
  for (let id = heap.pop(); id !== undefined; id = heap.pop()) {
    order.push(id)
    for (const c of children.get(id)!) {
      const d = indegree.get(c)! - 1
      indegree.set(c, d)
      if (d === 0) heap.push(c)
    }
  }
  if (order.length !== ids.length) {
    const stuck = ids.filter((id) => indegree.get(id)! > 0)
    throw new GraphValidationError(
      ErrorCode.Cycle,
      `graph has a dependency cycle among nodes ${stuck.map((s) => JSON.stringify(s)).join(', ')}`,
      'nodes',
      { nodes: stuck },
    )
  }
  return order
}

class MinHeap<T> {
  readonly items: T[] = []
  readonly compare: (a: T, b: T) => number

  constructor(compare: (a: T, b: T) => number) {
    this.compare = compare
  }

  push(item: T): void {
    const a = this.items
    a.push(item)
    let i = a.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (this.compare(a[i]!, a[parent]!) >= 0) break
      ;[a[i], a[parent]] = [a[parent]!, a[i]!]
      i = parent
    }
  }

  pop(): T | undefined {
    const a = this.items
    const top = a[0]
    const last = a.pop()
    if (a.length === 0 || last === undefined) return top
    a[0] = last
    let i = 0
    for (;;) {
      const l = 2 * i + 1
      const r = l + 1
      let m = i
      if (l < a.length && this.compare(a[l]!, a[m]!) < 0) m = l
      if (r < a.length && this.compare(a[r]!, a[m]!) < 0) m = r
      if (m === i) break
      ;[a[i], a[m]] = [a[m]!, a[i]!]
      i = m
    }
    return top
  }
}
