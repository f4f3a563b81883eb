/**
 * `flowkit validate <graph.json>` and `flowkit submit <graph.json>`.
 *
 * Both check a graph exactly as a coordinator does at submission (`buildTask`: the real parser,
 * params, the size limits of the coordinator config in `--config`), with the built-in coordinator
 * functions plus those of `--functions <module>`.
 *
 * Submission starts no coordinator (the deployment runs its own): the task is written to the
 * store as a new queued task (`Store.createTasks`, unique by id), and an `adopt` request on the
 * owners' topic (keyed by task id) has the coordinator that owns it load it at once (its sweep would, within
 * sweep_interval_sec). `--watch` then follows it.
 */
import { readFileSync } from 'node:fs'
import { COORDINATOR_DEFAULTS, resolveConfig } from '../config.ts'
import { builtinArgChecks } from '../coordinator/fn-args.ts'
import { BUILTIN_FUNCTIONS } from '../coordinator/functions.ts'
import type { FnArgsCheck } from '../graph/parse-context.ts'
import { buildTask } from '../coordinator/submit.ts'
import { ErrorCode, FlowkitError, GraphValidationError, errorMessage } from '../errors.ts'
import type { GraphProblem } from '../graph/parse.ts'
import { TASK_ID_PATTERN } from '../graph/types.ts'
import type { Store, TaskDoc } from '../ports/store.ts'
import { flag, int, parse, positionals, str } from './args.ts'
import { openStore } from './connect.ts'
import { controlRequest } from '../coordinator/control.ts'
import { sendControlWithin } from './control.ts'
import { CliError, EXIT, firstLine } from './errors.ts'
import { followStore } from './follow.ts'
import { loadFunctions } from './modules.ts'
import type { CommandBase, Out } from './output.ts'
import { makeProgress } from './progress.ts'
import { type Settings, resolveSettings } from './settings.ts'
import { whereJsonBreaks } from '../util/json-syntax.ts'
import { withoutBom } from '../util/text.ts'


/** Reads a JSON file named on the command line: missing → exit 4, not JSON → exit 1. */
export function readJsonFile(path: string, what: string): unknown {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    const code = (err as { code?: unknown }).code
    if (code === 'ENOENT') throw new CliError(EXIT.notFound, `${what} file ${path} not found`)
    throw new CliError(EXIT.failed, `cannot read ${what} file ${path}: ${errorMessage(err)}`)
  }
  text = withoutBom(text)
  try {
    return JSON.parse(text)
  } catch {
    // Where, not the text around it (JSON.parse's message quotes it; params may hold secrets).
    throw new CliError(EXIT.failed, `${what} file ${path} is not valid JSON${whereJsonBreaks(text)}`, { code: ErrorCode.GraphInvalid })
  }
}

export interface Submission {
  graph: unknown
  params: Record<string, unknown> | undefined
  fnNames: Set<string>
  /** Submission checks of the built-in functions' fn_args (less those a functions module replaces). */
  fnArgs: ReadonlyMap<string, FnArgsCheck>
}

/** Reads the graph (and params), and the names of the coordinator functions it may use. */
export async function readSubmission(graphPath: string, paramsPath: string | undefined, functionsPath: string | undefined): Promise<Submission> {
  const graph = readJsonFile(graphPath, 'graph')
  const params = paramsPath === undefined ? undefined : readJsonFile(paramsPath, 'params')
  if (params !== undefined && (params === null || typeof params !== 'object' || Array.isArray(params))) {
    throw new CliError(EXIT.failed, `params file ${paramsPath} must hold a JSON object`)
  }
  const fnNames = new Set(Object.keys(BUILTIN_FUNCTIONS))
  const own = functionsPath === undefined ? [] : Object.keys(await loadFunctions(functionsPath))
  for (const name of own) fnNames.add(name)
  return { graph, params: params as Record<string, unknown> | undefined, fnNames, fnArgs: builtinArgChecks(own) }
}

/** The task a coordinator with this config would create, or the graph's problems (exit 1). */
export function buildFrom(s: Settings, sub: Submission, id?: string): TaskDoc {
  const config = resolveConfig(COORDINATOR_DEFAULTS, s.coordinator, 'coordinator config')
  return buildTask(
    { graph: sub.graph, ...(sub.params === undefined ? {} : { params: sub.params }), ...(id === undefined ? {} : { id }) },
    { coordinatorFns: sub.fnNames, rejectUnknownInputAdapters: config.rejectUnknownInputAdapters, limits: config, fnArgs: sub.fnArgs },
    Date.now(),
  )
}

/** Every problem of a refused graph, as `{ code, path, message }`. */
export function problemsOf(err: FlowkitError): GraphProblem[] {
  const listed = err.details['errors']
  if (Array.isArray(listed) && listed.length > 0) return listed as GraphProblem[]
  return [{ code: err.code, path: String(err.details['path'] ?? ''), message: err.message }]
}

/** Prints a refused graph's problems and returns the CliError to exit with (1). */
export function graphRefused(out: Out, file: string, err: unknown): CliError {
  if (!(err instanceof GraphValidationError) && !(err instanceof FlowkitError && err.code === ErrorCode.GraphInvalid)) throw err
  const problems = problemsOf(err).map((p) => ({ code: p.code, path: p.path, message: p.message }))
  if (out.json) out.doc({ ok: false, file, errors: problems })
  else {
    out.line(`${file}: invalid graph, ${problems.length} problem${problems.length === 1 ? '' : 's'}:`)
    for (const p of problems) out.line(`  ${p.message}  [${p.code}]`)
  }
  return new CliError(EXIT.failed, `${file}: invalid graph (${problems.length} problem${problems.length === 1 ? '' : 's'})`, { code: problems.length === 1 ? (problems[0]?.code ?? ErrorCode.GraphInvalid) : ErrorCode.GraphInvalid, details: { reported: true } })
}

