/**
 * The graph format as submitted: the snake_case JSON that `coordinator.createTask({ graph })`
 * accepts and the Python flowkit-async reads (docs/graph-format.md; docs/protocol.md, "Graph format").
 *
 * These are the user-facing wire types. They are not the engine's normalised form (`GraphSpec`,
 * `NodeSpec` in types.ts, with defaults filled in and `fan_in` parsed); `parseGraph` turns the one
 * into the other. `null` is accepted wherever a field may be absent, as the parser accepts it.
 * schemas/graph.schema.json (built from schema.ts) describes the same format for editors.
 */

/** Any JSON value. */
export type JsonValue = string | number | boolean | null | JsonValue[] | JsonObject
/** A JSON object (`undefined` members are dropped, as JSON.stringify drops them). */
export type JsonObject = { [key: string]: JsonValue | undefined }

/** The one supported `schema_version`. */
export type SchemaVersion = '1.0'
/** Node type of a function that runs in the coordinator (`io.fn`, `io.fn_args`), without a worker. */
export type CoordinatorFnType = 'coordinator_fn'
/** `"all"` (default): every parent done; `"any"`: one parent; `"count:N"`: N parents. */
export type FanInJson = 'all' | 'any' | `count:${number}`
/** `"ready"` (default): after the fan-in is met; `"first_batch"`: on the parents' first batch. */
export type StartWhen = 'ready' | 'first_batch'
/** `edges_ex` mode: only `async` edges with trigger `on_batch` stream; default `async`. */
export type EdgeMode = 'async' | 'sync'
/** `edges_ex` trigger: `on_done` (default, like a plain edge) or `on_batch` (start on the first batch). */
export type EdgeTrigger = 'on_batch' | 'on_done'
/** The input adapters workers know (`io.input_inline.input_adapter`). */
export type InputAdapterName = 'pull.from_artifacts' | 'pull.from_artifacts.rechunk:size'
/** Operators of a `when` guard. */
export type GuardOpJson = 'eq' | 'ne' | 'in' | 'nin' | 'exists' | 'gt' | 'gte' | 'lt' | 'lte'

/**
 * A task graph: nodes, plus optional plain edges and streaming (extended) edges. `Role` narrows
 * node types to a worker's roles (`GraphJson<keyof typeof handlers>`); any string by default.
 */
export interface GraphJson<Role extends string = string> {
  /** Where editors find the JSON Schema (e.g. `node_modules/flowkit/schemas/graph.schema.json`); ignored by flowkit. */
  $schema?: string
  /** Format version; only `"1.0"` is supported. Optional. */
  schema_version?: SchemaVersion | null
  /** The nodes, at least one; node ids are unique. */
  nodes: NodeJson<Role>[]
  /** Plain dependencies `[from, to]`: `to` runs after `from` (same as `to.depends_on: [from]`). */
  edges?: EdgeJson[] | null
  /** Extended edges: a dependency plus how it triggers (`on_batch` streams). */
  edges_ex?: EdgeExJson[] | null
}

/** A plain edge: `[from, to]`. */
export type EdgeJson = [from: string, to: string]

/** An extended edge: `to` depends on `from`; `mode: "async"` + `trigger: "on_batch"` starts `to` on the first batch of `from`. */
export interface EdgeExJson {
  /** Upstream node id. */
  from: string
  /** Downstream node id. */
  to: string
  /** `async` (default) or `sync`. */
  mode?: EdgeMode | null
  /** `on_done` (default) or `on_batch`. */
  trigger?: EdgeTrigger | null
}

/** One node of a graph; `Role` narrows `type` (see GraphJson). */
export interface NodeJson<Role extends string = string> {
  /** Unique id: 1 to 128 of `A-Z a-z 0-9 _ -`. */
  node_id: string
  /** The worker role that runs it (commands go to `cmd.{type}.v1`), or `"coordinator_fn"`. */
  type: Role | CoordinatorFnType
  /** Nodes this one runs after (its parents, with `edges` and `edges_ex`). */
  depends_on?: string[] | null
  /** How many parents must be done before it starts; default `"all"`. */
  fan_in?: FanInJson | null
  /** When it starts, what input it reads, and (coordinator_fn) which function runs. */
  io?: NodeIoJson | null
  /** Attempts and backoff for transient failures; without it a node gets the coordinator's defaults (`defaultRetryMax` 3 attempts, `defaultBackoffSec` 1 s apart). */
  retry_policy?: RetryPolicyJson | null
  /**
   * Longest a running attempt may take from its acceptance (a coordinator function: from its
   * start), seconds > 0; past it the attempt is cancelled and fails with reason `timeout`.
   */
  timeout_sec?: number | null
  /** Nodes to run only when this one succeeds (`on_success`) or fails (`on_failure`). */
  routing?: RoutingJson | null
  /** Guard on task variables: when it does not hold once the node is ready, the node is skipped. */
  when?: GuardJson
  /** Priming field of the Python tests: only `"queued"`, blank or null (a graph starts fresh). */
  status?: 'queued' | '' | null
  /** Priming field: only 0 or null. */
  attempt_epoch?: 0 | null
  /** Priming field: only `{}` or null. */
  stats?: Record<string, never> | null
  /** Priming field: only `{}` or null. */
  lease?: Record<string, never> | null
}

