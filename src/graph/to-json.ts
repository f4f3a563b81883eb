/**
 * A stored (parsed, normalised) graph back in the submitted wire JSON form: what the dashboard
 * resubmits, and what an owner checks again when another coordinator hands it a task inline.
 * `parseGraph(graphJson(spec))` gives `spec` back.
 */
import type { GraphSpec, NodeSpec } from './types.ts'

/** A stored node back in the submitted (wire JSON) form. */
function nodeJson(n: NodeSpec): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(n.extra)) Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true })
  out['node_id'] = n.node_id
  out['type'] = n.type
  if (n.depends_on.length > 0) out['depends_on'] = [...n.depends_on]
  out['fan_in'] = n.fan_in_raw
  out['io'] = n.io
  if (n.retry_policy !== null) out['retry_policy'] = n.retry_policy
  if (n.routing !== null) out['routing'] = n.routing
  if (n.timeout_sec !== undefined) out['timeout_sec'] = n.timeout_sec
  if ((n.when ?? null) !== null && out['when'] === undefined) out['when'] = n.when
  return out
}

export function graphJson(graph: GraphSpec): Record<string, unknown> {
  return {
    schema_version: graph.schema_version,
    nodes: graph.nodes.map(nodeJson),
    ...(graph.edges.length > 0 ? { edges: graph.edges.map(([a, b]) => [a, b]) } : {}),
    ...(graph.edges_ex.length > 0 ? { edges_ex: graph.edges_ex.map((e) => ({ ...e })) } : {}),
  }
}
