/**
 * `flowkit dev`: a coordinator and a worker in this process, on the embedded runtime (memory bus
 * and memory store): nothing to install or connect.
 *
 * - `flowkit dev --handlers ./handlers.ts --graph g.json [--params p.json]` submits the graph and
 *   shows live per-node progress (from `Coordinator.watch`) until the task ends: exit 0 when it
 *   finished, 1 when it failed or was cancelled.
 * - `flowkit dev --handlers ./handlers.ts` keeps the runtime up until Ctrl-C.
 * - `flowkit dev` alone (and its alias `flowkit demo`, `npm start`) runs the built-in example
 *   pipeline (demo-pipeline.ts) with live progress and prints its result.
 *
 * Every form also serves the web dashboard (dashboard.ts, docs/dashboard.md) on loopback port
 * 7700 unless `--no-ui` (`--ui-port`, `--ui-host`); it stops with the runtime.
 *
 * Ctrl-C stops cleanly (the worker hands its runs back, the coordinator flushes); exit 130 when a
 * task was still running.
 */
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { MemoryBus } from '../adapters/memory/bus.ts'
import { MemoryStore } from '../adapters/memory/store.ts'
import { Coordinator } from '../coordinator/coordinator.ts'
import type { CoordinatorFn } from '../coordinator/functions.ts'
import type { TaskView } from '../coordinator/view.ts'
import { isFinalEvent } from '../coordinator/watch.ts'
import type { Logger } from '../log.ts'
import { metricsHandler } from '../observability/options.ts'
import type { RoleHandler } from '../worker/handler.ts'
import { Worker } from '../worker/worker.ts'
import { flag, int, parse, positionals, str } from './args.ts'
import { DEV_UI_OPTIONS, type UiSettings, devUiSettings, startDevDashboard } from './dashboard.ts'
import * as examples from './demo-pipeline.ts'
import { CliError, EXIT, usageError } from './errors.ts'
import { ErrorCode, FlowkitError } from '../errors.ts'
import { BUILTIN_FUNCTIONS } from '../coordinator/functions.ts'
import type { DashboardCoordinator } from '../ui/api.ts'
import { builtinArgChecks } from '../coordinator/fn-args.ts'
import { COORDINATOR_FN_TYPE } from '../graph/types.ts'
import { buildFrom, graphRefused, readJsonFile, readSubmission } from './graph-cmds.ts'
import { loadFunctions, loadHandlers } from './modules.ts'
import type { CommandBase } from './output.ts'
import { type Progress, makeProgress } from './progress.ts'
import { processLogger } from './connect.ts'
import { untilAborted } from './serve.ts'
import { type Settings, resolveSettings } from './settings.ts'

/** How long `dev` keeps an ended task (its config's `coordinator.task_retention_sec` wins). */
export const DEV_TASK_RETENTION_SEC = 24 * 3600

export interface Embedded {
  coordinator: Coordinator
  worker: Worker
  store: MemoryStore
  stop(): Promise<void>
}

export async function startEmbedded(s: Settings, handlers: Record<string, RoleHandler>, functions: Record<string, CoordinatorFn>, concurrency: number, log: Logger): Promise<Embedded> {
  const bus = new MemoryBus()
  const store = new MemoryStore()
  // Everything lives in this process's memory: ended tasks go a day after their end unless the
  // config says otherwise (a `dev` left running for days would otherwise grow without bound).
  const coordinator = new Coordinator({ bus, store, logger: log, config: { taskRetentionSec: DEV_TASK_RETENTION_SEC, ...s.coordinator }, functions })
  const worker = new Worker({ bus, store, logger: log, handlers, config: { workerId: 'dev-worker', ...s.worker, concurrency } })
  await coordinator.start()
  await worker.start()
  return {
    coordinator,
    worker,
    store,
    async stop() {
      await worker.stop()
      await coordinator.stop()
      await bus.close()
      await store.close()
    },
  }
}

/** Follows a task of this process's coordinator until it ends (or `signal` aborts: exit 130). */
export async function followEmbedded(coordinator: Coordinator, id: string, progress: Progress, signal: AbortSignal): Promise<TaskView> {
  try {
    for await (const e of coordinator.watch(id, { signal })) {
      progress.event(e)
      if (isFinalEvent(e)) break
      const t = await coordinator.getTask(id)
      if (t !== null) progress.view(t)
    }
    if (signal.aborted) throw new CliError(EXIT.interrupted, `interrupted: task ${id} was still running`)
    const t = await coordinator.waitForTask(id, { timeoutMs: 30_000 })
    progress.end(t)
    return t
  } finally {
    progress.close()
  }
}

function findExamples(): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (let i = 0; i < 5; i++) {
    const csv = join(dir, 'examples', 'data', 'sales.csv')
    if (existsSync(csv)) return csv
    dir = dirname(dir)
  }
  throw new CliError(EXIT.notFound, 'the example data examples/data/sales.csv is not installed')
}

