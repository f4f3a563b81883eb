/**
 * Graph validation and normalisation at submission (PROTOCOL.md, "Graph format").
 *
 * `parseGraph` checks the whole graph, collects every problem it finds (in document order:
 * top-level fields, then each node, then `edges`, `edges_ex`, then cycles) and throws ONE
 * `GraphValidationError` for the first problem, with `details.errors` listing all of them.
 * A problem's `path` is JSON-pointer-ish (`nodes[2].depends_on[0]`, `edges_ex[1].to`); its
 * message starts with that path and quotes user values JSON-escaped.
 *
 * The relation checked for cycles is depends_on ∪ edges ∪ edges_ex ∪ routing (a routing target
 * runs after its source). Cycles are written in run order: `a -> b` means a runs before b.
 */
import { parseGuard } from './guard.ts'
import { ErrorCode, GraphValidationError } from '../errors.ts'
import type { EdgeEx, FanIn, GraphSpec, NodeIO, NodeSpec, RetryPolicy } from './types.ts'
import { COORDINATOR_FN_TYPE, NODE_ID_PATTERN } from './types.ts'

export interface ParseGraphOptions {
  /** Names of the registered coordinator functions (`io.fn` of `coordinator_fn` nodes). */
  coordinatorFns: ReadonlySet<string>
  /** Names of the known input adapters (`io.input_inline.input_adapter`). */
  /**
   * Known input adapters. When given, a graph naming another one is refused; when absent, adapter
   * names are left to the worker, which fails such a node with `bad_input_adapter`.
   */
  inputAdapters?: ReadonlySet<string>
}

/** One problem found in a submitted graph; `details.errors` of the thrown error lists these. */
export interface GraphProblem {
  code: ErrorCode
  message: string
  path: string
  details?: Record<string, unknown>
}

export const SCHEMA_VERSION = '1.0'
/** A node type goes into a topic name (`cmd.{type}.v1`). */
export const NODE_TYPE_PATTERN = /^[A-Za-z0-9_.-]{1,128}$/
export const DEFAULT_RETRY_MAX = 3
export const DEFAULT_RETRY_BACKOFF_SEC = 0
export const DEFAULT_EDGE_MODE = 'async'
export const DEFAULT_EDGE_TRIGGER = 'on_done'
/** Past this many problems the list is cut short (`details.truncated: true`). */
export const MAX_REPORTED_PROBLEMS = 100

/** Node fields the parser understands; anything else goes to `extra`. */
const NODE_FIELDS = new Set([
  'node_id',
  'type',
  'depends_on',
  'fan_in',
  'io',
  'retry_policy',
  'routing',
  // priming fields from the Python tests: accepted, checked, dropped
  'status',
  'attempt_epoch',
  'stats',
  'lease',
])

type Obj = Record<string, unknown>

