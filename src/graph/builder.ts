/**
 * A typed builder for task graphs. It produces the graph JSON of the format (json-types.ts,
 * docs/graph-format.md) — the same JSON a Python coordinator reads — so what it builds can be
 * stored, sent or written by hand just as well:
 *
 *   const handlers = { reader, enricher }
 *   const g = graph<typeof handlers>()
 *   g.node('read', 'reader')
 *   g.node('enrich', 'enricher').after('read').startOnFirstBatch().input(rechunk('read', 100))
 *   g.fn('total', 'metrics.aggregate', { from_nodes: ['enrich'], metric: 'count' })
 *   await coordinator.createTask({ graph: g.build() })
 *
 * Role names are checked by the compiler against the handlers' keys (an unknown role does not
 * compile); node ids named by `.after()`, routing, input adapters, function args and edges are
 * checked by `build()`, which then runs the coordinator's own validation (cycles, fan_in counts,
 * guards…), so a graph that builds is one `createTask` accepts (bar coordinator config: its
 * registered functions and submission limits).
 */
import { ErrorCode, FlowkitError, GraphValidationError } from '../errors.ts'
import type { BuiltinFnArgs, BuiltinFnName, EdgeExJson, EdgeJson, GraphJson, InputArgsJson, JsonObject, NodeIoJson } from './json-types.ts'
import { type FnArgsCheck, closest } from './parse-context.ts'
import { NODE_TYPE_PATTERN, parseGraph } from './parse.ts'
import { COORDINATOR_FN_TYPE, NODE_ID_PATTERN } from './types.ts'
import { type EdgeOptions, type InputSpec, NodeBuilder } from './builder-node.ts'

export { NodeBuilder, type EdgeOptions, type FanInOption, type InputSpec, type RetryOptions } from './builder-node.ts'

/**
 * The role names of `T`: the keys of a handlers object (`graph<typeof handlers>()`), or `T`
 * itself when it is a union of names (`graph<'reader' | 'writer'>()`).
 */
export type RolesOf<T> = [T] extends [string] ? T : keyof T & string

/** The args parameter of `fn()`: typed for the built-in functions, any JSON object for others. */
export type FnArgsParam<F extends string> = F extends BuiltinFnName
  ? F extends 'noop'
    ? [args?: BuiltinFnArgs[F]]
    : [args: BuiltinFnArgs[F]]
  : [args?: JsonObject]

/** What `createTask` takes: the graph, plus the task params and id when set. */
export interface TaskInputJson {
  graph: GraphJson
  params?: JsonObject
  id?: string
}

/** Limits left to the coordinator at createTask (its config may raise the defaults). */
const OPEN_LIMITS = {
  maxNodes: Number.MAX_SAFE_INTEGER,
  maxEdges: Number.MAX_SAFE_INTEGER,
  maxParamsDepth: 1000,
  maxRetryAttempts: Number.MAX_SAFE_INTEGER,
  maxRetryBackoffSec: Number.MAX_SAFE_INTEGER,
}

/** Builds a graph; `Roles` are the worker roles node types may name (see `graph()`). */

/**
 * The built-in coordinator functions' fn_args checks, as createTask runs them (set by
 * coordinator/fn-args.ts: the domain does not import the engine). A function registered under a
 * built-in name replaces these at the coordinator; build() knows only the built-in ones.
 */
let builtinFnArgs: ReadonlyMap<string, FnArgsCheck> | undefined

/** Called once by coordinator/fn-args.ts. */
export function useBuiltinFnArgsChecks(checks: ReadonlyMap<string, FnArgsCheck>): void {
  builtinFnArgs = checks
}

export class GraphBuilder<Roles extends string = string> {
  readonly #nodes: NodeBuilder[] = []
  readonly #edges: EdgeJson[] = []
  readonly #edgesEx: EdgeExJson[] = []
  #params: JsonObject | undefined

  /** A worker node: `id` (unique, `A-Z a-z 0-9 _ -`, 1–128) run by the workers of `role`. */
  node(id: string, role: Roles): NodeBuilder {
    if (typeof role !== 'string' || !NODE_TYPE_PATTERN.test(role) || role === COORDINATOR_FN_TYPE) {
      throw new GraphValidationError(ErrorCode.BadField, `graph builder: node ${JSON.stringify(id)}: role ${JSON.stringify(role)} must match ${NODE_TYPE_PATTERN.source} (coordinator functions: use fn())`, `nodes[${this.#nodes.length}].type`)
    }
    return this.#add(new NodeBuilder(id, role))
  }