/** A graph's nodes whose type no handler serves (in this process nothing else ever would: the task would wait forever). */
function unservedProblem(nodes: readonly { node_id: string; type: string }[], handlers: Record<string, RoleHandler>, where: string): { message: string; details: { types: string[]; nodes: string[] } } | null {
  const unserved = nodes.filter((n) => n.type !== COORDINATOR_FN_TYPE && !Object.hasOwn(handlers, n.type))
  if (unserved.length === 0) return null
  const types = [...new Set(unserved.map((n) => n.type))]
  const ids = unserved.map((n) => n.node_id)
  return {
    message: `no handler ${where} serves type${types.length > 1 ? 's' : ''} ${types.map((t) => JSON.stringify(t)).join(', ')} (node${ids.length > 1 ? 's' : ''} ${ids.join(', ')}); its roles: ${Object.keys(handlers).join(', ') || 'none'}`,
    details: { types, nodes: ids },
  }
}

/**
 * The coordinator as dev's dashboard sees it: a task submitted (or resubmitted) there whose graph
 * has a type no handler of this process serves is refused (422) as `--graph` would refuse it.
 */
function servedOnly(c: Coordinator, s: Settings, handlers: Record<string, RoleHandler>, functions: Record<string, CoordinatorFn>): DashboardCoordinator {
  const fnNames = new Set([...Object.keys(BUILTIN_FUNCTIONS), ...Object.keys(functions)])
  const fnArgs = builtinArgChecks(Object.keys(functions))
  const createTask: Coordinator['createTask'] = (input) => {
    let nodes: { node_id: string; type: string }[] | null = null
    try {
      nodes = Object.values(buildFrom(s, { graph: input.graph, params: input.params, fnNames, fnArgs }).nodes)
    } catch {
      // Refused: createTask says why, with every problem.
    }
    const problem = nodes === null ? null : unservedProblem(nodes, handlers, 'of this dev runtime')
    if (problem !== null) return Promise.reject(new FlowkitError(ErrorCode.GraphInvalid, problem.message, { details: problem.details }))
    return c.createTask(input)
  }
  return new Proxy(c, {
    get(target, prop) {
      if (prop === 'createTask') return createTask
      const v = Reflect.get(target, prop, target) as unknown
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v
    },
  })
}

/** The embedded runtime with its dashboard (unless --no-ui); stop() closes both. */
async function startDev(name: string, base: CommandBase, s: Settings, handlers: Record<string, RoleHandler>, functions: Record<string, CoordinatorFn>, concurrency: number, ui: UiSettings | null): Promise<Embedded & { dashboardUrl: string | null }> {
  const log = processLogger('silent')
  const rt = await startEmbedded(s, handlers, functions, concurrency, log)
  let started: Awaited<ReturnType<typeof startDevDashboard>>
  try {
    // The embedded coordinator's and worker's metrics on the dashboard's /metrics.
    const metrics = metricsHandler([rt.coordinator.observability?.registry ?? null, rt.worker.observability?.registry ?? null])
    started = await startDevDashboard(name, base.out, servedOnly(rt.coordinator, s, handlers, functions), rt.store, ui, log, metrics)
  } catch (err) {
    await rt.stop()
    throw err
  }
  return {
    ...rt,
    dashboardUrl: started?.url ?? null,
    async stop() {
      await started?.dash.close()
      await rt.stop()
    },
  }
}

/** `--keep`: the task ended; the runtime and its dashboard stay up until Ctrl-C. */
async function keepUp(base: CommandBase, name: string, url: string | null): Promise<void> {
  if (!base.out.json) base.out.line(`flowkit ${name}: the task ended; ${url === null ? 'the runtime stays' : `the runtime and the dashboard (${url}) stay`} up until Ctrl-C (--keep)`)
  await untilAborted(base.signal)
}

async function demo(base: CommandBase, s: Settings, name: string, ui: UiSettings | null, keep: boolean): Promise<number> {
  const csv = findExamples()
  const handlers = { csv_reader: examples.csvReader, enricher: examples.enricher, reporter: examples.reporter() }
  const rt = await startDev(name, base, s, handlers, {}, 3, ui)
  try {
    const started = Date.now()
    const id = await rt.coordinator.createTask({ params: { source: 'examples/data/sales.csv' }, graph: examples.salesGraph(csv) })
    if (!base.out.json) base.out.line(`flowkit ${name}: task ${id} submitted (embedded runtime: memory bus + memory store)`)
    const task = await followEmbedded(rt.coordinator, id, makeProgress(base.out, { summary: false }), base.signal)
    const report = (await rt.coordinator.listArtifacts(id, { nodeId: 'report' })).find((a) => a.status === 'complete')
    const enrichParts = (await rt.coordinator.listArtifacts(id, { nodeId: 'enrich' })).filter((a) => a.status === 'partial')
    const total = task.nodes.find((n) => n.node_id === 'total')?.stats['revenue_sum']
    const byRegion = (report?.meta['by_region'] ?? {}) as Record<string, { orders: number; revenue: number }>
    if (base.out.json) {
      base.out.doc({ task_id: id, status: task.status, enrich_partial_artifacts: enrichParts.length, revenue_total: total ?? null, by_region: byRegion })
    } else {
      base.out.line(`\ntask ${task.status} in ${Date.now() - started} ms`)
      base.out.line(`enrich wrote ${enrichParts.length} partial artifacts; revenue total (metrics.aggregate): ${String(total)}`)
      base.out.line('revenue by region:')
      for (const [region, t] of Object.entries(byRegion).sort()) {
        base.out.line(`  ${region.padEnd(6)} ${String(t.orders).padStart(4)} orders  ${t.revenue.toFixed(2).padStart(10)}`)
      }
    }
    if (keep) await keepUp(base, name, rt.dashboardUrl)
    return task.status === 'finished' ? EXIT.ok : EXIT.failed
  } finally {
    await rt.stop()
  }
}

