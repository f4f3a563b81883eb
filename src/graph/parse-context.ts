/**
 * Shared pieces of graph parsing (see parse.ts): options, limits and defaults, the problem list,
 * the parse context, message helpers and the JSON-data copy used for free-form node fields.
 */
import { ErrorCode, GraphValidationError } from '../errors.ts'
import { SUBMIT_LIMIT_DEFAULTS, type SubmitLimits, formatCount } from './limits.ts'

export interface ParseGraphOptions {
  /** Names of the registered coordinator functions (`io.fn` of `coordinator_fn` nodes). */
  coordinatorFns: ReadonlySet<string>
  /** Names of the known input adapters (`io.input_inline.input_adapter`). */
  /**
   * Known input adapters. When given, a graph naming another one is refused; when absent, adapter
   * names are left to the worker, which fails such a node with `bad_input_adapter`.
   */
  inputAdapters?: ReadonlySet<string>
  /** Submission limits (graph/limits.ts); defaults for the ones not given. */
  limits?: Partial<SubmitLimits>
  /**
   * Checks of coordinator functions' `fn_args` at submission, by function name (a coordinator
   * passes those of its built-in functions): what they find is a problem of the graph.
   */
  fnArgs?: ReadonlyMap<string, FnArgsCheck>
  /** `backoff_sec` of a `retry_policy` that does not give one (the coordinator's `defaultBackoffSec`; default 1). */
  defaultBackoffSec?: number
}

/**
 * What a FnArgsCheck finds: problems (paths relative to `fn_args`), and the node ids the arguments
 * name (which must exist); `reads`: the function reads that node's output (it must run first).
 */
export interface FnArgsReport {
  problems: { path: string; message: string }[]
  nodes: { path: string; id: string; reads?: string }[]
}

export type FnArgsCheck = (args: Readonly<Record<string, unknown>>) => FnArgsReport

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
/** The delay of a retry_policy without backoff_sec: the coordinator's default (defaultBackoffSec). */
export const DEFAULT_RETRY_BACKOFF_SEC = 1
export const DEFAULT_EDGE_MODE = 'async'
export const DEFAULT_EDGE_TRIGGER = 'on_done'
/** Past this many problems the list is cut short (`details.truncated: true`). */
export const MAX_REPORTED_PROBLEMS = 100

export type Obj = Record<string, unknown>