/** A node's io. */
export interface NodeIoJson {
  /** `"ready"` (default) or `"first_batch"`. */
  start_when?: StartWhen | null
  /** Inline input sent to the worker in TASK_START: an input adapter and its args, and any handler data. */
  input_inline?: InputInlineJson | null
  /** Reference to input data, sent to the worker in TASK_START (the handler's `loadInput` reads it). */
  input_ref?: JsonObject | null
  /** Batching hints sent to the worker in TASK_START, for the handler. */
  batching?: JsonObject | null
  /** coordinator_fn nodes: the function to run (`merge.generic`, `metrics.aggregate`, `vars.set`, …). */
  fn?: string
  /** coordinator_fn nodes: the function's arguments. */
  fn_args?: JsonObject | null
}

/** Inline input of a worker node; keys other than `input_adapter` / `input_args` are the handler's data. */
export interface InputInlineJson {
  /** Pull the input from upstream artifacts with this adapter (the worker runs it). */
  input_adapter?: InputAdapterName | null
  /** The adapter's arguments. */
  input_args?: InputArgsJson | JsonObject | null
  [key: string]: JsonValue | undefined
}

/** Arguments of the input adapters. */
export type InputArgsJson = {
  /** Upstream node ids to pull from (or `from_node` for one). */
  from_nodes?: string[]
  /** Alias of `from_nodes` for one upstream node. */
  from_node?: string
  /** Poll interval while waiting for upstream batches, ms (worker config default otherwise). */
  poll_ms?: number
  /** rechunk: items per batch, an integer > 0 (required by the rechunk adapter). */
  size?: number
  /** rechunk: slice the list under this key of each upstream meta (else each meta is one item). */
  meta_list_key?: string | null
}

/** Retry policy (transient failures; permanent ones fail the node at once). */
export interface RetryPolicyJson {
  /** Attempts in all, the first included; integer >= 1, default 3. */
  max?: number | null
  /** Seconds between a transient failure and the next attempt, >= 0, fractions allowed; default 1. */
  backoff_sec?: number | null
  /** Growth of the delay per failed attempt (delay n = backoff_sec * factor^(n-1)); 1 to 100, default 1. */
  backoff_factor?: number | null
  /** Cap on the delay, in seconds. */
  backoff_max_sec?: number | null
  /** Random spread of each delay, a fraction from 0 to 1 (0.2: ±20 %); default 0. */
  jitter?: number | null
  /** Reason codes that make a failure permanent (no retry). */
  permanent_on?: string[] | null
}

/** Conditional successors. A routed node runs only on that outcome of its source, else it is skipped. */
export interface RoutingJson {
  /** Nodes that run only if this one finishes. */
  on_success?: string[] | null
  /** Nodes that run only if this one fails; a failure routed this way does not fail the task. */
  on_failure?: string[] | null
}

/** A declarative guard on the task variables (`coordinator.vars`). */
export type GuardJson = GuardCompareJson | { all: GuardJson[] } | { any: GuardJson[] } | { not: GuardJson }

/** A comparison of one task variable (dotted path) with a value. */
export type GuardCompareJson =
  | { var: string; op?: 'eq' | 'ne' | null; value?: JsonValue }
  | { var: string; op: 'in' | 'nin'; value: JsonValue[] }
  | { var: string; op: 'exists'; value?: boolean }
  | { var: string; op: 'gt' | 'gte' | 'lt' | 'lte'; value: number | string }

/** `merge.generic`: merges the upstream artifacts' metas under `target.key` (default "merged"). */
export type MergeGenericArgs = { from_nodes: string[]; target?: { key: string } } | { from_node: string; target?: { key: string } }

/**
 * `metrics.aggregate`: `{ node_id, mode }` sums or averages every numeric metric of one node's
 * batches; `{ from_nodes, metric, mode, target_node?, target_key? }` one stat of several nodes.
 */
export type MetricsAggregateArgs =
  | { node_id: string; mode?: 'sum' | 'mean' }
  | { from_nodes: string[]; metric?: string; mode?: 'sum' | 'mean'; target_node?: string; target_key?: string }

/** `vars.set`: `{ kv: { "a.b": 1 } }` or `{ key, value }` (`block_sensitive`: the seed's name of `block_secrets`). */
export type VarsSetArgs = ({ kv: JsonObject } | { key: string; value: JsonValue }) & { block_secrets?: boolean; block_sensitive?: boolean }
/** `vars.merge`: deep-merges `data` (the seed's `kv`) into the variables. */
export type VarsMergeArgs = ({ data: JsonObject } | { kv: JsonObject }) & { block_secrets?: boolean; block_sensitive?: boolean }
/** `vars.incr`: adds `by` (default 1) to the number at `key`. */
export type VarsIncrArgs = { key: string; by?: number }
/** `vars.unset`: removes `keys` (or one `key`). */
export type VarsUnsetArgs = { keys: string[] } | { key: string }

/** The arguments of each built-in coordinator function. */
export interface BuiltinFnArgs {
  noop: Record<string, never>
  'merge.generic': MergeGenericArgs
  'metrics.aggregate': MetricsAggregateArgs
  'vars.set': VarsSetArgs
  'vars.merge': VarsMergeArgs
  'vars.incr': VarsIncrArgs
  'vars.unset': VarsUnsetArgs
}
/** Names of the built-in coordinator functions. */
export type BuiltinFnName = keyof BuiltinFnArgs