export async function devCommand(argv: readonly string[], base: CommandBase, name: 'dev' | 'demo' = 'dev'): Promise<number> {
  const p = parse(name, argv, {
    handlers: { type: 'string' },
    graph: { type: 'string', short: 'g' },
    params: { type: 'string' },
    functions: { type: 'string' },
    concurrency: { type: 'string' },
    config: { type: 'string', short: 'c' },
    ...DEV_UI_OPTIONS,
    keep: { type: 'boolean' },
  })
  positionals(name, p, [])
  const s = resolveSettings(p)
  const ui = devUiSettings(name, p)
  const handlersPath = str(p, 'handlers')
  const graphPath = str(p, 'graph')
  const keep = flag(p, 'keep')
  // The flag, else the config's worker.concurrency, else 4.
  const configured = s.worker['concurrency']
  if (configured !== undefined && !(typeof configured === 'number' && Number.isInteger(configured) && configured >= 1)) {
    throw usageError(`${name}: the config's worker.concurrency must be an integer >= 1, got ${JSON.stringify(configured)}`, name)
  }
  const concurrency = int(name, p, 'concurrency', 1, 10_000) ?? configured ?? 4
  if (handlersPath === undefined) {
    if (graphPath !== undefined || str(p, 'params') !== undefined) throw usageError(`${name}: --graph needs --handlers <module> (\`flowkit ${name}\` alone runs the built-in example)`, name)
    return demo(base, s, name, ui, keep)
  }
  const handlers = await loadHandlers(handlersPath)
  const fnPath = str(p, 'functions')
  const functions = fnPath === undefined ? {} : await loadFunctions(fnPath)
  // Read the files before starting anything: a missing file is exit 4, bad JSON exit 1.
  const sub = graphPath === undefined ? null : await readSubmission(graphPath, str(p, 'params'), undefined)
  if (sub === null && str(p, 'params') !== undefined) readJsonFile(str(p, 'params') as string, 'params')
  if (sub !== null && graphPath !== undefined) {
    // Checked before anything starts: an invalid graph, or a node whose type no handler of the
    // module serves (in this process nothing else ever would: the task would wait forever).
    for (const fn of Object.keys(functions)) sub.fnNames.add(fn)
    sub.fnArgs = builtinArgChecks(Object.keys(functions))
    let nodes: { node_id: string; type: string }[]
    try {
      nodes = Object.values(buildFrom(s, sub).nodes)
    } catch (err) {
      throw graphRefused(base.out, graphPath, err)
    }
    const problem = unservedProblem(nodes, handlers, `in ${handlersPath}`)
    if (problem !== null) throw new CliError(EXIT.failed, `${graphPath}: ${problem.message}`, { code: ErrorCode.GraphInvalid, details: problem.details })
  }
  const rt = await startDev(name, base, s, handlers, functions, concurrency, ui)
  try {
    if (sub === null || graphPath === undefined) {
      const roles = Object.keys(handlers).join(', ')
      if (base.out.json) base.out.doc({ event: 'dev.ready', roles: Object.keys(handlers), concurrency, dashboard: rt.dashboardUrl })
      else base.out.line(`flowkit ${name}: coordinator and worker running in this process (roles ${roles}; concurrency ${concurrency}); Ctrl-C stops`)
      await untilAborted(base.signal)
      if (base.out.json) base.out.doc({ event: 'dev.stopped' })
      else base.out.line(`flowkit ${name}: stopped`)
      return EXIT.ok
    }
    let id: string
    try {
      id = await rt.coordinator.createTask({ graph: sub.graph, ...(sub.params === undefined ? {} : { params: sub.params }) })
    } catch (err) {
      throw graphRefused(base.out, graphPath, err)
    }
    if (!base.out.json) base.out.line(`flowkit ${name}: task ${id} submitted (embedded runtime: memory bus + memory store)`)
    const task = await followEmbedded(rt.coordinator, id, makeProgress(base.out), base.signal)
    if (task.status !== 'finished') {
      for (const n of task.nodes) {
        if (n.last_error !== null) base.out.line(`  ${n.node_id}: ${n.last_error.reason_code}${n.last_error.error ? `: ${n.last_error.error}` : ''}`)
      }
    }
    if (keep) await keepUp(base, name, rt.dashboardUrl)
    return task.status === 'finished' ? EXIT.ok : EXIT.failed
  } finally {
    await rt.stop()
  }
}
