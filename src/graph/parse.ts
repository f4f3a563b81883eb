/**
 * Graph validation and normalisation at submission (docs/protocol.md, "Graph format"; docs/graph-format.md).
 *
 * `parseGraph` checks the whole graph, collects every problem it finds (in document order:
 * top-level fields, then each node, then `edges`, `edges_ex`, then cycles) and throws ONE
 * `GraphValidationError` for the first problem, with `details.errors` listing all of them.
 * A problem's `path` is JSON-pointer-ish (`nodes[2].depends_on[0]`, `edges_ex[1].to`); its
 * message starts with that path and quotes user values JSON-escaped.
 *
 * The relation checked for cycles is depends_on ∪ edges ∪ edges_ex ∪ routing (a routing target
 * runs after its source). Cycles are written in run order: `a -> b` means a runs before b.
 *
 * The parser is split by concern: parse-context.ts (options, limits, problems, helpers),
 * parse-node.ts (one node), parse-io.ts (io, retry_policy, routing) and parse-edges.ts
 * (prescan, edges, edges_ex, cycles). Everything public is re-exported from here.
 */
import { parseGuard } from './guard.ts'
import { ErrorCode } from '../errors.ts'
import type { GraphSpec, NodeSpec } from './types.ts'
import type { Context, ParseGraphOptions } from './parse-context.ts'
import { Problems, SCHEMA_VERSION, closest, describe, isAbsent, isObject, overLimit } from './parse-context.ts'
import { resolveSubmitLimits } from './limits.ts'
import { findCycles, parseEdges, parseEdgesEx, prescan } from './parse-edges.ts'
import { checkFunctionReads } from './parse-reads.ts'
import { parseNode } from './parse-node.ts'

export type { GraphProblem, ParseGraphOptions } from './parse-context.ts'
export {
  DEFAULT_EDGE_MODE,
  DEFAULT_EDGE_TRIGGER,
  DEFAULT_RETRY_BACKOFF_SEC,
  DEFAULT_RETRY_MAX,
  MAX_JSON_DEPTH,
  MAX_REPORTED_PROBLEMS,
  NODE_TYPE_PATTERN,
  SCHEMA_VERSION,
} from './parse-context.ts'

/**
 * Validates and normalises a submitted graph. Throws `GraphValidationError` (first problem,
 * `details.errors` = every problem); returns a fresh `GraphSpec` that shares nothing with `input`.
 */
export function parseGraph(input: unknown, options: ParseGraphOptions): GraphSpec {
  const problems = new Problems()
  const spec = parseInto(input, options, problems)
  problems.throwIfAny()
  if (spec === null) throw new Error('flowkit: parseGraph found no problem but produced no graph') // unreachable
  spec.nodes.forEach((node, i) => {
    if (node.extra['when'] === undefined) return
    node.when = parseGuard(node.extra['when'], `nodes[${i}].when`)
    delete node.extra['when']
  })
  return spec
}

/** The graph's top-level fields (others are kept out of the task, unless a near miss of one). */
const TOP_FIELDS = ['schema_version', 'nodes', 'edges', 'edges_ex']

function parseInto(input: unknown, options: ParseGraphOptions, problems: Problems): GraphSpec | null {
  if (!isObject(input)) {
    problems.add(
      ErrorCode.GraphInvalid,
      '',
      `a graph must be a JSON object with a "nodes" array, got ${describe(input)}`,
    )
    return null
  }

  // A misspelt top-level field (`edgesEx`, `edge_ex`) would silently turn streaming edges off.
  for (const k of Object.keys(input)) {
    if (TOP_FIELDS.includes(k)) continue
    const typo = closest(k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`), TOP_FIELDS)
    if (typo !== null) {
      problems.add(ErrorCode.BadField, k, `unknown graph field ${JSON.stringify(k)} (did you mean ${JSON.stringify(typo)}?); a misspelt field would be ignored`, { field: k, suggestion: typo })
    }
  }

  const sv = input['schema_version']
  if (!isAbsent(sv) && sv !== SCHEMA_VERSION) {
    problems.add(
      ErrorCode.BadField,
      'schema_version',
      `unsupported schema_version ${describe(sv)}; supported: ${JSON.stringify(SCHEMA_VERSION)}`,
      { value: sv },
    )
  }

  const rawNodes = input['nodes']
  if (!Array.isArray(rawNodes)) {
    problems.add(
      ErrorCode.GraphInvalid,
      'nodes',
      rawNodes === undefined
        ? 'is required: a non-empty array of nodes'
        : `must be a non-empty array of nodes, got ${describe(rawNodes)}`,
    )
    return null
  }
  if (rawNodes.length === 0) {
    problems.add(ErrorCode.GraphInvalid, 'nodes', 'must contain at least one node')
    return null
  }
  const limits = resolveSubmitLimits(options.limits)
  if (rawNodes.length > limits.maxNodes) {
    problems.add(ErrorCode.GraphLimit, 'nodes', `${overLimit('the graph has', rawNodes.length, 'nodes', limits.maxNodes, 'maxNodes')}; split the work into several tasks`, {
      limit: 'maxNodes',
      max: limits.maxNodes,
      count: rawNodes.length,
    })
    return null
  }
  const links = countLinks(rawNodes, input['edges'], input['edges_ex'])
  if (links > limits.maxEdges) {
    problems.add(
      ErrorCode.GraphLimit,
      'edges',
      `${overLimit('the graph has', links, 'dependency links (depends_on entries, edges, edges_ex and routing targets together)', limits.maxEdges, 'maxEdges')}`,
      { limit: 'maxEdges', max: limits.maxEdges, count: links },
    )
    return null
  }

  const ctx: Context = {
    problems,
    options,
    limits,
    knownIds: new Set(),
    firstIndex: new Map(),
    parentCounts: new Map(),
    routedParents: new Map(),
    relations: [],
  }
  prescan(ctx, rawNodes, input['edges'], input['edges_ex'])

  const nodes: NodeSpec[] = []
  for (let i = 0; i < rawNodes.length; i++) {
    const node = parseNode(ctx, rawNodes[i], i)
    if (node !== null) nodes.push(node)
  }
  const edges = parseEdges(ctx, input['edges'])
  const edgesEx = parseEdgesEx(ctx, input['edges_ex'])
  findCycles(ctx, nodes)
  checkFunctionReads(ctx, nodes, edgesEx)

  return { schema_version: SCHEMA_VERSION, nodes, edges, edges_ex: edgesEx }
}

/** Dependency links as submitted (before validation): depends_on entries, edges, edges_ex, routing targets. */
function countLinks(rawNodes: unknown[], rawEdges: unknown, rawEdgesEx: unknown): number {
  let n = (Array.isArray(rawEdges) ? rawEdges.length : 0) + (Array.isArray(rawEdgesEx) ? rawEdgesEx.length : 0)
  for (const raw of rawNodes) {
    if (!isObject(raw)) continue
    if (Array.isArray(raw['depends_on'])) n += raw['depends_on'].length
    const routing = raw['routing']
    if (isObject(routing)) {
      if (Array.isArray(routing['on_success'])) n += routing['on_success'].length
      if (Array.isArray(routing['on_failure'])) n += routing['on_failure'].length
    }
  }
  return n
}
