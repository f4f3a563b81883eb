/**
 * Graph parsing, a node's io (input adapter, fn_args, coordinator fn), retry_policy and routing.
 */
import { ErrorCode } from '../errors.ts'
import { INPUT_ADAPTERS, PULL_FROM_ARTIFACTS, PULL_RECHUNK } from '../protocol/input-adapters.ts'
import type { NodeIO, NodeSpec, RetryPolicy } from './types.ts'
import { COORDINATOR_FN_TYPE } from './types.ts'
import type { Context, Obj } from './parse-context.ts'
import {
  DEFAULT_RETRY_BACKOFF_SEC,
  DEFAULT_RETRY_MAX,
  checkKeys,
  closest,
  cloneData,
  describe,
  didYouMean,
  isAbsent,
  isObject,
  keyPath,
  listOrNone,
  overLimit,
  quote,
} from './parse-context.ts'

/** io fields the coordinator reads; a near miss of one is refused ("did you mean"). */
const IO_FIELDS = ['start_when', 'input_ref', 'input_inline', 'batching', 'fn', 'fn_args']
const RETRY_FIELDS = ['max', 'backoff_sec', 'backoff_factor', 'backoff_max_sec', 'jitter', 'permanent_on']
const ROUTING_FIELDS = ['on_success', 'on_failure']

export function parseIo(ctx: Context, v: unknown, path: string, id: string, label: string, type: string): NodeIO {
  const { problems, options } = ctx
  const p = `${path}.io`
  let rawIo: Obj = {}
  if (!isAbsent(v)) {
    if (isObject(v)) rawIo = v
    else problems.add(ErrorCode.BadField, p, `io of ${label} must be an object, got ${describe(v)}`)
  }
  const cloned = cloneData(ctx, rawIo, p, label)
  const io = (cloned ?? {}) as NodeIO
  for (const k of Object.keys(rawIo)) {
    if (IO_FIELDS.includes(k)) continue
    if (k === 'input_adapter' || k === 'input_args') {
      // The worker reads them from io.input_inline only: here they would turn no adapter on.
      problems.add(ErrorCode.BadField, keyPath(p, k), `io field ${quote(k)} on ${label} is not read here (did you mean "io.input_inline.${k}"?); as it is it would be ignored`, { field: k, suggestion: `io.input_inline.${k}` })
      continue
    }
    const typo = closest(k, IO_FIELDS.filter((f) => f.length >= 4))
    if (typo !== null) {
      problems.add(ErrorCode.BadField, keyPath(p, k), `unknown io field ${quote(k)} on ${label} (did you mean ${JSON.stringify(typo)}?); a misspelt field would be ignored`, {
        field: k,
        suggestion: typo,
      })
    }
  }

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
      // Its other keys are the handler's; a near miss of the two the worker reads is refused.
      for (const k of Object.keys(inline)) {
        if (k === 'input_adapter' || k === 'input_args') continue
        const typo = closest(k, ['input_adapter', 'input_args'])
        if (typo !== null) {
          problems.add(ErrorCode.BadField, keyPath(`${p}.input_inline`, k), `unknown input_inline field ${quote(k)} on ${label} (did you mean ${JSON.stringify(typo)}?); a misspelt field would be ignored`, { field: k, suggestion: typo })
        }
      }
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
            `unknown input adapter ${quote(adapter)} on ${label}${didYouMean(adapter, known)}; known adapters: ${listOrNone(known)}`,
            { adapter, known },
          )
        } else if (options.inputAdapters === undefined) {
          // Unknown names pass by default (a Python worker may have adapters of its own), but not
          // a near miss of a built-in one: a flowkit worker would fail the node (bad_input_adapter)
          // only once its upstream ran. (A name in a given set of adapters is known: never a typo.)
          const typo = nearBuiltinAdapter(adapter)
          if (typo !== null) {
            problems.add(
              ErrorCode.UnknownInputAdapter,
              ap,
              `unknown input adapter ${quote(adapter)} on ${label} (did you mean ${JSON.stringify(typo)}?); a flowkit worker fails a node naming it (bad_input_adapter)`,
              { adapter, suggestion: typo, known: [...INPUT_ADAPTERS].sort() },
            )
          }
        }
      }
      // Adapter args are the worker's to validate (bad_input_args at run time); here the node
      // references, and for a built-in adapter the near misses of what it reads.
      const args = inline['input_args']
      if (isObject(args)) {
        checkFromNodes(ctx, args, `${p}.input_inline.input_args`, id, label)
        if (typeof adapter === 'string') checkBuiltinArgs(ctx, adapter, args, `${p}.input_inline.input_args`, label)
      }
    }
  }

  const fnArgs = rawIo['fn_args']
  if (fnArgs === null) {
    delete io.fn_args
  } else if (fnArgs !== undefined) {
    if (!isObject(fnArgs)) {
      problems.add(ErrorCode.BadField, `${p}.fn_args`, `fn_args of ${label} must be an object, got ${describe(fnArgs)}`)
    } else {
      checkFromNodes(ctx, fnArgs, `${p}.fn_args`, id, label, type === COORDINATOR_FN_TYPE)
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
    } else if (cloned !== null) {
      // The copy, within the depth limits (the raw value may nest deeper than a check can recurse).
      checkFnArgs(ctx, fn, io.fn_args, p, id, label)
    }
  } else if (!isAbsent(rawIo['fn'])) {
    // Read on no other node: the node would wait for a worker of its type (a near miss such as
    // "coordinator-fn": for ever), its function never run.
    problems.add(
      ErrorCode.BadField,
      `${p}.fn`,
      `io.fn is run only on a node of type "${COORDINATOR_FN_TYPE}"; ${label} has type ${quote(type)}, which a worker runs: set its type to "${COORDINATOR_FN_TYPE}" or remove io.fn`,
      { type },
    )
  }
  return io
}

