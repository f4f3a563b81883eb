/**
 * Task submission: a graph validated and turned into a new task document, and the inserts of one
 * tick sent to the store together (`createTasks`: one round trip for many createTask calls).
 *
 * Submission limits (graph/limits.ts, docs/limits.md) are enforced here: the graph's counts,
 * nesting and retry ranges by `parseGraph`; the task params, the size of each node's TASK_START
 * as the coordinator will build it, and the size of the whole task below.
 */
import { uuidV4 } from '../util/ids.ts'
import { whereJsonBreaks } from '../util/json-syntax.ts'
import { ErrorCode, FlowkitError, GraphValidationError } from '../errors.ts'
import { MIN_MESSAGE_BYTES } from '../config.ts'
import { type SubmitLimits, formatCount, resolveSubmitLimits } from '../graph/limits.ts'
import { parseGraph } from '../graph/parse.ts'
import { copyData, didYouMean, overLimit } from '../graph/parse-context.ts'
import type { GraphProblem } from '../graph/parse.ts'
import type { GraphSpec, NodeSpec } from '../graph/types.ts'
import { COORDINATOR_FN_TYPE, TASK_ID_PATTERN } from '../graph/types.ts'
import type { NodeState, TaskDoc } from '../model/state.ts'
import type { Store } from '../ports/store.ts'
import { INPUT_ADAPTERS } from '../protocol/input-adapters.ts'
import { DEDUP_ID_LENGTH, encode, messageKey } from '../protocol/messages.ts'
import { deepFreeze } from '../ports/store-rules.ts'
import { VARS_INLINE_MAX, startEnvelope } from './commands.ts'
import type { GraphCache } from './graph-cache.ts'
import type { FnArgsCheck } from '../graph/parse-context.ts'
export { startEnvelope } from './commands.ts'

export interface CreateTaskInput {
  params?: Record<string, unknown>
  graph: unknown
  /** Optional caller-chosen id (must be unique); a UUID otherwise. */
  id?: string
  /**
   * The task must end within this many seconds of its creation: past it, what still runs is
   * cancelled and the task ends `failed` ("deadline exceeded").
   */
  deadlineSec?: number
}

/** Longest task deadline (30 days). */
export const MAX_DEADLINE_SEC = 30 * 24 * 3600

export interface BuildTaskOptions {
  coordinatorFns: ReadonlySet<string>
  rejectUnknownInputAdapters: boolean
  /** Submission limits (the coordinator passes its config); defaults for the ones not given. */
  limits?: Partial<SubmitLimits> | Readonly<Record<string, unknown>>
  /** Parsed graphs of earlier submissions made with these same options (graph-cache.ts). */
  cache?: GraphCache
  /** Submission checks of coordinator functions' fn_args (fn-args.ts builtinArgChecks). */
  fnArgs?: ReadonlyMap<string, FnArgsCheck>
}


/**
 * Largest task-variables object a TASK_START carries inline (commands.ts sends `vars: null` above
 * it and the worker reads them from the store). Every START keeps room for it, so variables that
 * grow while the task runs never push a START over `maxMessageBytes`.
 */
export const START_VARS_INLINE_MAX = VARS_INLINE_MAX
/** Room for the Kafka record around the value: record batch and record headers, the key's length. */
const RECORD_OVERHEAD_BYTES = 512
/** An attempt epoch wider than any real one (its digits count in the size). */
const WIDEST_EPOCH = 999_999_999
/** Stand-ins of a START's dedup id and cancel token for its size: hex ids of the same length. */
const ID_PLACEHOLDERS = { dedupId: '0'.repeat(DEDUP_ID_LENGTH), cancelToken: '0'.repeat(DEDUP_ID_LENGTH) }

/**
 * Most bytes a node's TASK_START can take on the bus: its value with empty variables, its key,
 * the record overhead, and the room kept for variables sent inline.
 */
