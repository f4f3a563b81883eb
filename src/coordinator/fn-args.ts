/**
 * Submission checks of the built-in coordinator functions' `fn_args` (ParseGraphOptions.fnArgs):
 * what a function would refuse whatever the task's state is refuses the graph at submission, with
 * its path, instead of failing the node when it runs. The node ids the arguments name must exist
 * (`from_nodes` / `from_node` are checked by the parser for every function).
 *
 * A function the coordinator was given under a built-in name replaces the built-in one, and its
 * check with it (`builtinArgChecks(overridden)`).
 */
import type { FnArgsCheck, FnArgsReport } from '../graph/parse-context.ts'
import { useBuiltinFnArgsChecks } from '../graph/builder.ts'
import { MERGE_SUMMARY_FIELDS, fromNodes } from './functions.ts'
import { VARS_FUNCTIONS, varsArgsProblem } from './vars.ts'
import { describeType } from './vars-rules.ts'

const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v)
const given = (v: unknown): boolean => v !== undefined && v !== null

/** At least one node in `from_nodes` or `from_node`, read as the functions read them. */
function hasFromNodes(args: Readonly<Record<string, unknown>>): boolean {
  return fromNodes(args).length > 0
}

/** `target.key` (default "merged") under which the metas go; `from_nodes` required. */
const mergeGeneric: FnArgsCheck = (args) => {
  const r: FnArgsReport = { problems: [], nodes: [] }
  if (!hasFromNodes(args)) r.problems.push({ path: '', message: 'merge.generic needs from_nodes: the nodes whose artifacts it merges' })
  const t = args['target']
  if (given(t) && !(isObj(t) && (t['key'] === undefined || typeof t['key'] === 'string'))) {
    r.problems.push({ path: '.target', message: 'target must be an object, its key (if any) a string' })
  } else if (isObj(t) && typeof t['key'] === 'string' && MERGE_SUMMARY_FIELDS.includes(t['key'])) {
    r.problems.push({ path: '.target.key', message: `target.key ${JSON.stringify(t['key'])} is one of merge.generic's summary fields (${MERGE_SUMMARY_FIELDS.join(', ')}): the merged items would be lost under it` })
  }
  return r
}

/** `{ node_id, mode }` or `{ from_nodes, metric?, mode, target_node?, target_key? }`; mode sum | mean. */
const metricsAggregate: FnArgsCheck = (args) => {
  const r: FnArgsReport = { problems: [], nodes: [] }
  const mode = args['mode']
  if (given(mode) && mode !== 'sum' && mode !== 'mean') r.problems.push({ path: '.mode', message: `mode must be "sum" or "mean", got ${typeof mode === 'string' ? JSON.stringify(mode) : describeType(mode)}` })
  for (const k of ['node_id', 'target_node']) {
    const v = args[k]
    if (!given(v)) continue
    // `node_id` (without from_nodes) is the node whose batch metrics are read: it must run first.
    if (typeof v === 'string') r.nodes.push(k === 'node_id' && !hasFromNodes(args) ? { path: `.${k}`, id: v, reads: k } : { path: `.${k}`, id: v })
    else r.problems.push({ path: `.${k}`, message: `${k} must be a node id, got ${describeType(v)}` })
  }
  if (typeof args['node_id'] !== 'string' && !hasFromNodes(args)) {
    r.problems.push({ path: '', message: "metrics.aggregate needs node_id (that node's batch metrics) or from_nodes (one stat of several nodes)" })
  }
  // The two forms do not mix: given from_nodes the function ignores node_id, else it reads node_id
  // alone and ignores metric/target_*: a graph giving both meant one of them to be ignored.
  if (given(args['node_id'])) {
    for (const k of ['from_nodes', 'from_node', 'metric', 'target_node', 'target_key']) {
      if (given(args[k])) r.problems.push({ path: `.${k}`, message: `${k} belongs to the from_nodes form, node_id to the seed's form (every metric of that one node): give one form` })
    }
  }
  for (const k of ['metric', 'target_key']) {
    const v = args[k]
    if (given(v) && (typeof v !== 'string' || v === '')) r.problems.push({ path: `.${k}`, message: `${k} must be a non-empty string, got ${describeType(v)}` })
  }
  return r
}

/** A vars function run on empty variables: what it refuses whatever the task's variables are. */
function varsCheck(name: string): FnArgsCheck {
  return (args) => {
    const err = varsArgsProblem(name, args as Record<string, unknown>)
    return { problems: err === null ? [] : [{ path: '', message: err.message }], nodes: [] }
  }
}

const CHECKS: Record<string, FnArgsCheck> = {
  'merge.generic': mergeGeneric,
  'metrics.aggregate': metricsAggregate,
  ...Object.fromEntries(Object.keys(VARS_FUNCTIONS).map((name) => [name, varsCheck(name)])),
}

/** The checks of the built-in functions, less those of the names in `overridden` (replaced by the caller's own functions). */
export function builtinArgChecks(overridden: Iterable<string> = []): ReadonlyMap<string, FnArgsCheck> {
  const out = new Map(Object.entries(CHECKS))
  for (const name of overridden) out.delete(name)
  return out
}

// The graph builder's build() runs these checks too (it cannot import them: src/graph is below).
useBuiltinFnArgsChecks(builtinArgChecks())