/** The input_args a built-in adapter reads (src/worker/input.ts). */
const BUILTIN_ADAPTER_ARGS: Readonly<Record<string, readonly string[]>> = {
  [PULL_FROM_ARTIFACTS]: ['from_nodes', 'from_node', 'poll_ms'],
  [PULL_RECHUNK]: ['from_nodes', 'from_node', 'poll_ms', 'size', 'meta_list_key'],
}

/**
 * A built-in adapter's input_args: a near miss of an argument it reads (`metaListKey`, `sizee`),
 * while that argument is absent, is refused (it was ignored: a rechunk without its meta_list_key
 * takes each whole meta as one item). Other keys pass (a peer's adapter of the same name may read
 * more); the values are the worker's to check (`bad_input_args`, SCENARIOS S-054/S-057/S-058).
 */
function checkBuiltinArgs(ctx: Context, adapter: string, args: Record<string, unknown>, p: string, label: string): void {
  const reads = BUILTIN_ADAPTER_ARGS[adapter]
  if (reads === undefined) return
  for (const k of Object.keys(args)) {
    if (reads.includes(k)) continue
    const meant = closest(k, reads)
    if (meant !== null && args[meant] === undefined) {
      ctx.problems.add(ErrorCode.BadField, keyPath(p, k), `unknown input_args field ${quote(k)} of ${adapter} on ${label} (did you mean ${JSON.stringify(meant)}?); a misspelt argument would be ignored`, { field: k, suggestion: meant })
    }
  }
}

/** The function's own check of its `fn_args` (options.fnArgs), when it has one. */
function checkFnArgs(ctx: Context, fn: string, fnArgs: unknown, p: string, id: string, label: string): void {
  const check = ctx.options.fnArgs?.get(fn)
  if (check === undefined) return
  const args = isAbsent(fnArgs) ? {} : isObject(fnArgs) ? fnArgs : null
  if (args === null) return // not an object: reported above
  let report: ReturnType<typeof check>
  try {
    report = check(args)
  } catch (err) {
    ctx.problems.add(ErrorCode.BadField, `${p}.fn_args`, `fn_args of ${label} could not be checked (${fn}): ${err instanceof Error ? err.message : String(err)}`, { fn })
    return
  }
  for (const pr of report.problems) ctx.problems.add(ErrorCode.BadField, `${p}.fn_args${pr.path}`, `${pr.message} (fn_args of ${label})`, { fn })
  for (const ref of report.nodes) {
    const refPath = `${p}.fn_args${ref.path}`
    if (!ctx.knownIds.has(ref.id)) {
      ctx.problems.add(ErrorCode.UnknownNode, refPath, `${label} names unknown node ${quote(ref.id)} (fn_args of ${fn})`, { node_id: ref.id, referenced_by: id })
    } else if (ref.reads !== undefined && id !== '' && ref.id !== id) {
      // Read as from_nodes is: that node must run first (a cycle through it never ends).
      ctx.relations.push({ from: ref.id, to: id, path: refPath, via: ref.reads, fn: true })
    }
  }
}