  /**
   * A coordinator function node (`type: "coordinator_fn"`, `io.fn`, `io.fn_args`). The node runs
   * after the nodes its args read (`from_nodes`, `from_node`, and `node_id` of
   * metrics.aggregate): they are added to its `depends_on`, as a function reads their output once,
   * when it runs. Built-in functions get typed args; any other registered name takes a JSON object.
   */
  fn<F extends string>(id: string, fn: F, ...args: FnArgsParam<F>): NodeBuilder {
    const fnArgs = args[0] as JsonObject | undefined
    const io: NodeIoJson = { fn }
    if (fnArgs !== undefined) io.fn_args = JSON.parse(JSON.stringify(fnArgs)) as JsonObject
    const node = this.#add(new NodeBuilder(id, COORDINATOR_FN_TYPE, io))
    const reads: string[] = []
    if (fnArgs !== undefined) {
      const many = fnArgs['from_nodes']
      if (Array.isArray(many)) for (const r of many) if (typeof r === 'string') reads.push(r)
      if (typeof many === 'string') reads.push(many) // one node, as the functions read it
      for (const key of ['from_node', ...(fn === 'metrics.aggregate' ? ['node_id'] : [])]) {
        const one = fnArgs[key]
        if (typeof one === 'string') reads.push(one)
      }
    }
    return node.readsFrom(...reads.filter((r) => r !== id))
  }

  /**
   * A dependency `to` after `from`: a plain edge (`edges`), or with options an extended edge
   * (`edges_ex`, both fields written): `{ trigger: 'on_batch' }` starts `to` on the first batch of `from`.
   */
  edge(from: string, to: string, options?: EdgeOptions): this {
    if (options === undefined) this.#edges.push([from, to])
    else this.#edgesEx.push({ from, to, mode: options.mode ?? 'async', trigger: options.trigger ?? 'on_done' })
    return this
  }

  /** Task params (not part of the graph): see `task()`. */
  params(params: JsonObject): this {
    this.#params = JSON.parse(JSON.stringify(params)) as JsonObject
    return this
  }

  /** A node added before, by id (to add routing or edges to it later). */
  get(id: string): NodeBuilder {
    const node = this.#nodes.find((n) => n.id === id)
    if (node === undefined) throw new FlowkitError(ErrorCode.UnknownNode, `graph builder: no node ${JSON.stringify(id)}${hint(id, this.#ids())}`)
    return node
  }

  /**
   * The graph JSON (a fresh object each call). Throws GraphValidationError naming the method and
   * the node when an id named by `.after()`, routing, `.input()`, `fn()` args or `edge()` is not a
   * node of the graph, and the coordinator's validation errors for the rest.
   */
  build(): GraphJson<Roles> {
    if (this.#nodes.length === 0) throw new GraphValidationError(ErrorCode.GraphInvalid, 'graph builder: the graph has no node (add one with node() or fn())', 'nodes')
    const json: GraphJson<Roles> = { nodes: this.#nodes.map((n) => n.toJSON() as GraphJson<Roles>['nodes'][number]) }
    if (this.#edges.length > 0) json.edges = this.#edges.map(([a, b]) => [a, b])
    if (this.#edgesEx.length > 0) json.edges_ex = this.#edgesEx.map((e) => ({ ...e }))
    this.#checkRefs()
    const fns = new Set(this.#nodes.map((n) => n.toJSON().io?.fn).filter((f): f is string => typeof f === 'string'))
    parseGraph(json, { coordinatorFns: fns, limits: OPEN_LIMITS, ...(builtinFnArgs === undefined ? {} : { fnArgs: builtinFnArgs }) })
    return json
  }

  /** `{ graph, params?, id? }` for `coordinator.createTask(…)`. */
  task(options: { id?: string } = {}): TaskInputJson {
    const out: TaskInputJson = { graph: this.build() }
    if (this.#params !== undefined) out.params = JSON.parse(JSON.stringify(this.#params)) as JsonObject
    if (options.id !== undefined) out.id = options.id
    return out
  }

  #ids(): string[] {
    return this.#nodes.map((n) => n.id)
  }

  #add(node: NodeBuilder): NodeBuilder {
    const id = node.id
    if (typeof id !== 'string' || !NODE_ID_PATTERN.test(id)) {
      throw new GraphValidationError(ErrorCode.InvalidNodeId, `graph builder: invalid node id ${JSON.stringify(id)}: node ids must match ${NODE_ID_PATTERN.source} (1 to 128 ASCII letters, digits, "_" or "-", not "__proto__")`, `nodes[${this.#nodes.length}].node_id`)
    }
    const first = this.#nodes.findIndex((n) => n.id === id)
    if (first >= 0) {
      throw new GraphValidationError(ErrorCode.DuplicateNodeId, `graph builder: duplicate node id ${JSON.stringify(id)} (nodes[${first}] has it already)`, `nodes[${this.#nodes.length}].node_id`, { node_id: id })
    }
    this.#nodes.push(node)
    return node
  }

  /** Every id named anywhere must be a node: one error listing every unknown reference. */
  #checkRefs(): void {
    const ids = this.#ids()
    const known = new Set(ids)
    const problems: { path: string; message: string; code: string; details: Record<string, unknown> }[] = []
    const unknown = (ref: string, path: string, what: string): void => {
      if (known.has(ref)) return
      const message = `graph builder: ${what} names ${JSON.stringify(ref)}, which is not a node of this graph${hint(ref, ids)}`
      problems.push({ path, message: `${path}: ${message}`, code: ErrorCode.UnknownNode, details: { node_id: ref } })
    }
    this.#nodes.forEach((node, i) => {
      for (const r of node.refs()) unknown(r.ref, `nodes[${i}].${r.path}`, `node ${JSON.stringify(node.id)} ${r.via}`)
    })
    this.#edges.forEach(([from, to], k) => {
      unknown(from, `edges[${k}][0]`, `edge(${JSON.stringify(from)}, ${JSON.stringify(to)})`)
      unknown(to, `edges[${k}][1]`, `edge(${JSON.stringify(from)}, ${JSON.stringify(to)})`)
    })
    this.#edgesEx.forEach((e, k) => {
      unknown(e.from, `edges_ex[${k}].from`, `edge(${JSON.stringify(e.from)}, ${JSON.stringify(e.to)}, …)`)
      unknown(e.to, `edges_ex[${k}].to`, `edge(${JSON.stringify(e.from)}, ${JSON.stringify(e.to)}, …)`)
    })
    const first = problems[0]
    if (first === undefined) return
    const more = problems.length - 1
    const message = more === 0 ? first.message : `${first.message} (and ${more} more; see details.errors)`
    throw new GraphValidationError(ErrorCode.UnknownNode, message, first.path, { ...first.details, errors: problems })
  }
}