export async function validateCommand(argv: readonly string[], base: CommandBase): Promise<number> {
  const p = parse('validate', argv, { params: { type: 'string' }, functions: { type: 'string' }, config: { type: 'string', short: 'c' } })
  const [file] = positionals('validate', p, ['graph.json']) as [string]
  const settings = resolveSettings(p)
  const sub = await readSubmission(file, str(p, 'params'), str(p, 'functions'))
  let task: TaskDoc
  try {
    task = buildFrom(settings, sub)
  } catch (err) {
    throw graphRefused(base.out, file, err)
  }
  const nodes = task.graph.nodes.length
  // Distinct parent → child pairs: an edge may be declared in depends_on, edges and edges_ex at once.
  const pairs = new Set<string>()
  for (const n of task.graph.nodes) for (const d of n.depends_on) pairs.add(`${d}\u0000${n.node_id}`)
  for (const [from, to] of task.graph.edges) pairs.add(`${from}\u0000${to}`)
  for (const e of task.graph.edges_ex) pairs.add(`${e.from}\u0000${e.to}`)
  const links = pairs.size
  if (base.out.json) base.out.doc({ ok: true, file, nodes, node_ids: task.graph.nodes.map((n) => n.node_id) })
  else base.out.line(`${file}: ok (${nodes} node${nodes === 1 ? '' : 's'}, ${links} dependency link${links === 1 ? '' : 's'})`)
  return EXIT.ok
}

export function submitOptions(): Parameters<typeof parse>[2] {
  return {
    params: { type: 'string' },
    functions: { type: 'string' },
    id: { type: 'string' },
    watch: { type: 'boolean', short: 'w' },
    interval: { type: 'string' },
  }
}

/** Sweep period of a coordinator with this config (how long adoption of a CLI submission may take). */
export function sweepSeconds(s: Settings): number {
  const config = resolveConfig(COORDINATOR_DEFAULTS, s.coordinator, 'coordinator config')
  return Math.max(0.1, config.sweepIntervalSec)
}

export async function submitCommand(argv: readonly string[], base: CommandBase): Promise<number> {
  const p = parse('submit', argv, submitOptions(), true)
  const [file] = positionals('submit', p, ['graph.json']) as [string]
  const settings = resolveSettings(p)
  const interval = int('submit', p, 'interval', 50, 60_000)
  const id = str(p, 'id')
  // A bad --id is a bad argument (exit 2), not a problem of the graph.
  if (id !== undefined && !TASK_ID_PATTERN.test(id)) throw new CliError(EXIT.usage, `--id ${JSON.stringify(id)} is not a task id: it must match ${TASK_ID_PATTERN}`)
  const sub = await readSubmission(file, str(p, 'params'), str(p, 'functions'))
  let task: TaskDoc
  try {
    task = buildFrom(settings, sub, id)
  } catch (err) {
    throw graphRefused(base.out, file, err)
  }
  const store = await openStore(settings, 'write')
  try {
    const [err] = await store.createTasks([task])
    if (err) {
      if (err instanceof FlowkitError && err.code === ErrorCode.DuplicateKey) {
        throw new CliError(EXIT.failed, `a task with id ${task.id} already exists`, { hint: `see \`flowkit status ${task.id}\`, or submit without --id` })
      }
      throw err
    }
    // Tell the running coordinator at once (it would adopt the task at its next sweep anyway).
    let notified = true
    try {
      await sendControlWithin(settings, controlRequest('adopt', task.id, Date.now()))
    } catch (err) {
      notified = false
      base.out.note(`flowkit: could not notify the coordinator (${firstLine(errorMessage(err))}); it adopts the task at its next sweep`)
    }
    const sweep = sweepSeconds(settings)
    if (base.out.json && !flag(p, 'watch')) base.out.doc({ task_id: task.id, status: task.status, nodes: task.graph.nodes.length })
    else if (!base.out.json) base.out.line(`submitted task ${task.id} (${task.graph.nodes.length} node${task.graph.nodes.length === 1 ? '' : 's'})`)
    // Only when the coordinator could not be told: its sweep is then what finds the task.
    if (!base.out.json && !notified) base.out.note(`flowkit: the running coordinator picks it up within ${sweep} s (its sweep period)`)
    if (!flag(p, 'watch')) return EXIT.ok
    return await watchTask(store, task.id, base, interval, sweep)
  } finally {
    await store.close()
  }
}

/** Follows a task from the store until it ends: exit 0 when finished, 1 when failed or cancelled. */
export async function watchTask(store: Store, taskId: string, ctx: CommandBase, intervalMs: number | undefined, sweepSec: number): Promise<number> {
  const progress = makeProgress(ctx.out)
  try {
    const final = await followStore(store, taskId, progress, {
      signal: ctx.signal,
      ...(intervalMs === undefined ? {} : { intervalMs }),
      note: (t) => progress.note(`flowkit: ${t}`),
      stillQueued: {
        afterMs: Math.max(15_000, sweepSec * 1000 + 5000),
        notify: () =>
          progress.note(`flowkit: task ${taskId} is still queued: is a coordinator (\`flowkit coordinator\`) running against this database? It adopts new tasks within ${sweepSec} s.`),
      },
    })
    return final.status === 'finished' ? EXIT.ok : EXIT.failed
  } finally {
    progress.close()
  }
}

