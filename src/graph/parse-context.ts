/**
 * Shared pieces of graph parsing (see parse.ts): options, limits and defaults, the problem list,
 * the parse context, message helpers and the JSON-data copy used for free-form node fields.
 */
import { ErrorCode, GraphValidationError } from '../errors.ts'

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
}

export interface Context {
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

export function cloneData(ctx: Context, v: unknown, path: string): unknown {
  const c = copyJson(v, new Set())
  if (c.ok) return c.value
  ctx.problems.add(
    ErrorCode.BadField,
    `${path}${c.at}`,
    `must be plain JSON data (objects, arrays, strings, finite numbers, booleans, null; nested at most ${MAX_JSON_DEPTH} deep), got ${describe(c.bad)}`,
  )
  return undefined
}

export function listOrNone(names: string[]): string {
  return names.length === 0 ? '(none registered)' : names.map((n) => JSON.stringify(n)).join(', ')
}