/** ` (did you mean "x"?)`, else the ids of the graph. */
function hint(ref: string, ids: string[]): string {
  const near = closest(ref, ids)
  if (near !== null) return ` (did you mean ${JSON.stringify(near)}?)`
  const shown = ids.slice(0, 10).map((i) => JSON.stringify(i)).join(', ')
  return ` (nodes: ${shown}${ids.length > 10 ? ', …' : ''})`
}

/**
 * A new graph builder. `T` types the roles node types may name: the handlers object given to the
 * Worker (`graph<typeof handlers>()`), or a union of role names (`graph<'reader' | 'writer'>()`);
 * without it any role compiles.
 */
export function graph<T = string>(): GraphBuilder<RolesOf<T>> {
  return new GraphBuilder<RolesOf<T>>()
}

/**
 * The upstream nodes of an input adapter's helper, its args checked: what the worker would refuse
 * when the node runs (`bad_input_args`) is refused here, where the mistake is (GRAPH_INVALID,
 * naming the helper).
 */
function fromNodes(helper: string, from: string | readonly string[], pollMs: number | undefined): string[] {
  const nodes = typeof from === 'string' ? [from] : [...from]
  const bad = (path: string, message: string): GraphValidationError => new GraphValidationError(ErrorCode.GraphInvalid, `graph builder: ${helper}(): ${message}`, path)
  if (nodes.length === 0) throw bad('input_args.from_nodes', 'from needs at least one upstream node id')
  if (pollMs !== undefined && !(typeof pollMs === 'number' && Number.isFinite(pollMs) && pollMs >= 0)) throw bad('input_args.poll_ms', `pollMs must be a number >= 0, got ${String(pollMs)}`)
  return nodes
}

/** Input adapter `pull.from_artifacts`: the upstream nodes' batches as they appear. */
export function pullFromArtifacts(from: string | readonly string[], options: { pollMs?: number } = {}): InputSpec {
  const args: InputArgsJson = { from_nodes: fromNodes('pullFromArtifacts', from, options.pollMs) }
  if (options.pollMs !== undefined) args.poll_ms = options.pollMs
  return { input_adapter: 'pull.from_artifacts', input_args: args }
}

/**
 * Input adapter `pull.from_artifacts.rechunk:size`: the upstream batches re-sliced into batches of
 * `size` items (the list under `metaListKey` of each upstream meta, else each meta is one item).
 */
export function rechunk(from: string | readonly string[], size: number, options: { metaListKey?: string; pollMs?: number } = {}): InputSpec {
  const nodes = fromNodes('rechunk', from, options.pollMs)
  if (!(Number.isSafeInteger(size) && size > 0)) throw new GraphValidationError(ErrorCode.GraphInvalid, `graph builder: rechunk(): size must be an integer > 0, got ${String(size)}`, 'input_args.size')
  const args: InputArgsJson = { from_nodes: nodes, size }
  if (options.metaListKey !== undefined) args.meta_list_key = options.metaListKey
  if (options.pollMs !== undefined) args.poll_ms = options.pollMs
  return { input_adapter: 'pull.from_artifacts.rechunk:size', input_args: args }
}
