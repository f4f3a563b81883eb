/**
 * Graph parsing, one node (see parse.ts): node_id, type, priming fields, depends_on and fan_in;
 * io, retry_policy and routing are in parse-io.ts.
 */
import { ErrorCode } from '../errors.ts'
import type { FanIn, NodeSpec } from './types.ts'
import { NODE_ID_PATTERN } from './types.ts'
import type { Context, Obj } from './parse-context.ts'
import { guardProblems } from './guard.ts'
import { NODE_TYPE_PATTERN, closest, cloneData, describe, isAbsent, isObject, keyPath, quote } from './parse-context.ts'
import { GUARD_MAX_DEPTH } from './guard.ts'
import { parseIo, parseRetryPolicy, parseRouting } from './parse-io.ts'

/** Node fields the parser understands; anything else goes to `extra`. */
const NODE_FIELDS = new Set([
  'node_id',
  'type',
  'depends_on',
  'fan_in',
  'io',
  'retry_policy',
  'routing',
  'timeout_sec',
  // priming fields from the Python tests: accepted, checked, dropped
  'status',
  'attempt_epoch',
  'stats',
  'lease',
])
/**
 * Field names an unknown node field is compared with: a near miss of one is refused ("did you
 * mean"). Other unknown fields are kept in `extra`; short names and the priming fields are left
 * out (`id`, `state` are plausible fields of their own).
 */
const KNOWN_NODE_FIELDS = ['node_id', 'type', 'depends_on', 'fan_in', 'retry_policy', 'routing', 'when', 'timeout_sec']
/**
 * Node fields that are another field's usual name or belong one level down: each would be kept
 * as an extra field and do nothing (a node-level `start_when` leaves streaming off, `timeout` sets
 * no timeout), so they are refused with the field meant.
 */
export const MISPLACED_NODE_FIELDS: Readonly<Record<string, string>> = {
  start_when: 'io.start_when',
  input_inline: 'io.input_inline',
  input_ref: 'io.input_ref',
  batching: 'io.batching',
  fn: 'io.fn',
  fn_args: 'io.fn_args',
  input_adapter: 'io.input_inline.input_adapter',
  input_args: 'io.input_inline.input_args',
  timeout: 'timeout_sec',
  timeout_s: 'timeout_sec',
  timeout_ms: 'timeout_sec (in seconds)',
  retry: 'retry_policy',
  retries: 'retry_policy',
  max_retries: 'retry_policy.max',
  depends: 'depends_on',
  deps: 'depends_on',
  dependencies: 'depends_on',
  parents: 'depends_on',
  after: 'depends_on',
  upstream: 'depends_on',
  needs: 'depends_on',
}
/** Longest node timeout (30 days). */
const MAX_TIMEOUT_SEC = 30 * 24 * 3600
/** A `when` guard may nest GUARD_MAX_DEPTH guards (2 containers each) on top of maxParamsDepth. */
const WHEN_EXTRA_DEPTH = 2 * (GUARD_MAX_DEPTH + 1) + 2

export function parseNode(ctx: Context, raw: unknown, i: number): NodeSpec | null {
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
      `invalid node_id ${quote(rawId)}: node ids must match ${idPattern} (1 to 128 ASCII letters, digits, "_" or "-", not "__proto__")`,
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
  const timeout = raw['timeout_sec']
  let timeoutSec: number | null = null
  if (timeout !== undefined && timeout !== null) {
    if (typeof timeout === 'number' && Number.isFinite(timeout) && timeout > 0 && timeout <= MAX_TIMEOUT_SEC) timeoutSec = timeout
    else problems.add(ErrorCode.BadField, `${path}.timeout_sec`, `timeout_sec of ${label} must be a number of seconds > 0 and at most ${MAX_TIMEOUT_SEC}, got ${describe(timeout)}`)
  }

  const extra: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(raw)) {
    if (NODE_FIELDS.has(k) || v === undefined) continue
    const meant = Object.hasOwn(MISPLACED_NODE_FIELDS, k) ? MISPLACED_NODE_FIELDS[k] : undefined
    if (meant !== undefined) {
      problems.add(ErrorCode.BadField, keyPath(path, k), `field ${quote(k)} on ${label} is not read here (did you mean ${JSON.stringify(meant)}?); as it is it would be ignored`, { field: k, suggestion: meant })
      continue
    }
    const typo = k === 'when' ? null : closest(k, KNOWN_NODE_FIELDS)
    if (typo !== null) {
      problems.add(
        ErrorCode.BadField,
        keyPath(path, k),
        `unknown field ${quote(k)} on ${label} (did you mean ${JSON.stringify(typo)}?); a misspelt field would be ignored`,
        { field: k, suggestion: typo },
      )
      continue
    }
    // fromEntries-like: a "__proto__" key stays data
    Object.defineProperty(extra, k, { value: cloneData(ctx, v, keyPath(path, k), label, k === 'when' ? WHEN_EXTRA_DEPTH : 0), enumerable: true, writable: true, configurable: true })
  }
  // Every problem of the guard, with the others of the graph (parseGraph normalises it once valid).
  if (extra['when'] !== undefined) {
    for (const p of guardProblems(extra['when'], keyPath(path, 'when'))) problems.add(ErrorCode.BadField, p.path, `${p.message} (the when guard of ${label})`)
  }

  return {
    node_id: id,
    type: typeof type === 'string' ? type : '',
    depends_on: dependsOn,
    fan_in: fan.fanIn,
    fan_in_raw: fan.raw,
    io,
    retry_policy: retryPolicy,
    routing,
    ...(timeoutSec !== null ? { timeout_sec: timeoutSec } : {}),
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
      const routed = ctx.routedParents.get(id) ?? []
      const note = routed.length === 0 ? '' : ` (${routed.map(quote).join(', ')} route${routed.length === 1 ? 's' : ''} to it: a routing source is not a parent)`
      problems.add(
        ErrorCode.BadFanIn,
        p,
        parents === 0
          ? `fan_in ${quote(v)} on ${label} needs ${n} parent${n === 1 ? '' : 's'} but it has none${routed.length === 0 ? ' (no depends_on, edges or edges_ex into it)' : note}`
          : `fan_in ${quote(v)} on ${label} needs ${n} parents but it has ${parents}${note}`,
        { needed: n, parents },
      )
    }
  }
  return { fanIn: { kind: 'count', n }, raw }
}