export function startCommandBytes(taskId: string, spec: NodeSpec, now: number): { bytes: number; ioBytes: number } {
  const value = Buffer.byteLength(encode(startEnvelope(taskId, spec, WIDEST_EPOCH, now, {}, undefined, ID_PLACEHOLDERS)))
  const bytes = value + Buffer.byteLength(messageKey(taskId, spec.node_id)) + RECORD_OVERHEAD_BYTES + START_VARS_INLINE_MAX
  return { bytes, ioBytes: value }
}

function jsonBytes(v: unknown): number {
  return Buffer.byteLength(JSON.stringify(v) ?? '')
}

/** One GraphValidationError for the first problem, every problem in `details.errors`. */
function throwProblems(problems: GraphProblem[]): void {
  const first = problems[0]
  if (first === undefined) return
  const more = problems.length - 1
  const message = more === 0 ? first.message : `${first.message} (and ${more} more problem${more === 1 ? '' : 's'}; see details.errors)`
  throw new GraphValidationError(first.code, message, first.path, { ...first.details, errors: problems })
}

function problem(code: ErrorCode, path: string, text: string, details: Record<string, unknown>): GraphProblem {
  return { code, path, message: path === '' ? text : `${path}: ${text}`, details }
}

/** Task params: an object of plain JSON data, within the depth and size limits. Returns a copy. */
function checkParams(params: unknown, limits: SubmitLimits): Record<string, unknown> {
  if (params === undefined) return {}
  if (params === null || typeof params !== 'object' || Array.isArray(params)) {
    throw new GraphValidationError(ErrorCode.GraphInvalid, 'params must be an object', 'params')
  }
  const c = copyData(params, 'params', 'task params', limits.maxParamsDepth)
  if (!c.ok) throwProblems([problem(c.problem.code, c.problem.path, c.problem.text, c.problem.details)])
  const copy = (c as { value: Record<string, unknown> }).value
  const bytes = jsonBytes(copy)
  if (bytes > limits.maxParamsBytes) {
    throwProblems([
      problem(ErrorCode.GraphLimit, 'params', `${overLimit('task params take', bytes, 'bytes of JSON', limits.maxParamsBytes, 'maxParamsBytes')}; pass a reference to large data instead`, {
        limit: 'maxParamsBytes',
        max: limits.maxParamsBytes,
        bytes,
      }),
    ])
  }
  return copy
}

/** A `maxMessageBytes` too small for any START (checked with the config, and at each buildTask). */
export function checkMinMessageBytes(maxMessageBytes: number): void {
  if (maxMessageBytes < MIN_MESSAGE_BYTES) {
    throw new FlowkitError(
      ErrorCode.Config,
      `coordinator config: "maxMessageBytes" must be at least ${formatCount(MIN_MESSAGE_BYTES)} (a TASK_START keeps room for ${formatCount(START_VARS_INLINE_MAX)} bytes of task variables), got ${formatCount(maxMessageBytes)}`,
    )
  }
}

/** JSON size of frozen graphs (a graph shared by many tasks is measured once). */
const GRAPH_BYTES = new WeakMap<GraphSpec, number>()

