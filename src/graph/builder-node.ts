/**
 * One node of the typed graph builder (builder.ts): the chainable methods that fill its wire
 * fields. Every method returns the node, and writes exactly the snake_case field it names.
 */
import type {
  EdgeMode,
  EdgeTrigger,
  FanInJson,
  GuardJson,
  InputAdapterName,
  InputArgsJson,
  JsonObject,
  NodeIoJson,
  NodeJson,
  RetryPolicyJson,
  StartWhen,
} from './json-types.ts'

/** `fanIn()`: `"all"` (default), `"any"`, `{ count: N }` or `"count:N"`. */
export type FanInOption = 'all' | 'any' | { count: number } | `count:${number}`

/** `retry()`: camelCase of `retry_policy` (`max`, `backoff_sec`, `permanent_on`). */
export interface RetryOptions {
  /** Attempts in all, the first included (integer >= 1; default 3). */
  max?: number
  /** Seconds between a transient failure and the next attempt (>= 0, fractions allowed; default 1). */
  backoffSec?: number
  /** Growth of the delay per failed attempt (1: fixed delay; 2: doubling). */
  backoffFactor?: number
  /** Cap on the delay, in seconds. */
  backoffMaxSec?: number
  /** Random spread of each delay, a fraction from 0 to 1. */
  jitter?: number
  /** Reason codes that make a failure permanent (no retry). */
  permanentOn?: string[]
}

/** `edge()` options: an `edges_ex` entry instead of a plain edge. */
export interface EdgeOptions {
  /** `async` (default) or `sync`. */
  mode?: EdgeMode
  /** `on_done` (default) or `on_batch` (with mode async: start the target on the first batch). */
  trigger?: EdgeTrigger
}

/** An input adapter and its arguments, for `.input()`: see `pullFromArtifacts()` and `rechunk()`. */
export interface InputSpec {
  input_adapter: InputAdapterName
  input_args: InputArgsJson
}

/** Where a node names another node: for the builder's reference check at build(). */
export interface NodeRef {
  /** The node id named. */
  ref: string
  /** How, for the message: `.after()`, `.onFailure()`, `.input()`, `fn() args` … */
  via: string
  /** JSON path of the reference in the built graph, from the node (`depends_on[0]`). */
  path: string
}

function copy<T>(v: T): T {
  return v === undefined ? v : (JSON.parse(JSON.stringify(v)) as T)
}

function fanInValue(f: FanInOption): FanInJson {
  return typeof f === 'object' && f !== null ? `count:${f.count}` : f
}

/** A node being built; `graph().node(…)` and `graph().fn(…)` return one. */
export class NodeBuilder {
  readonly id: string
  readonly #type: string
  #dependsOn: string[] = []
  /** Ids in #dependsOn that a coordinator function's args read (fn()): errors name the args, not .after(). */
  readonly #argReads = new Set<string>()
  #fanIn: FanInJson | undefined
  #io: NodeIoJson = {}
  #retry: RetryPolicyJson | undefined
  #onSuccess: string[] = []
  #onFailure: string[] = []
  #when: GuardJson | undefined
  #timeoutSec: number | undefined

  constructor(id: string, type: string, io: NodeIoJson = {}) {
    this.id = id
    this.#type = type
    this.#io = io
  }

