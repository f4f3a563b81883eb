/**
 * Declarative guards on task variables (conditional routing): a node's `when` decides from
 * `coordinator.vars`, once the node is otherwise ready, whether it runs or is skipped. No code is
 * evaluated; a guard is data:
 *
 *   { "var": "routing.sla", "op": "eq", "value": "gold" }
 *   { "all": [guard, …] }   { "any": [guard, …] }   { "not": guard }
 *
 * ops: eq, ne, in, nin (value is a list), exists (value true/false), gt, gte, lt, lte (numbers or
 * strings of the same type). A missing variable compares as absent: only `exists: false`, `ne`
 * and `nin` hold for it.
 */
import { ErrorCode, GraphValidationError } from '../errors.ts'
import { canonicalJson } from '../util/ids.ts'

export type Guard =
  | { var: string; op: GuardOp; value?: unknown }
  | { all: Guard[] }
  | { any: Guard[] }
  | { not: Guard }

export const GUARD_OPS = ['eq', 'ne', 'in', 'nin', 'exists', 'gt', 'gte', 'lt', 'lte'] as const
export type GuardOp = (typeof GUARD_OPS)[number]

const SEGMENT = /^[A-Za-z0-9_-]{1,128}$/
/** Deepest nesting of guards (`all` / `any` / `not`). */
export const GUARD_MAX_DEPTH = 16
const MAX_DEPTH = GUARD_MAX_DEPTH

function isObj(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

function bad(path: string, message: string): GraphValidationError {
  return new GraphValidationError(ErrorCode.BadField, `${path}: ${message}`, path)
}

/** A problem of a submitted guard: where, and what. */
export interface GuardProblem {
  path: string
  message: string
}

/** Every problem of a submitted guard (empty when it is valid), each with its path. */
export function guardProblems(raw: unknown, path: string): GuardProblem[] {
  const out: GuardProblem[] = []
  check(raw, path, 0, out)
  return out
}

function check(raw: unknown, path: string, depth: number, out: GuardProblem[]): void {
  if (depth > MAX_DEPTH) {
    out.push({ path, message: `guard nested deeper than ${MAX_DEPTH}` })
    return
  }
  if (!isObj(raw)) {
    out.push({ path, message: 'a guard must be an object' })
    return
  }
  const keys = Object.keys(raw)
  if (keys.length === 1 && (keys[0] === 'all' || keys[0] === 'any')) {
    const k = keys[0]
    const list = raw[k]
    if (!Array.isArray(list) || list.length === 0) out.push({ path: `${path}.${k}`, message: 'must be a non-empty list of guards' })
    else for (let i = 0; i < list.length; i++) check(list[i], `${path}.${k}[${i}]`, depth + 1, out)
    return
  }
  if (keys.length === 1 && keys[0] === 'not') {
    check(raw['not'], `${path}.not`, depth + 1, out)
    return
  }
  const v = raw['var']
  if (typeof v !== 'string' || v.length === 0 || v.length > 512 || !v.split('.').every((s) => SEGMENT.test(s))) {
    out.push({ path: `${path}.var`, message: `must be a dotted variable path of segments matching ${SEGMENT} (got ${JSON.stringify(v)})` })
  }
  const op = raw['op'] ?? 'eq'
  const knownOp = typeof op === 'string' && (GUARD_OPS as readonly string[]).includes(op)
  if (!knownOp) out.push({ path: `${path}.op`, message: `unknown guard op ${JSON.stringify(op)} (known: ${GUARD_OPS.join(', ')})` })
  const extra = keys.filter((k) => k !== 'var' && k !== 'op' && k !== 'value')
  if (extra.length > 0) out.push({ path, message: `unknown guard field(s) ${extra.map((k) => JSON.stringify(k)).join(', ')}` })
  if (!knownOp) return
  const value = raw['value']
  if ((op === 'in' || op === 'nin') && !Array.isArray(value)) out.push({ path: `${path}.value`, message: `op ${op} needs a list` })
  if (op === 'exists' && typeof value !== 'boolean' && value !== undefined) out.push({ path: `${path}.value`, message: 'op exists needs true or false' })
  if ((op === 'gt' || op === 'gte' || op === 'lt' || op === 'lte') && typeof value !== 'number' && typeof value !== 'string') {
    out.push({ path: `${path}.value`, message: `op ${op} needs a number or a string` })
  }
}

/** Checks a submitted guard and returns it normalised; throws GraphValidationError naming the path (of its first problem). */
export function parseGuard(raw: unknown, path: string): Guard {
  const first = guardProblems(raw, path)[0]
  if (first !== undefined) throw bad(first.path, first.message)
  return build(raw as Record<string, unknown>)
}

/** The normalised form of a guard guardProblems found valid. */
function build(raw: Record<string, unknown>): Guard {
  const keys = Object.keys(raw)
  if (keys.length === 1 && keys[0] === 'all') return { all: (raw['all'] as Record<string, unknown>[]).map(build) }
  if (keys.length === 1 && keys[0] === 'any') return { any: (raw['any'] as Record<string, unknown>[]).map(build) }
  if (keys.length === 1 && keys[0] === 'not') return { not: build(raw['not'] as Record<string, unknown>) }
  return { var: raw['var'] as string, op: (raw['op'] ?? 'eq') as GuardOp, value: raw['value'] }
}

const ABSENT = Symbol('absent')

function lookup(vars: Record<string, unknown>, path: string): unknown {
  let cur: unknown = vars
  for (const seg of path.split('.')) {
    if (!isObj(cur) || !Object.hasOwn(cur, seg)) return ABSENT
    cur = cur[seg]
  }
  return cur
}

function equal(a: unknown, b: unknown): boolean {
  if (a === b) return true
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false
  // Objects are equal whatever the order of their keys (variables set in another order).
  return canonicalJson(a) === canonicalJson(b)
}

export function evaluateGuard(guard: Guard, vars: Record<string, unknown>): boolean {
  if ('all' in guard) return guard.all.every((g) => evaluateGuard(g, vars))
  if ('any' in guard) return guard.any.some((g) => evaluateGuard(g, vars))
  if ('not' in guard) return !evaluateGuard(guard.not, vars)
  const actual = lookup(vars, guard.var)
  const value = guard.value
  switch (guard.op) {
    case 'exists':
      return (actual !== ABSENT) === (value !== false)
    case 'eq':
      return actual !== ABSENT && equal(actual, value)
    case 'ne':
      return actual === ABSENT || !equal(actual, value)
    case 'in':
      return actual !== ABSENT && (value as unknown[]).some((v) => equal(actual, v))
    case 'nin':
      return actual === ABSENT || !(value as unknown[]).some((v) => equal(actual, v))
    default: {
      if (actual === ABSENT || typeof actual !== typeof value) return false
      const a = actual as number | string
      const b = value as number | string
      if (guard.op === 'gt') return a > b
      if (guard.op === 'gte') return a >= b
      if (guard.op === 'lt') return a < b
      return a <= b
    }
  }
}
