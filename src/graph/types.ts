import type { Guard } from './guard.ts'
/** Graph format (task input), as in docs/graph-format.md (docs/protocol.md, "Graph format"); the normalised form the engine uses. */

export type FanIn = { kind: 'all' } | { kind: 'any' } | { kind: 'count'; n: number }

export interface RetryPolicy {
  /** Maximum number of attempts (the first run included). */
  max: number
  /**
   * Seconds between a transient failure and the next attempt (fractions honoured); with a
   * `backoff_factor` the delay before retry n is `backoff_sec * backoff_factor^(n-1)`.
   */
  backoff_sec: number
  /** Growth of the delay per failed attempt (1: a fixed delay, as the Python seed). */
  backoff_factor?: number
  /** Cap on the delay, in seconds. */
  backoff_max_sec?: number
  /** Random spread of each delay, as a fraction (0.2: ±20 %), so retries do not come in waves. */
  jitter?: number
  /** Reason codes that make a failure permanent. */
  permanent_on: string[]
}

export interface NodeIO {
  start_when?: 'ready' | 'first_batch'
  input_ref?: Record<string, unknown> | null
  input_inline?: Record<string, unknown> | null
  batching?: Record<string, unknown> | null
  /** coordinator_fn nodes */
  fn?: string
  fn_args?: Record<string, unknown>
  [key: string]: unknown
}

export interface NodeSpec {
  node_id: string
  type: string
  depends_on: string[]
  fan_in: FanIn
  /** The fan_in as submitted ("all", "any", "count:N"), for display and round trips. */
  fan_in_raw: string
  io: NodeIO
  retry_policy: RetryPolicy | null
  routing: { on_success: string[]; on_failure: string[] } | null
  /**
   * Longest a running attempt may take from its acceptance (a coordinator function: from its
   * start); past it the attempt is cancelled and fails with reason `timeout` (retried per policy).
   */
  timeout_sec?: number
  /** Declarative guard on task variables (S-081): the node runs only if it holds, else it is skipped. */
  when?: Guard | null
  /** Anything else the submitter put on the node, kept as is. */
  extra: Record<string, unknown>
}

export interface EdgeEx {
  from: string
  to: string
  mode: string
  trigger: string
}

export interface GraphSpec {
  schema_version: string
  nodes: NodeSpec[]
  edges: [string, string][]
  edges_ex: EdgeEx[]
}

export const COORDINATOR_FN_TYPE = 'coordinator_fn'
/**
 * Node ids: 1 to 128 ASCII letters, digits, "_" or "-", except `__proto__` (node ids are keys of
 * the task's node map: that one would set the map's prototype instead of adding a node).
 */
export const NODE_ID_PATTERN = /^(?!__proto__$)[A-Za-z0-9_-]{1,128}$/
/**
 * Task ids a coordinator accepts at submission (and a worker in a command): not dots alone (`.`
 * and `..` are path segments: the dashboard's URL of such a task is another page).
 */
export const TASK_ID_PATTERN = /^(?!\.+$)[A-Za-z0-9_.:-]{1,200}$/