export function isObject(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

export function isAbsent(v: unknown): v is null | undefined {
  return v === undefined || v === null
}

/** JSON-escaped string, shortened past 128 characters. */
export function quote(s: string): string {
  return s.length <= 128 ? JSON.stringify(s) : `${JSON.stringify(s.slice(0, 128))}… (${s.length} chars)`
}

/** `base.key`, or `base["odd key"]` when the key is not a plain identifier. */
export function keyPath(base: string, key: string): string {
  return /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(key) ? `${base}.${key}` : `${base}[${JSON.stringify(key)}]`
}

/** Short description of any value for an error message: `string "x"`, `number 5`, `null`... */
export function describe(v: unknown): string {
  if (v === undefined) return 'undefined'
  if (v === null) return 'null'
  if (typeof v === 'string') return `string ${quote(v)}`
  if (typeof v === 'number' && !Number.isFinite(v)) return String(v) // NaN, Infinity (JSON would say null)
  if (typeof v === 'bigint') return `bigint ${String(v)}`
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

export class Problems {
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
export interface Relation {
  from: string
  to: string
  path: string
  /** Set for a node reading another's output (`from_nodes` / `from_node`): that key. */
  via?: string
  /** A coordinator function's read (its `fn_args`): it reads once, when it runs (parse-reads.ts). */
  fn?: true
}

export interface Context {
  problems: Problems
  options: ParseGraphOptions
  limits: SubmitLimits
  /** Every string node_id submitted (even invalid ones, to avoid cascading "unknown" errors). */
  knownIds: Set<string>
  /** First index of each node_id. */
  firstIndex: Map<string, number>
  /** Distinct parents of each node from depends_on ∪ edges ∪ edges_ex (routing sources aside), for fan_in counts. */
  parentCounts: Map<string, number>
  /** Per node: the routing sources among its depends_on / edges (not parents, not counted). */
  routedParents: Map<string, string[]>
  relations: Relation[]
}

/** Default deepest nesting accepted inside free-form fields (config `maxParamsDepth`). */
export const MAX_JSON_DEPTH = SUBMIT_LIMIT_DEFAULTS.maxParamsDepth

type Copy = { ok: true; value: unknown } | { ok: false; at: string; bad: unknown; why: 'type' | 'cycle' | 'depth' }

/**
 * Deep copy of JSON data (plain objects, arrays, primitives; `undefined` dropped from objects and
 * null in arrays, as JSON.stringify does); not ok for anything else, a circular reference or a
 * value nested deeper than `maxDepth` containers, with the relative path (`.a[2].b`) of the
 * offending value. Recursion is bounded by `maxDepth`.
 */
function copyJson(v: unknown, ancestors: Set<object>, maxDepth: number): Copy {
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return { ok: true, value: v }
  if (typeof v === 'number') return Number.isFinite(v) ? { ok: true, value: v } : { ok: false, at: '', bad: v, why: 'type' }
  if (typeof v !== 'object') return { ok: false, at: '', bad: v, why: 'type' }
  if (ancestors.has(v)) return { ok: false, at: '', bad: v, why: 'cycle' }
  const proto: unknown = Object.getPrototypeOf(v)
  const isArray = Array.isArray(v)
  if (!isArray && proto !== Object.prototype && proto !== null) return { ok: false, at: '', bad: v, why: 'type' }
  if (ancestors.size >= maxDepth) return { ok: false, at: '', bad: v, why: 'depth' }
  ancestors.add(v)
  try {
    if (isArray) {
      const out: unknown[] = []
      for (let i = 0; i < v.length; i++) {
        const item: unknown = v[i]
        const c = copyJson(item === undefined ? null : item, ancestors, maxDepth)
        if (!c.ok) return { ...c, at: `[${i}]${c.at}` }
        out.push(c.value)
      }
      return { ok: true, value: out }
    }
    const entries: [string, unknown][] = []
    for (const [k, item] of Object.entries(v)) {
      if (item === undefined) continue
      const c = copyJson(item, ancestors, maxDepth)
      if (!c.ok) return { ...c, at: keyPath('', k) + c.at }
      entries.push([k, c.value])
    }
    // fromEntries defines own data properties, so a "__proto__" key stays data
    return { ok: true, value: Object.fromEntries(entries) }
  } finally {
    ancestors.delete(v)
  }
}

/** A problem with free-form JSON data, as a graph problem (code, path, message). */
export interface DataProblem {
  code: ErrorCode
  path: string
  text: string
  details: Record<string, unknown>
}

/**
 * Copies free-form JSON data found at `path` (`owner` names it in messages: `node "a"`,
 * `task params`); a problem when it is not plain JSON, is circular, or nests deeper than
 * `maxDepth` (the setting that sets it is named).
 */
export function copyData(v: unknown, path: string, owner: string, maxDepth: number, setting = 'maxParamsDepth'): { ok: true; value: unknown } | { ok: false; problem: DataProblem } {
  const c = copyJson(v, new Set(), maxDepth)
  if (c.ok) return c
  const at = `${path}${c.at}`
  if (c.why === 'depth') {
    return {
      ok: false,
      problem: {
        code: ErrorCode.GraphLimit,
        path: at,
        text: `${owner}: value nested deeper than ${maxDepth} levels (coordinator config ${setting}); flatten it or pass a reference to the data instead`,
        details: { limit: setting, max: maxDepth },
      },
    }
  }
  if (c.why === 'cycle') {
    return {
      ok: false,
      problem: { code: ErrorCode.BadField, path: at, text: `${owner}: circular reference (the value contains itself); params must be plain JSON data`, details: {} },
    }
  }
  return {
    ok: false,
    problem: {
      code: ErrorCode.BadField,
      path: at,
      text: `${owner}: must be plain JSON data (objects, arrays, strings, finite numbers, booleans, null), got ${describe(c.bad)}`,
      details: {},
    },
  }
}

/** Copy of free-form node data for the parsed graph; a problem (and undefined) when it is not plain JSON data. */
export function cloneData(ctx: Context, v: unknown, path: string, owner = 'value', extraDepth = 0): unknown {
  const c = copyData(v, path, owner, ctx.limits.maxParamsDepth + extraDepth)
  if (c.ok) return c.value
  ctx.problems.add(c.problem.code, c.problem.path, c.problem.text, c.problem.details)
  return undefined
}

/** A limit exceeded: `the graph has 5,001 nodes, over the limit of 5,000 (coordinator config maxNodes)`. */
export function overLimit(what: string, n: number, unit: string, max: number, setting: string): string {
  return `${what} ${formatCount(n)} ${unit}, over the limit of ${formatCount(max)} (coordinator config ${setting})`
}

/**
 * Edit distance with adjacent transpositions (optimal string alignment), for "did you mean":
 * `asnyc` is 1 from `async`.
 */
export function editDistance(a: string, b: string): number {
  const m = a.length
  const n = b.length
  let prev2: number[] = []
  let prev: number[] = Array.from({ length: n + 1 }, (_, j) => j)
  for (let i = 1; i <= m; i++) {
    const cur: number[] = [i]
    for (let j = 1; j <= n; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      let d = Math.min((prev[j] as number) + 1, (cur[j - 1] as number) + 1, (prev[j - 1] as number) + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, (prev2[j - 2] as number) + 1)
      cur.push(d)
    }
    prev2 = prev
    prev = cur
  }
  return prev[n] as number
}

/**
 * The closest of `known` to `word` when it is close enough to be a typo of it, else null; with
 * `prefixes`, a known name that starts with `word` counts too (`backoff` for `backoff_sec`).
 */
export function closest(word: string, known: readonly string[], prefixes = false): string | null {
  const w = word.toLowerCase()
  let best: string | null = null
  let bestD = Number.POSITIVE_INFINITY
  for (const k of known) {
    const d = editDistance(w, k.toLowerCase())
    if (d < bestD) {
      best = k
      bestD = d
    }
  }
  if (best === null) return null
  const allowed = Math.max(1, Math.min(2, Math.floor(best.length / 4)))
  if (bestD <= allowed) return best
  if (prefixes && w.length >= 3) return known.find((k) => k.toLowerCase().startsWith(w)) ?? null
  return null
}

/** ` (did you mean "x"?)` or `` (prefixes count: for closed objects, where any unknown key is wrong). */
export function didYouMean(word: string, known: readonly string[]): string {
  const c = closest(word, known, true)
  return c === null ? '' : ` (did you mean ${JSON.stringify(c)}?)`
}

export function listOrNone(names: string[]): string {
  return names.length === 0 ? '(none registered)' : names.map((n) => JSON.stringify(n)).join(', ')
}

/** Unknown keys of a closed object (retry_policy, routing, edges_ex) are problems, with a hint. */
export function checkKeys(ctx: Context, v: Obj, path: string, what: string, known: readonly string[]): void {
  for (const k of Object.keys(v)) {
    if (known.includes(k) || v[k] === undefined) continue
    ctx.problems.add(
      ErrorCode.BadField,
      keyPath(path, k),
      `unknown field ${quote(k)} in ${what}${didYouMean(k, known)}; allowed fields: ${known.map((x) => JSON.stringify(x)).join(', ')}`,
      { field: k, allowed: [...known] },
    )
  }
}