  /** Runs after these nodes (`depends_on`; repeated ids are kept once). */
  after(...nodeIds: string[]): this {
    for (const id of nodeIds) if (!this.#dependsOn.includes(id)) this.#dependsOn.push(id)
    return this
  }

  /** Dependencies its coordinator function's args read (added by the graph builder's fn()). */
  readsFrom(...nodeIds: string[]): this {
    for (const id of nodeIds) if (!this.#dependsOn.includes(id)) this.#argReads.add(id)
    return this.after(...nodeIds)
  }

  /** How many parents must be done first (`fan_in`): `"all"` (default), `"any"`, `{ count: N }`. */
  fanIn(fanIn: FanInOption): this {
    this.#fanIn = fanInValue(fanIn)
    return this
  }

  /** `timeout_sec`: the longest an attempt may run once accepted; past it, it fails with `timeout`. */
  timeout(seconds: number): this {
    this.#timeoutSec = seconds
    return this
  }

  /** `retry_policy`: attempts in all (`max`), `backoffSec` (with `backoffFactor`, `backoffMaxSec`, `jitter`), `permanentOn`. */
  retry(options: RetryOptions): this {
    const policy: RetryPolicyJson = {}
    if (options.max !== undefined) policy.max = options.max
    if (options.backoffSec !== undefined) policy.backoff_sec = options.backoffSec
    if (options.backoffFactor !== undefined) policy.backoff_factor = options.backoffFactor
    if (options.backoffMaxSec !== undefined) policy.backoff_max_sec = options.backoffMaxSec
    if (options.jitter !== undefined) policy.jitter = options.jitter
    if (options.permanentOn !== undefined) policy.permanent_on = [...options.permanentOn]
    this.#retry = policy
    return this
  }

  /** Guard on the task variables (`when`): the node is skipped when it does not hold. */
  when(guard: GuardJson): this {
    this.#when = copy(guard)
    return this
  }

  /** `routing.on_success`: these nodes run only if this one finishes (else they are skipped). */
  onSuccess(...nodeIds: string[]): this {
    for (const id of nodeIds) if (!this.#onSuccess.includes(id)) this.#onSuccess.push(id)
    return this
  }

  /**
   * `routing.on_failure`: these nodes run only if this one fails (else they are skipped); its
   * failure then no longer cancels and fails the task.
   */
  onFailure(...nodeIds: string[]): this {
    for (const id of nodeIds) if (!this.#onFailure.includes(id)) this.#onFailure.push(id)
    return this
  }

  /** `io.start_when`: `"ready"` (default) or `"first_batch"`. */
  startWhen(when: StartWhen): this {
    this.#io.start_when = when
    return this
  }

  /** `io.start_when: "first_batch"`: start as soon as a parent has written its first batch. */
  startOnFirstBatch(): this {
    return this.startWhen('first_batch')
  }

  /** The input adapter (`io.input_inline.input_adapter` and `input_args`): `rechunk(…)`, `pullFromArtifacts(…)`. */
  input(spec: InputSpec): this {
    this.#io.input_inline = { ...(this.#io.input_inline ?? {}), input_adapter: spec.input_adapter, input_args: copy(spec.input_args) }
    return this
  }

  /** Handler data in `io.input_inline` (merged with what is there; the worker hands it to the handler). */
  inline(data: JsonObject): this {
    this.#io.input_inline = { ...(this.#io.input_inline ?? {}), ...copy(data) }
    return this
  }

  /** `io.input_ref`: a reference to input data, for the handler's `loadInput`. */
  inputRef(ref: JsonObject): this {
    this.#io.input_ref = copy(ref)
    return this
  }

  /** `io.batching`: batching hints for the handler. */
  batching(batching: JsonObject): this {
    this.#io.batching = copy(batching)
    return this
  }

  /** The node as graph JSON (fields in the documented order; unset fields left out). */
  toJSON(): NodeJson {
    const node: NodeJson = { node_id: this.id, type: this.#type }
    if (this.#dependsOn.length > 0) node.depends_on = [...this.#dependsOn]
    if (this.#fanIn !== undefined) node.fan_in = this.#fanIn
    if (Object.keys(this.#io).length > 0) node.io = copy(this.#io)
    if (this.#retry !== undefined) node.retry_policy = copy(this.#retry)
    if (this.#timeoutSec !== undefined) node.timeout_sec = this.#timeoutSec
    if (this.#onSuccess.length > 0 || this.#onFailure.length > 0) {
      node.routing = {}
      if (this.#onSuccess.length > 0) node.routing.on_success = [...this.#onSuccess]
      if (this.#onFailure.length > 0) node.routing.on_failure = [...this.#onFailure]
    }
    if (this.#when !== undefined) node.when = copy(this.#when)
    return node
  }

  /** Every node id this node names, with how and where (for the check at build()). */
  refs(): NodeRef[] {
    const out: NodeRef[] = []
    const lists: [string[], string, string][] = [
      [this.#dependsOn, '.after()', 'depends_on'],
      [this.#onSuccess, '.onSuccess()', 'routing.on_success'],
      [this.#onFailure, '.onFailure()', 'routing.on_failure'],
    ]
    for (const [list, via, key] of lists) list.forEach((ref, i) => {
      out.push({ ref, via: key === 'depends_on' && this.#argReads.has(ref) ? 'fn() args (from_nodes, from_node or node_id)' : via, path: `${key}[${i}]` })
    })
    const args = this.#io.input_inline?.input_args
    if (args !== null && typeof args === 'object' && !Array.isArray(args)) out.push(...argRefs(args, '.input()', 'io.input_inline.input_args'))
    const fnArgs = this.#io.fn_args
    if (fnArgs !== null && fnArgs !== undefined) out.push(...argRefs(fnArgs, `fn(${JSON.stringify(this.#io.fn)}) args`, 'io.fn_args'))
    return out
  }
}

/** `from_nodes` / `from_node` of adapter or function args. */
function argRefs(args: Record<string, unknown>, via: string, base: string): NodeRef[] {
  const out: NodeRef[] = []
  const many = args['from_nodes']
  if (Array.isArray(many)) {
    many.forEach((ref, i) => {
      if (typeof ref === 'string') out.push({ ref, via, path: `${base}.from_nodes[${i}]` })
    })
  }
  const one = args['from_node']
  if (typeof one === 'string') out.push({ ref: one, via, path: `${base}.from_node` })
  return out
}