/** `from_nodes` (id or array of ids) and its alias `from_node` must name existing nodes. */
function checkFromNodes(ctx: Context, args: Obj, path: string, id: string, label: string, fn = false): void {
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
      } else if (id !== '') {
        // Reading a node's output needs that node to run first: a cycle through it never ends.
        ctx.relations.push({ from: ref, to: id, path: refPath, via: key, ...(fn ? { fn: true as const } : {}) })
      }
    }
    if (typeof v === 'string') check(v, p)
    else if (Array.isArray(v)) {
      const first = new Map<string, number>()
      v.forEach((ref, k) => {
        const at = typeof ref === 'string' ? first.get(ref) : undefined
        // Named twice, a node would be waited for twice (an adapter that never ends) or counted twice.
        if (at !== undefined) problems.add(ErrorCode.BadField, `${p}[${k}]`, `${label} names ${quote(ref as string)} twice in ${key} (at [${at}] and [${k}])`, { node_id: ref })
        else {
          if (typeof ref === 'string') first.set(ref, k)
          check(ref, `${p}[${k}]`)
        }
      })
    }
    else problems.add(ErrorCode.BadField, p, `${key} must be a node id or an array of node ids, got ${describe(v)}`)
  }
}

export function parseRetryPolicy(ctx: Context, v: unknown, path: string, label: string): RetryPolicy | null {
  const { problems } = ctx
  if (isAbsent(v)) return null
  if (!isObject(v)) {
    problems.add(ErrorCode.BadField, path, `retry_policy of ${label} must be an object, got ${describe(v)}`)
    return null
  }
  checkKeys(ctx, v, path, `retry_policy of ${label}`, RETRY_FIELDS)
  const { maxRetryAttempts, maxRetryBackoffSec } = ctx.limits
  const policy: RetryPolicy = {
    max: DEFAULT_RETRY_MAX,
    backoff_sec: ctx.options.defaultBackoffSec ?? DEFAULT_RETRY_BACKOFF_SEC,
    permanent_on: [],
  }
  const max = v['max']
  if (!isAbsent(max)) {
    if (typeof max === 'number' && Number.isSafeInteger(max) && max >= 1) {
      if (max <= maxRetryAttempts) policy.max = max
      else
        problems.add(ErrorCode.GraphLimit, `${path}.max`, overLimit(`retry_policy.max of ${label} is`, max, 'attempts', maxRetryAttempts, 'maxRetryAttempts'), {
          limit: 'maxRetryAttempts',
          max: maxRetryAttempts,
          value: max,
        })
    } else problems.add(ErrorCode.BadField, `${path}.max`, `retry_policy.max of ${label} must be an integer >= 1, got ${describe(max)}`)
  }
  const backoff = v['backoff_sec']
  if (!isAbsent(backoff)) {
    if (typeof backoff === 'number' && Number.isFinite(backoff) && backoff >= 0) {
      if (backoff <= maxRetryBackoffSec) policy.backoff_sec = backoff
      else
        problems.add(
          ErrorCode.GraphLimit,
          `${path}.backoff_sec`,
          overLimit(`retry_policy.backoff_sec of ${label} is`, backoff, 'seconds', maxRetryBackoffSec, 'maxRetryBackoffSec'),
          { limit: 'maxRetryBackoffSec', max: maxRetryBackoffSec, value: backoff },
        )
    } else
      problems.add(
        ErrorCode.BadField,
        `${path}.backoff_sec`,
        `retry_policy.backoff_sec of ${label} must be a finite number >= 0 (seconds, fractions allowed), got ${describe(backoff)}`,
      )
  }
  const ranged = (key: 'backoff_factor' | 'backoff_max_sec' | 'jitter', min: number, max: number, what: string): void => {
    const x = v[key]
    if (isAbsent(x)) return
    if (typeof x === 'number' && Number.isFinite(x) && x >= min && x <= max) policy[key] = x
    else problems.add(ErrorCode.BadField, `${path}.${key}`, `retry_policy.${key} of ${label} must be ${what}, got ${describe(x)}`)
  }
  ranged('backoff_factor', 1, 100, 'a number from 1 (fixed delay) to 100')
  ranged('backoff_max_sec', 0, maxRetryBackoffSec, `a number of seconds from 0 to ${maxRetryBackoffSec} (maxRetryBackoffSec)`)
  ranged('jitter', 0, 1, 'a fraction from 0 to 1')
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

export function parseRouting(
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
  checkKeys(ctx, v, path, `routing of ${label}`, ROUTING_FIELDS)
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

/**
 * The built-in input adapter `name` is a near miss of (a typo, another case, the rechunk adapter
 * without its `:size` or with a number for it: the size goes in `input_args`), or null: a built-in
 * name itself, or nothing like one.
 */
export function nearBuiltinAdapter(name: string): string | null {
  if (INPUT_ADAPTERS.has(name)) return null
  const lower = name.toLowerCase()
  const rechunk = PULL_RECHUNK.slice(0, PULL_RECHUNK.indexOf(':'))
  if ((lower.length > PULL_FROM_ARTIFACTS.length && PULL_RECHUNK.startsWith(lower)) || lower.startsWith(`${rechunk}:`)) return PULL_RECHUNK
  return closest(name, [...INPUT_ADAPTERS])
}