function isObject(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function isAbsent(v: unknown): v is null | undefined {
  return v === undefined || v === null
}

/** JSON-escaped string, shortened past 128 characters. */
function quote(s: string): string {
  return s.length <= 128 ? JSON.stringify(s) : `${JSON.stringify(s.slice(0, 128))}… (${s.length} chars)`
}

/** `base.key`, or `base["odd key"]` when the key is not a plain identifier. */
function keyPath(base: string, key: string): string {
  return /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(key) ? `${base}.${key}` : `${base}[${JSON.stringify(key)}]`
}

/** Short description of any value for an error message: `string "x"`, `number 5`, `null`... */
function describe(v: unknown): string {
  if (v === undefined) return 'undefined'
  if (v === null) return 'null'
  if (typeof v === 'string') return `string ${quote(v)}`
  const kind = Array.isArray(v) ? 'array' : typeof v
  let text: string | undefined
  try {
    text = JSON.stringify(v)
  } catch {
    text = undefined
  }
  if (text === undefined) return kind
  return `${kind} ${text.length > 80 ? `${text.slice(0, 80)}…` : text}`
}

class Problems {
  readonly list: GraphProblem[] = []
  truncated = false

  add(code: ErrorCode, path: string, text: string, details?: Record<string, unknown>): void {
    if (this.list.length >= MAX_REPORTED_PROBLEMS) {
      this.truncated = true
      return
    }
    const problem: GraphProblem = { code, path, message: path === '' ? text : `${path}: ${text}` }
    if (details !== undefined) problem.details = details
    this.list.push(problem)
  }

  throwIfAny(): void {
    const first = this.list[0]
    if (first === undefined) return
    const more = this.list.length - 1
    const message =
      more === 0
        ? first.message
        : `${first.message} (and ${more}${this.truncated ? '+' : ''} more problem${more === 1 ? '' : 's'}; see details.errors)`
    const details: Record<string, unknown> = { ...first.details, errors: this.list }
    if (this.truncated) details['truncated'] = true
    throw new GraphValidationError(first.code, message, first.path, details)
  }
}

/** A dependency (run-before) relation and where it was declared, for cycle detection. */
interface Relation {
  from: string
  to: string
  path: string
}

interface Context {
  problems: Problems
  options: ParseGraphOptions
  /** Every string node_id submitted (even invalid ones, to avoid cascading "unknown" errors). */
  knownIds: Set<string>
  /** First index of each node_id. */
  firstIndex: Map<string, number>
  /** Distinct parents of each node from depends_on ∪ edges ∪ edges_ex, for fan_in counts. */
  parentCounts: Map<string, number>
  relations: Relation[]
}

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

function parseInto(input: unknown, options: ParseGraphOptions, problems: Problems): GraphSpec | null {
  if (!isObject(input)) {
    problems.add(
      ErrorCode.GraphInvalid,
      '',
      `a graph must be a JSON object with a "nodes" array, got ${describe(input)}`,
    )
    return null
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

  const ctx: Context = {
    problems,
    options,
    knownIds: new Set(),
    firstIndex: new Map(),
    parentCounts: new Map(),
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

  return { schema_version: SCHEMA_VERSION, nodes, edges, edges_ex: edgesEx }
}

/** Lenient first pass: which ids exist, and how many distinct parents each node has. */
function prescan(ctx: Context, rawNodes: unknown[], rawEdges: unknown, rawEdgesEx: unknown): void {
  for (let i = 0; i < rawNodes.length; i++) {
    const raw: unknown = rawNodes[i]
    if (!isObject(raw) || typeof raw['node_id'] !== 'string') continue
    const id = raw['node_id']
    ctx.knownIds.add(id)
    if (!ctx.firstIndex.has(id)) ctx.firstIndex.set(id, i)
  }
  const parents = new Map<string, Set<string>>()
  const link = (from: unknown, to: unknown): void => {
    if (typeof from !== 'string' || typeof to !== 'string' || from === to) return
    if (!ctx.knownIds.has(from) || !ctx.knownIds.has(to)) return
    let set = parents.get(to)
    if (set === undefined) {
      set = new Set()
      parents.set(to, set)
    }
    set.add(from)
  }
  for (const raw of rawNodes) {
    if (!isObject(raw) || !Array.isArray(raw['depends_on'])) continue
    for (const dep of raw['depends_on']) link(dep, raw['node_id'])
  }
  if (Array.isArray(rawEdges)) {
    for (const e of rawEdges) if (Array.isArray(e) && e.length === 2) link(e[0], e[1])
  }
  if (Array.isArray(rawEdgesEx)) {
    for (const e of rawEdgesEx) if (isObject(e)) link(e['from'], e['to'])
  }
  for (const [id, set] of parents) ctx.parentCounts.set(id, set.size)
}

/** Deepest nesting accepted inside node fields (keeps the copy's recursion bounded). */
export const MAX_JSON_DEPTH = 256

type Copy = { ok: true; value: unknown } | { ok: false; at: string; bad: unknown }

/**
 * Deep copy of JSON data (plain objects, arrays, primitives; `undefined` dropped from objects and
 * null in arrays, as JSON.stringify does); not ok for anything else, a cycle or too deep nesting,
 * with the relative path (`.a[2].b`) of the offending value.
 */
function copyJson(v: unknown, ancestors: Set<object>): Copy {
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return { ok: true, value: v }
  if (typeof v === 'number') return Number.isFinite(v) ? { ok: true, value: v } : { ok: false, at: '', bad: v }
  if (typeof v !== 'object' || ancestors.has(v) || ancestors.size >= MAX_JSON_DEPTH) return { ok: false, at: '', bad: v }
  const proto: unknown = Object.getPrototypeOf(v)
  const isArray = Array.isArray(v)
  if (!isArray && proto !== Object.prototype && proto !== null) return { ok: false, at: '', bad: v }
  ancestors.add(v)
  try {
    if (isArray) {
      const out: unknown[] = []
      for (let i = 0; i < v.length; i++) {
        const item: unknown = v[i]
        const c = copyJson(item === undefined ? null : item, ancestors)
        if (!c.ok) return { ...c, at: `[${i}]${c.at}` }
        out.push(c.value)
      }
      return { ok: true, value: out }
    }
    const entries: [string, unknown][] = []
    for (const [k, item] of Object.entries(v)) {
      if (item === undefined) continue
      const c = copyJson(item, ancestors)
      if (!c.ok) return { ...c, at: keyPath('', k) + c.at }
      entries.push([k, c.value])
    }
    // fromEntries defines own data properties, so a "__proto__" key stays data
    return { ok: true, value: Object.fromEntries(entries) }
  } finally {
    ancestors.delete(v)
  }
}

function cloneData(ctx: Context, v: unknown, path: string): unknown {
  const c = copyJson(v, new Set())
  if (c.ok) return c.value
  ctx.problems.add(
    ErrorCode.BadField,
    `${path}${c.at}`,
    `must be plain JSON data (objects, arrays, strings, finite numbers, booleans, null; nested at most ${MAX_JSON_DEPTH} deep), got ${describe(c.bad)}`,
  )
  return undefined
}

function parseNode(ctx: Context, raw: unknown, i: number): NodeSpec | null {
  const { problems } = ctx
  const path = `nodes[${i}]`
  if (!isObject(raw)) {
    problems.add(
      ErrorCode.GraphInvalid,
      path,
      `must be a node object like {"node_id": "...", "type": "..."}, got ${describe(raw)}`,
    )
    return null
  }

  // node_id
  const rawId = raw['node_id']
  const idPattern = NODE_ID_PATTERN.source
  if (typeof rawId !== 'string') {
    problems.add(
      ErrorCode.InvalidNodeId,
      `${path}.node_id`,
      rawId === undefined
        ? `is required: a string matching ${idPattern}`
        : `invalid node_id ${describe(rawId)}: node ids are strings matching ${idPattern}`,
    )
  } else if (!NODE_ID_PATTERN.test(rawId)) {
    problems.add(
      ErrorCode.InvalidNodeId,
      `${path}.node_id`,
      `invalid node_id ${quote(rawId)}: node ids must match ${idPattern} (1 to 128 ASCII letters, digits, "_" or "-")`,
      { node_id: rawId },
    )
  } else {
    const first = ctx.firstIndex.get(rawId)
    if (first !== undefined && first !== i) {
      problems.add(
        ErrorCode.DuplicateNodeId,
        `${path}.node_id`,
        `duplicate node_id ${quote(rawId)}: nodes[${first}] and nodes[${i}] both use it`,
        { node_id: rawId, indexes: [first, i] },
      )
    }
  }
  const id = typeof rawId === 'string' ? rawId : ''
  const label = typeof rawId === 'string' ? `node ${quote(rawId)}` : path

  // type
  const type = raw['type']
  if (typeof type !== 'string') {
    problems.add(
      ErrorCode.BadField,
      `${path}.type`,
      type === undefined
        ? `${label} has no type: "type" is required, a string matching ${NODE_TYPE_PATTERN.source}`
        : `type of ${label} must be a string matching ${NODE_TYPE_PATTERN.source}, got ${describe(type)}`,
    )
  } else if (!NODE_TYPE_PATTERN.test(type)) {
    problems.add(
      ErrorCode.BadField,
      `${path}.type`,
      `invalid type ${quote(type)} on ${label}: types must match ${NODE_TYPE_PATTERN.source} (the type names the command topic cmd.{type}.v1)`,
      { type },
    )
  }

  checkPriming(ctx, raw, path, label)
  const dependsOn = parseDependsOn(ctx, raw['depends_on'], path, id, label)
  const fan = parseFanIn(ctx, raw['fan_in'], path, typeof rawId === 'string' ? rawId : null, label)
  const io = parseIo(ctx, raw['io'], path, id, label, typeof type === 'string' ? type : '')
  const retryPolicy = parseRetryPolicy(ctx, raw['retry_policy'], `${path}.retry_policy`, label)
  const routing = parseRouting(ctx, raw['routing'], `${path}.routing`, id, label)

  const extra: Record<string, unknown> = Object.fromEntries(
    Object.entries(raw)
      .filter(([k, v]) => !NODE_FIELDS.has(k) && v !== undefined)
      .map(([k, v]) => [k, cloneData(ctx, v, keyPath(path, k))]),
  )

  return {
    node_id: id,
    type: typeof type === 'string' ? type : '',
    depends_on: dependsOn,
    fan_in: fan.fanIn,
    fan_in_raw: fan.raw,
    io,
    retry_policy: retryPolicy,
    routing,
    extra,
  }
}

/** `status`, `attempt_epoch`, `stats`, `lease`: a submitted graph starts fresh. */
function checkPriming(ctx: Context, raw: Obj, path: string, label: string): void {
  const { problems } = ctx
  const status = raw['status']
  const statusOk =
    isAbsent(status) || status === 'queued' || (typeof status === 'string' && status.trim() === '')
  if (!statusOk) {
    problems.add(
      ErrorCode.BadField,
      `${path}.status`,
      `${label} has status ${describe(status)}: a submitted graph starts fresh, so status may only be "queued" or null`,
    )
  }
  const epoch = raw['attempt_epoch']
  if (!isAbsent(epoch) && epoch !== 0) {
    problems.add(
      ErrorCode.BadField,
      `${path}.attempt_epoch`,
      `${label} has attempt_epoch ${describe(epoch)}: a submitted graph starts fresh, so attempt_epoch may only be 0`,
    )
  }
  for (const field of ['stats', 'lease']) {
    const v = raw[field]
    if (!isAbsent(v) && !(isObject(v) && Object.keys(v).length === 0)) {
      problems.add(
        ErrorCode.BadField,
        `${path}.${field}`,
        `${label} has ${field} ${describe(v)}: a submitted graph starts fresh, so ${field} may only be {} or null`,
      )
    }
  }
}

function parseDependsOn(ctx: Context, v: unknown, path: string, id: string, label: string): string[] {
  const { problems } = ctx
  const out: string[] = []
  if (isAbsent(v)) return out
  if (!Array.isArray(v)) {
    problems.add(ErrorCode.BadField, `${path}.depends_on`, `must be an array of node ids, got ${describe(v)}`)
    return out
  }
  const seen = new Set<string>()
  v.forEach((dep, k) => {
    const p = `${path}.depends_on[${k}]`
    if (typeof dep !== 'string') {
      problems.add(ErrorCode.BadField, p, `must be a node id string, got ${describe(dep)}`)
    } else if (id !== '' && dep === id) {
      problems.add(ErrorCode.Cycle, p, `${label} depends on itself (cycle: ${id} -> ${id})`, {
        cycle: [id, id],
      })
    } else if (!ctx.knownIds.has(dep)) {
      problems.add(ErrorCode.UnknownNode, p, `${label} depends on unknown node ${quote(dep)}`, {
        node_id: dep,
        referenced_by: id,
      })
    } else if (!seen.has(dep)) {
      seen.add(dep)
      out.push(dep)
      if (id !== '') ctx.relations.push({ from: dep, to: id, path: p })
    }
  })
  return out
}

const FAN_IN_COUNT = /^count:(.*)$/s

function parseFanIn(
  ctx: Context,
  v: unknown,
  path: string,
  id: string | null,
  label: string,
): { fanIn: FanIn; raw: string } {
  const { problems } = ctx
  const p = `${path}.fan_in`
  const fallback = { fanIn: { kind: 'all' } as FanIn, raw: 'all' }
  if (isAbsent(v) || v === 'all') return fallback
  if (v === 'any') return { fanIn: { kind: 'any' }, raw: 'any' }
  const expected = 'expected "all", "any" or "count:N" with N an integer >= 1'
  if (typeof v !== 'string') {
    problems.add(ErrorCode.BadFanIn, p, `invalid fan_in ${describe(v)} on ${label}: ${expected}`)
    return fallback
  }
  const m = FAN_IN_COUNT.exec(v)
  if (m === null) {
    problems.add(ErrorCode.BadFanIn, p, `invalid fan_in ${quote(v)} on ${label}: ${expected}`)
    return fallback
  }
  const digits = m[1] ?? ''
  const n = /^[0-9]{1,9}$/.test(digits) ? Number(digits) : Number.NaN
  if (!Number.isInteger(n) || n < 1) {
    problems.add(
      ErrorCode.BadFanIn,
      p,
      `invalid fan_in ${quote(v)} on ${label}: N in "count:N" must be an integer >= 1`,
    )
    return fallback
  }
  const raw = `count:${n}`
  if (id !== null) {
    const parents = ctx.parentCounts.get(id) ?? 0
    if (n > parents) {
      problems.add(
        ErrorCode.BadFanIn,
        p,
        parents === 0
          ? `fan_in ${quote(v)} on ${label} needs ${n} parent${n === 1 ? '' : 's'} but it has none (no depends_on, edges or edges_ex into it)`
          : `fan_in ${quote(v)} on ${label} needs ${n} parents but it has ${parents}`,
        { needed: n, parents },
      )
    }
  }
  return { fanIn: { kind: 'count', n }, raw }
}

function parseIo(ctx: Context, v: unknown, path: string, id: string, label: string, type: string): NodeIO {
  const { problems, options } = ctx
  const p = `${path}.io`
  let rawIo: Obj = {}
  if (!isAbsent(v)) {
    if (isObject(v)) rawIo = v
    else problems.add(ErrorCode.BadField, p, `io of ${label} must be an object, got ${describe(v)}`)
  }
  const io = (cloneData(ctx, rawIo, p) ?? {}) as NodeIO

  const sw = rawIo['start_when']
  if (isAbsent(sw)) {
    io.start_when = 'ready'
  } else if (sw !== 'ready' && sw !== 'first_batch') {
    problems.add(
      ErrorCode.BadField,
      `${p}.start_when`,
      `invalid start_when ${describe(sw)} on ${label}: expected "ready" or "first_batch"`,
    )
  }

  const inline = rawIo['input_inline']
  if (!isAbsent(inline)) {
    if (!isObject(inline)) {
      problems.add(
        ErrorCode.BadField,
        `${p}.input_inline`,
        `input_inline of ${label} must be an object, got ${describe(inline)}`,
      )
    } else {
      const adapter = inline['input_adapter']
      if (!isAbsent(adapter)) {
        const ap = `${p}.input_inline.input_adapter`
        if (typeof adapter !== 'string') {
          problems.add(ErrorCode.BadField, ap, `input_adapter of ${label} must be a string, got ${describe(adapter)}`)
        } else if (options.inputAdapters !== undefined && !options.inputAdapters.has(adapter)) {
          const known = [...options.inputAdapters].sort()
          problems.add(
            ErrorCode.UnknownInputAdapter,
            ap,
            `unknown input adapter ${quote(adapter)} on ${label}; known adapters: ${listOrNone(known)}`,
            { adapter, known },
          )
        }
      }
      // Adapter args are the worker's to validate (bad_input_args at run time); only the node
      // references are checked here.
      const args = inline['input_args']
      if (isObject(args)) checkFromNodes(ctx, args, `${p}.input_inline.input_args`, id, label)
    }
  }

  const fnArgs = rawIo['fn_args']
  if (fnArgs === null) {
    delete io.fn_args
  } else if (fnArgs !== undefined) {
    if (!isObject(fnArgs)) {
      problems.add(ErrorCode.BadField, `${p}.fn_args`, `fn_args of ${label} must be an object, got ${describe(fnArgs)}`)
    } else {
      checkFromNodes(ctx, fnArgs, `${p}.fn_args`, id, label)
    }
  }

  if (type === COORDINATOR_FN_TYPE) {
    const fn = rawIo['fn']
    const known = [...options.coordinatorFns].sort()
    if (isAbsent(fn)) {
      problems.add(
        ErrorCode.UnknownCoordinatorFn,
        `${p}.fn`,
        `${label} has type "${COORDINATOR_FN_TYPE}" but no io.fn; known functions: ${listOrNone(known)}`,
        { known },
      )
    } else if (typeof fn !== 'string') {
      problems.add(ErrorCode.BadField, `${p}.fn`, `io.fn of ${label} must be a string, got ${describe(fn)}`)
    } else if (!options.coordinatorFns.has(fn)) {
      problems.add(
        ErrorCode.UnknownCoordinatorFn,
        `${p}.fn`,
        `unknown coordinator function ${quote(fn)} on ${label}; known functions: ${listOrNone(known)}`,
        { fn, known },
      )
    }
  }
  return io
}

function listOrNone(names: string[]): string {
  return names.length === 0 ? '(none registered)' : names.map((n) => JSON.stringify(n)).join(', ')
}

/** `from_nodes` (id or array of ids) and its alias `from_node` must name existing nodes. */
function checkFromNodes(ctx: Context, args: Obj, path: string, id: string, label: string): void {
  const { problems } = ctx
  for (const key of ['from_nodes', 'from_node']) {
    const v = args[key]
    if (isAbsent(v)) continue
    const p = `${path}.${key}`
    const check = (ref: unknown, refPath: string): void => {
      if (typeof ref !== 'string') {
        problems.add(ErrorCode.BadField, refPath, `must be a node id string, got ${describe(ref)}`)
      } else if (id !== '' && ref === id) {
        problems.add(ErrorCode.Cycle, refPath, `${label} reads its own output (${key} names ${quote(ref)})`, {
          cycle: [id, id],
        })
      } else if (!ctx.knownIds.has(ref)) {
        problems.add(ErrorCode.UnknownNode, refPath, `${label} reads from unknown node ${quote(ref)} (${key})`, {
          node_id: ref,
          referenced_by: id,
        })
      }
    }
    if (typeof v === 'string') check(v, p)
    else if (Array.isArray(v)) {
      v.forEach((ref, k) => {
        check(ref, `${p}[${k}]`)
      })
    }
    else problems.add(ErrorCode.BadField, p, `${key} must be a node id or an array of node ids, got ${describe(v)}`)
  }
}

function parseRetryPolicy(ctx: Context, v: unknown, path: string, label: string): RetryPolicy | null {
  const { problems } = ctx
  if (isAbsent(v)) return null
  if (!isObject(v)) {
    problems.add(ErrorCode.BadField, path, `retry_policy of ${label} must be an object, got ${describe(v)}`)
    return null
  }
  const policy: RetryPolicy = {
    max: DEFAULT_RETRY_MAX,
    backoff_sec: DEFAULT_RETRY_BACKOFF_SEC,
    permanent_on: [],
  }
  const max = v['max']
  if (!isAbsent(max)) {
    if (typeof max === 'number' && Number.isSafeInteger(max) && max >= 1) policy.max = max
    else problems.add(ErrorCode.BadField, `${path}.max`, `retry_policy.max of ${label} must be an integer >= 1, got ${describe(max)}`)
  }
  const backoff = v['backoff_sec']
  if (!isAbsent(backoff)) {
    if (typeof backoff === 'number' && Number.isFinite(backoff) && backoff >= 0) policy.backoff_sec = backoff
    else
      problems.add(
        ErrorCode.BadField,
        `${path}.backoff_sec`,
        `retry_policy.backoff_sec of ${label} must be a finite number >= 0 (seconds, fractions allowed), got ${describe(backoff)}`,
      )
  }
  const permanentOn = v['permanent_on']
  if (!isAbsent(permanentOn)) {
    if (!Array.isArray(permanentOn)) {
      problems.add(
        ErrorCode.BadField,
        `${path}.permanent_on`,
        `retry_policy.permanent_on of ${label} must be an array of reason codes, got ${describe(permanentOn)}`,
      )
    } else {
      permanentOn.forEach((reason, k) => {
        if (typeof reason === 'string') {
          if (!policy.permanent_on.includes(reason)) policy.permanent_on.push(reason)
        } else {
          problems.add(ErrorCode.BadField, `${path}.permanent_on[${k}]`, `must be a reason code string, got ${describe(reason)}`)
        }
      })
    }
  }
  return policy
}

function parseRouting(
  ctx: Context,
  v: unknown,
  path: string,
  id: string,
  label: string,
): NodeSpec['routing'] {
  const { problems } = ctx
  if (isAbsent(v)) return null
  if (!isObject(v)) {
    problems.add(ErrorCode.BadField, path, `routing of ${label} must be an object, got ${describe(v)}`)
    return null
  }
  const branch = (key: 'on_success' | 'on_failure'): string[] => {
    const out: string[] = []
    const list = v[key]
    const p = `${path}.${key}`
    if (isAbsent(list)) return out
    if (!Array.isArray(list)) {
      problems.add(ErrorCode.BadField, p, `routing.${key} of ${label} must be an array of node ids, got ${describe(list)}`)
      return out
    }
    list.forEach((target, k) => {
      const tp = `${p}[${k}]`
      if (typeof target !== 'string') {
        problems.add(ErrorCode.BadField, tp, `must be a node id string, got ${describe(target)}`)
      } else if (id !== '' && target === id) {
        problems.add(ErrorCode.Cycle, tp, `${label} routes ${key} to itself (cycle: ${id} -> ${id})`, {
          cycle: [id, id],
        })
      } else if (!ctx.knownIds.has(target)) {
        problems.add(ErrorCode.UnknownNode, tp, `${label} routes ${key} to unknown node ${quote(target)}`, {
          node_id: target,
          referenced_by: id,
        })
      } else if (!out.includes(target)) {
        out.push(target)
        if (id !== '') ctx.relations.push({ from: id, to: target, path: tp })
      }
    })
    return out
  }
  return { on_success: branch('on_success'), on_failure: branch('on_failure') }
}

/** Checks one edge endpoint; returns the id when it names an existing node. */
function endpoint(ctx: Context, v: unknown, path: string, edgeText: () => string): string | null {
  if (typeof v !== 'string') {
    ctx.problems.add(ErrorCode.BadField, path, `must be a node id string, got ${describe(v)}`)
    return null
  }
  if (!ctx.knownIds.has(v)) {
    ctx.problems.add(ErrorCode.UnknownNode, path, `${edgeText()} names unknown node ${quote(v)}`, { node_id: v })
    return null
  }
  return v
}

function edgeLabel(from: unknown, to: unknown): string {
  const end = (x: unknown): string => (typeof x === 'string' ? quote(x) : describe(x))
  return `edge ${end(from)} -> ${end(to)}`
}

function parseEdges(ctx: Context, v: unknown): [string, string][] {
  const { problems } = ctx
  const out: [string, string][] = []
  if (isAbsent(v)) return out
  if (!Array.isArray(v)) {
    problems.add(ErrorCode.BadField, 'edges', `must be an array of [from, to] pairs, got ${describe(v)}`)
    return out
  }
  v.forEach((e, k) => {
    const p = `edges[${k}]`
    if (!Array.isArray(e) || e.length !== 2) {
      problems.add(ErrorCode.BadField, p, `must be a [from, to] pair of node ids, got ${describe(e)}`)
      return
    }
    const text = (): string => edgeLabel(e[0], e[1])
    const from = endpoint(ctx, e[0], `${p}[0]`, text)
    const to = endpoint(ctx, e[1], `${p}[1]`, text)
    if (from === null || to === null) return
    if (from === to) {
      problems.add(ErrorCode.Cycle, p, `${text()} links a node to itself (cycle: ${from} -> ${from})`, {
        cycle: [from, from],
      })
      return
    }
    out.push([from, to])
    ctx.relations.push({ from, to, path: p })
  })
  return out
}

function parseEdgesEx(ctx: Context, v: unknown): EdgeEx[] {
  const { problems } = ctx
  const out: EdgeEx[] = []
  if (isAbsent(v)) return out
  if (!Array.isArray(v)) {
    problems.add(
      ErrorCode.BadField,
      'edges_ex',
      `must be an array of {"from", "to", "mode", "trigger"} objects, got ${describe(v)}`,
    )
    return out
  }
  v.forEach((e, k) => {
    const p = `edges_ex[${k}]`
    if (!isObject(e)) {
      problems.add(ErrorCode.BadField, p, `must be an object {"from", "to", "mode"?, "trigger"?}, got ${describe(e)}`)
      return
    }
    const text = (): string => `edges_ex ${edgeLabel(e['from'], e['to'])}`
    const from = endpoint(ctx, e['from'], `${p}.from`, text)
    const to = endpoint(ctx, e['to'], `${p}.to`, text)
    const opt = (key: 'mode' | 'trigger', fallback: string): string => {
      const x = e[key]
      if (isAbsent(x)) return fallback
      if (typeof x === 'string') return x
      problems.add(ErrorCode.BadField, `${p}.${key}`, `${key} of ${text()} must be a string, got ${describe(x)}`)
      return fallback
    }
    const mode = opt('mode', DEFAULT_EDGE_MODE)
    const trigger = opt('trigger', DEFAULT_EDGE_TRIGGER)
    if (from === null || to === null) return
    if (from === to) {
      problems.add(ErrorCode.Cycle, p, `${text()} links a node to itself (cycle: ${from} -> ${from})`, {
        cycle: [from, from],
      })
      return
    }
    out.push({ from, to, mode, trigger })
    ctx.relations.push({ from, to, path: p })
  })
  return out
}

/**
 * Depth-first search over the run-before relation, nodes and relations in document order; every
 * back edge is one reported cycle, with the path where its closing relation was declared.
 */
function findCycles(ctx: Context, nodes: NodeSpec[]): void {
  const adjacency = new Map<string, Relation[]>()
  for (const r of ctx.relations) {
    let list = adjacency.get(r.from)
    if (list === undefined) {
      list = []
      adjacency.set(r.from, list)
    }
    list.push(r)
  }
  const WHITE = 0
  const GRAY = 1
  const BLACK = 2
  const color = new Map<string, number>()
  for (const root of nodes) {
    if (root.node_id === '' || (color.get(root.node_id) ?? WHITE) !== WHITE) continue
    const stack: { id: string; next: number }[] = [{ id: root.node_id, next: 0 }]
    color.set(root.node_id, GRAY)
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!
      const out = adjacency.get(top.id) ?? []
      const rel = out[top.next]
      if (rel === undefined) {
        color.set(top.id, BLACK)
        stack.pop()
        continue
      }
      top.next += 1
      const c = color.get(rel.to) ?? WHITE
      if (c === WHITE) {
        color.set(rel.to, GRAY)
        stack.push({ id: rel.to, next: 0 })
      } else if (c === GRAY) {
        const start = stack.findIndex((f) => f.id === rel.to)
        const cycle = [...stack.slice(start).map((f) => f.id), rel.to]
        ctx.problems.add(ErrorCode.Cycle, rel.path, `dependency cycle: ${cycle.join(' -> ')}`, { cycle })
      }
    }
  }
}
