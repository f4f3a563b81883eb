/**
 * What a registered coordinator function returned, checked before anything of it is applied, as
 * a worker checks a handler's result: `{ meta?, stats?, vars?, nodeStats? }`, each plain JSON data
 * (objects, arrays, strings, finite numbers, booleans, null), `vars` within the task variables'
 * key rules and limits, `meta` within the size of an artifact. Anything else fails the node
 * permanently (`bad_fn_result`), naming the field: before, a BigInt left the task unreadable
 * (every read threw, and a listing of all tasks with it), a Map or NaN was stored changed, and
 * `vars` of any shape or size replaced the task's variables. The built-in functions are not
 * checked (their results are built to these rules).
 */
import { PermanentError } from '../errors.ts'
import { copyData } from '../graph/parse-context.ts'
import { MAX_ARTIFACT_META_BYTES } from '../ports/store-rules.ts'
import type { CoordinatorFnResult } from './functions.ts'
import { VARS_LIMITS, VarsError, checkPathLimits, checkSegment, checkValue, countLeaves, isPlainObject, jsonBytes } from './vars-rules.ts'

export const BAD_FN_RESULT = 'bad_fn_result'

/** Deepest nesting accepted in a function's meta, stats and nodeStats. */
const MAX_RESULT_DEPTH = 64

export class FnResultError extends PermanentError {
  constructor(message: string) {
    super(message, BAD_FN_RESULT)
    this.name = 'FnResultError'
  }
}

function kind(v: unknown): string {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'an array'
  return typeof v === 'object' ? (Object.prototype.toString.call(v) === '[object Object]' ? 'an object' : Object.prototype.toString.call(v).slice(8, -1)) : typeof v
}

/** A copy of `v` (an object of plain JSON data) or a FnResultError naming `field`. */
function data(fn: string, field: string, v: unknown): Record<string, unknown> {
  if (!isPlainObject(v)) throw new FnResultError(`coordinator function ${JSON.stringify(fn)} returned ${field} as ${kind(v)}, not an object`)
  const c = copyData(v, field, `coordinator function ${JSON.stringify(fn)} returned ${field}`, MAX_RESULT_DEPTH, 'its nesting limit')
  if (!c.ok) throw new FnResultError(`${c.problem.text} (at ${c.problem.path})`)
  return c.value as Record<string, unknown>
}

/** The task's new variables: plain JSON, every key valid, within the key count and size limits. */
function vars(fn: string, v: unknown): Record<string, unknown> {
  const copy = data(fn, 'vars', v)
  const op = `coordinator function ${JSON.stringify(fn)} returned vars`
  try {
    for (const k of Object.keys(copy)) {
      checkSegment(op, k, k)
      checkPathLimits(op, k, 1)
      checkValue(op, k, 1, copy[k], Number.POSITIVE_INFINITY)
    }
  } catch (err) {
    if (err instanceof VarsError) throw new FnResultError(err.message)
    throw err
  }
  const keys = countLeaves(copy)
  if (keys > VARS_LIMITS.maxKeys) throw new FnResultError(`${op} with ${keys} keys; the key limit is ${VARS_LIMITS.maxKeys}`)
  const bytes = jsonBytes(copy)
  if (bytes > VARS_LIMITS.maxTotalBytes) throw new FnResultError(`${op} of ${bytes} bytes of JSON; the limit is ${VARS_LIMITS.maxTotalBytes} bytes`)
  return copy
}

/** Checks (and copies) what registered function `fn` returned; nothing (undefined, null) is an empty result. */
export function checkFnResult(fn: string, res: unknown): CoordinatorFnResult {
  if (res === undefined || res === null) return {}
  if (!isPlainObject(res)) throw new FnResultError(`coordinator function ${JSON.stringify(fn)} returned ${kind(res)}, not an object { meta?, stats?, vars?, nodeStats? }`)
  const out: CoordinatorFnResult = {}
  if (res['meta'] !== undefined && res['meta'] !== null) {
    const meta = data(fn, 'meta', res['meta'])
    const bytes = jsonBytes(meta)
    if (bytes > MAX_ARTIFACT_META_BYTES) throw new FnResultError(`coordinator function ${JSON.stringify(fn)} returned a meta of ${bytes} bytes of JSON, more than the artifact limit of ${MAX_ARTIFACT_META_BYTES}`)
    out.meta = meta
  }
  if (res['stats'] !== undefined && res['stats'] !== null) out.stats = data(fn, 'stats', res['stats'])
  if (res['vars'] !== undefined) out.vars = vars(fn, res['vars'])
  if (res['nodeStats'] !== undefined && res['nodeStats'] !== null) {
    const all = data(fn, 'nodeStats', res['nodeStats'])
    for (const [target, stats] of Object.entries(all)) {
      if (!isPlainObject(stats)) throw new FnResultError(`coordinator function ${JSON.stringify(fn)} returned nodeStats.${target} as ${kind(stats)}, not an object`)
    }
    out.nodeStats = all as Record<string, Record<string, unknown>>
  }
  return out
}