/** Every node's TASK_START fits `maxMessageBytes`; graph and params together fit `maxTaskBytes`. */
function checkSizes(taskId: string, graph: GraphSpec, params: Record<string, unknown>, limits: SubmitLimits, now: number): void {
  checkMinMessageBytes(limits.maxMessageBytes)
  let graphBytes = GRAPH_BYTES.get(graph)
  if (graphBytes === undefined) {
    graphBytes = jsonBytes(graph)
    if (Object.isFrozen(graph)) GRAPH_BYTES.set(graph, graphBytes)
  }
  // A START's value and key hold a fixed skeleton (under 1 KiB), the task id twice, and the node's
  // id, type and io, which all come from the graph: a small graph cannot make one too large.
  const startBound = 4096 + 2 * Buffer.byteLength(taskId) + 2 * graphBytes + RECORD_OVERHEAD_BYTES + START_VARS_INLINE_MAX
  const problems: GraphProblem[] = []
  graph.nodes.forEach((node, i) => {
    if (startBound <= limits.maxMessageBytes || node.type === COORDINATOR_FN_TYPE || problems.length >= 100) return
    const { bytes, ioBytes } = startCommandBytes(taskId, node, now)
    if (bytes <= limits.maxMessageBytes) return
    problems.push(
      problem(
        ErrorCode.GraphLimit,
        `nodes[${i}].io`,
        `node ${JSON.stringify(node.node_id)}: its TASK_START would take up to ${formatCount(bytes)} bytes (${formatCount(ioBytes)} bytes of command with the node's io, plus ${formatCount(bytes - ioBytes)} bytes kept for task variables sent inline and the record around it), over the limit of ${formatCount(limits.maxMessageBytes)} bytes (coordinator config maxMessageBytes: the broker's message size limit; Kafka's default is 1 MiB); pass large inputs by reference (io.input_ref) instead of inline`,
        { node_id: node.node_id, bytes, limit: 'maxMessageBytes', max: limits.maxMessageBytes },
      ),
    )
  })
  throwProblems(problems)
  const bytes = graphBytes + jsonBytes(params)
  if (bytes > limits.maxTaskBytes) {
    throwProblems([
      problem(ErrorCode.GraphLimit, 'graph', `${overLimit('the graph and params take', bytes, 'bytes of JSON', limits.maxTaskBytes, 'maxTaskBytes')}; split the work into several tasks`, {
        limit: 'maxTaskBytes',
        max: limits.maxTaskBytes,
        bytes,
      }),
    ])
  }
}

/** Validates a submission (graph as an object or JSON text, params, id) into a queued task. */
/** A graph refused as a whole (path `graph`), its problem listed in `details.errors` as every refusal's are. */
function refused(message: string): GraphValidationError {
  return new GraphValidationError(ErrorCode.GraphInvalid, message, 'graph', { errors: [{ code: ErrorCode.GraphInvalid, path: 'graph', message }] })
}

/** The fields of a CreateTaskInput. */
const INPUT_FIELDS: readonly string[] = ['graph', 'params', 'id', 'deadlineSec']

/** An unknown field of a CreateTaskInput is refused (ignored, `deadline_sec` would run a task without its deadline). */
function checkInputFields(input: CreateTaskInput): void {
  if (input === null || typeof input !== 'object') throw new FlowkitError(ErrorCode.GraphInvalid, `createTask takes an object { ${INPUT_FIELDS.join(', ')} }, got ${input === null ? 'null' : typeof input}`)
  if (typeof (input as { build?: unknown }).build === 'function') {
    throw new FlowkitError(ErrorCode.GraphInvalid, 'createTask: got a graph builder, not a task: pass createTask(g.task()) or createTask({ graph: g.build() })')
  }
  if (Array.isArray((input as { nodes?: unknown }).nodes) && !('graph' in input)) {
    throw new FlowkitError(ErrorCode.GraphInvalid, 'createTask: got a graph, not a task: pass createTask({ graph, params })')
  }
  for (const k in input) {
    if (INPUT_FIELDS.includes(k)) continue
    const camel = k.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase())
    const hint = INPUT_FIELDS.includes(camel) ? ` (did you mean "${camel}"?)` : didYouMean(k, INPUT_FIELDS)
    throw new FlowkitError(ErrorCode.GraphInvalid, `createTask: unknown field ${JSON.stringify(k.slice(0, 100))}${hint}; its fields are ${INPUT_FIELDS.join(', ')}`, { details: { field: k.slice(0, 100) } })
  }
}

export function buildTask(input: CreateTaskInput, options: BuildTaskOptions, now: number): TaskDoc {
  checkInputFields(input)
  const limits = resolveSubmitLimits(options.limits)
  const parse = (input: unknown): GraphSpec => {
    let raw = input
    if (raw !== null && typeof raw === 'object' && typeof (raw as { build?: unknown }).build === 'function') {
      throw refused('graph: got a graph builder, not a graph: pass g.build() (or createTask(g.task()))')
    }
    if (typeof raw === 'string') {
      try {
        raw = JSON.parse(raw)
      } catch {
        // Where, not the text around it (JSON.parse's message quotes it).
        throw refused(`graph: a string is read as JSON text, and this one is not valid JSON${whereJsonBreaks(raw as string)} (a graph is an object: {"nodes": [...]})`)
      }
    }
    // A retry_policy without backoff_sec waits the coordinator's defaultBackoffSec (its config is the limits).
    const backoff = (options.limits as Readonly<Record<string, unknown>> | undefined)?.['defaultBackoffSec']
    const parsed = parseGraph(raw, {
      coordinatorFns: new Set(options.coordinatorFns),
      ...(typeof backoff === 'number' ? { defaultBackoffSec: backoff } : {}),
      ...(options.fnArgs === undefined ? {} : { fnArgs: options.fnArgs }),
      ...(options.rejectUnknownInputAdapters ? { inputAdapters: INPUT_ADAPTERS } : {}),
      limits,
    })
    // Immutable from here on (stores and task runtimes may share it without copying).
    return deepFreeze(parsed)
  }
  const graph = options.cache === undefined ? parse(input.graph) : options.cache.get(input.graph, parse)
  const params = checkParams(input.params, limits)
  if (input.id !== undefined && !TASK_ID_PATTERN.test(input.id)) {
    throw new FlowkitError(ErrorCode.GraphInvalid, `task id ${JSON.stringify(input.id)} must match ${TASK_ID_PATTERN}`)
  }
  const deadline = input.deadlineSec
  if (deadline !== undefined && !(typeof deadline === 'number' && Number.isFinite(deadline) && deadline > 0 && deadline <= MAX_DEADLINE_SEC)) {
    throw new FlowkitError(ErrorCode.GraphInvalid, `deadlineSec must be a number of seconds > 0 and at most ${MAX_DEADLINE_SEC}, got ${JSON.stringify(deadline)}`)
  }
  const id = input.id ?? uuidV4()
  checkSizes(id, graph, params, limits, now)
  return {
    id,
    status: 'queued',
    params,
    graph,
    nodes: Object.fromEntries(graph.nodes.map((n) => [n.node_id, newNodeState(n)])),
    coordinator: { vars: {}, cancelled: false, cancel_reason: null },
    result: null,
    error: null,
    created_at_ms: now,
    updated_at_ms: now,
    finished_at_ms: null,
    ...(deadline !== undefined ? { deadline_at_ms: now + Math.round(deadline * 1000) } : {}),
  }
}

export function newNodeState(spec: NodeSpec): NodeState {
  return {
    node_id: spec.node_id,
    type: spec.type,
    status: 'queued',
    attempt_epoch: 0,
    lease: {},
    stats: {},
    last_error: null,
    failures: 0,
    next_retry_at_ms: null,
    dispatched_at_ms: null,
    accepted_at_ms: null,
    last_event_at_ms: null,
    finished_at_ms: null,
    has_output: false,
    end_reason: null,
    cancel_deadline_ms: null,
    resends: 0,
  }
}

/** Inserts new tasks, those of one tick together. */
export class TaskInserter {
  readonly #store: Store
  #queue: { task: TaskDoc; resolve: () => void; reject: (err: unknown) => void }[] = []

  constructor(store: Store) {
    this.#store = store
  }

  insert(task: TaskDoc): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ task, resolve, reject })
      if (this.#queue.length === 1) setImmediate(() => void this.#flush())
    })
  }

  async #flush(): Promise<void> {
    const batch = this.#queue.splice(0, 500)
    if (this.#queue.length > 0) setImmediate(() => void this.#flush())
    try {
      const results = await this.#store.createTasks(batch.map((b) => b.task))
      batch.forEach((b, i) => {
        const err = results[i]
        if (err) b.reject(err)
        else b.resolve()
      })
    } catch (err) {
      for (const b of batch) b.reject(err)
    }
  }
}
