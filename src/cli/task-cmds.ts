/**
 * Task commands against a deployment's store: `status <id> [--watch]`, `ls`, `cancel <id>`.
 * `status` and `ls` only read. `cancel` asks the owning coordinator over the bus (control.ts) and
 * reads the store until the task is cancelling or ended.
 */
import { type TaskView, failingTask, toTaskView } from '../coordinator/view.ts'
import { LiveRoles, markWaiting } from '../coordinator/roles.ts'
import { COORDINATOR_DEFAULTS, resolveConfig } from '../config.ts'
import { COORDINATOR_FN_TYPE } from '../graph/types.ts'
import type { Store, TaskDoc, TaskStatus } from '../ports/store.ts'
import { TERMINAL_TASK_STATUSES } from '../ports/store.ts'
import { flag, int, list, parse, positionals, seconds, str } from './args.ts'
import { openStore } from './connect.ts'
import { controlRequest } from '../coordinator/control.ts'
import { sendControlWithin } from './control.ts'
import { CliError, EXIT, usageError } from './errors.ts'
import { sweepSeconds, watchTask } from './graph-cmds.ts'
import { type CommandBase, ago, isoTime, table } from './output.ts'
import { taskLines } from './progress.ts'
import { type Settings, resolveSettings } from './settings.ts'

const ALL_STATUSES: readonly TaskStatus[] = ['queued', 'running', 'cancelling', 'finished', 'failed', 'cancelled']
const ACTIVE: readonly TaskStatus[] = ['queued', 'running', 'cancelling']

async function withStore<T>(settings: Settings, mode: 'read' | 'write', fn: (store: Store) => Promise<T>): Promise<T> {
  const store = await openStore(settings, mode)
  try {
    return await fn(store)
  } finally {
    await store.close()
  }
}

function notFound(id: string): CliError {
  return new CliError(EXIT.notFound, `task ${id} not found`, { hint: 'list tasks with `flowkit ls --status all`' })
}

export async function statusCommand(argv: readonly string[], base: CommandBase): Promise<number> {
  const p = parse('status', argv, { watch: { type: 'boolean', short: 'w' }, interval: { type: 'string' } }, true)
  const [id] = positionals('status', p, ['task-id']) as [string]
  const interval = int('status', p, 'interval', 50, 60_000)
  const settings = resolveSettings(p)
  return withStore(settings, 'read', async (store) => {
    if (flag(p, 'watch')) return watchTask(store, id, base, interval, sweepSeconds(settings))
    const doc = await store.getTask(id)
    if (doc === null) throw notFound(id)
    const view = await markUnserved(store, toTaskView(doc), settings)
    if (base.out.json) {
      base.out.doc(view)
      return EXIT.ok
    }
    for (const l of taskLines(view, Date.now(), Math.max(30, base.out.columns - 70))) base.out.line(l)
    base.out.line(`  created ${isoTime(view.created_at_ms)}  updated ${isoTime(view.updated_at_ms)}${view.finished_at_ms === null ? '' : `  ended ${isoTime(view.finished_at_ms)}`}`)
    for (const n of view.nodes) {
      if (n.last_error?.error) base.out.line(`  ${n.node_id}: last error (${n.last_error.reason_code}, epoch ${n.last_error.attempt_epoch}): ${n.last_error.error}`)
    }
    return EXIT.ok
  })
}

/**
 * Marks the running nodes no live worker can take (`waiting_for_worker`, as a coordinator's view
 * and the dashboard do): from the registry, with the coordinators' liveness window. Without it
 * `status` showed such a node "running" for ever.
 */
async function markUnserved(store: Store, view: TaskView, settings: Settings): Promise<TaskView> {
  if (!view.nodes.some((n) => n.status === 'running' && n.accepted_at_ms === null)) return view
  // Resolved as `flowkit ui` and a coordinator resolve it (a seed-style `worker_liveness_sec` too).
  const roles = new LiveRoles(resolveConfig(COORDINATOR_DEFAULTS, settings.coordinator, 'coordinator config').workerLivenessSec * 1000)
  for (const w of await store.listWorkers()) roles.seen(w)
  return markWaiting(view, roles, (t) => t === COORDINATOR_FN_TYPE, Date.now())
}

function counts(t: TaskDoc): string {
  const by = new Map<string, number>()
  for (const n of Object.values(t.nodes)) by.set(n.status, (by.get(n.status) ?? 0) + 1)
  return [...by.entries()].map(([s, c]) => `${s}:${c}`).join(' ')
}

export function summaryOf(t: TaskDoc): Record<string, unknown> {
  const nodes: Record<string, number> = {}
  for (const n of Object.values(t.nodes)) nodes[n.status] = (nodes[n.status] ?? 0) + 1
  return { id: t.id, status: t.status, nodes, error: t.error, created_at_ms: t.created_at_ms, updated_at_ms: t.updated_at_ms, finished_at_ms: t.finished_at_ms }
}

export function statusesOf(command: string, raw: string[] | undefined): readonly TaskStatus[] {
  if (raw === undefined) return ACTIVE
  if (raw.includes('all')) return ALL_STATUSES
  if (raw.includes('active')) return [...new Set([...ACTIVE, ...(raw.filter((s) => s !== 'active') as TaskStatus[])])]
  for (const s of raw) {
    if (!(ALL_STATUSES as readonly string[]).includes(s)) throw usageError(`${command}: unknown status ${JSON.stringify(s)} (one of ${ALL_STATUSES.join(', ')}, active, all)`, command)
  }
  return raw as TaskStatus[]
}

export async function lsCommand(argv: readonly string[], base: CommandBase): Promise<number> {
  const p = parse('ls', argv, { status: { type: 'string', short: 's' }, limit: { type: 'string', short: 'n' }, all: { type: 'boolean', short: 'a' } }, true)
  positionals('ls', p, [])
  const statuses = flag(p, 'all') ? ALL_STATUSES : statusesOf('ls', list(p, 'status'))
  const limit = int('ls', p, 'limit', 1, 10_000) ?? 100
  const settings = resolveSettings(p)
  return withStore(settings, 'read', async (store) => {
    const tasks = await store.listTasks({ statuses, limit })
    const which = statuses === ACTIVE ? 'active tasks' : statuses.length === ALL_STATUSES.length ? 'tasks' : `${statuses.join('/')} tasks`
    if (base.out.json) {
      base.out.doc(tasks.map(summaryOf))
      // On stderr, also with --json: stdout stays one JSON document.
      if (tasks.length === limit) base.out.note(`flowkit: showing the ${limit} oldest ${which}; there may be more (--limit)`)
      return EXIT.ok
    }
    if (tasks.length === 0) {
      base.out.line(`no ${which}`)
      return EXIT.ok
    }
    const now = Date.now()
    for (const l of table([['ID', 'STATUS', 'CREATED', 'NODES'], ...tasks.map((t) => [t.id, t.status, ago(t.created_at_ms, now), counts(t)])])) base.out.line(l)
    if (tasks.length === limit) base.out.note(`flowkit: showing the ${limit} oldest ${which}; there may be more (--limit)`)
    return EXIT.ok
  })
}

function acted(t: TaskDoc): boolean {
  return t.coordinator.cancelled || t.status === 'cancelling' || (TERMINAL_TASK_STATUSES as readonly string[]).includes(t.status)
}

export async function cancelCommand(argv: readonly string[], base: CommandBase): Promise<number> {
  const p = parse('cancel', argv, { reason: { type: 'string' }, timeout: { type: 'string' }, wait: { type: 'boolean' } }, true)
  const [id] = positionals('cancel', p, ['task-id']) as [string]
  const timeoutSec = seconds('cancel', p, 'timeout') ?? 15
  const settings = resolveSettings(p)
  return withStore(settings, 'read', async (store) => {
    const before = await store.getTask(id)
    if (before === null) throw notFound(id)
    if ((TERMINAL_TASK_STATUSES as readonly string[]).includes(before.status)) {
      if (base.out.json) base.out.doc({ task_id: id, cancelled: false, status: before.status })
      else base.out.line(`task ${id} already ${before.status}: nothing to cancel`)
      return EXIT.ok
    }
    await sendControlWithin(settings, controlRequest('cancel', id, Date.now(), str(p, 'reason') ?? 'cancelled from the CLI'))
    const deadline = Date.now() + timeoutSec * 1000
    let now: TaskDoc | null = before
    const done = (t: TaskDoc): boolean => (flag(p, 'wait') ? (TERMINAL_TASK_STATUSES as readonly string[]).includes(t.status) : acted(t))
    while (now !== null && !done(now)) {
      if (base.signal.aborted) throw new CliError(EXIT.interrupted, `interrupted: the cancel request for task ${id} was sent; see \`flowkit status ${id}\``)
      if (Date.now() >= deadline) throw cancelTimedOut(id, timeoutSec, now)
      await new Promise((r) => setTimeout(r, 250))
      now = await store.getTask(id)
    }
    if (now === null) throw notFound(id)
    const outcome = cancelOutcome(now)
    if (base.out.json) base.out.doc({ task_id: id, cancelled: outcome.cancelled, status: outcome.status })
    else base.out.line(outcome.line)
    return EXIT.ok
  })
}

/**
 * `flowkit cancel`'s error when its wait ran out, by what the task shows last: no coordinator
 * acted on the request, or (`--wait`) one did and the task has not ended yet.
 */
export function cancelTimedOut(id: string, timeoutSec: number, last: TaskDoc): CliError {
  if (!acted(last)) {
    return new CliError(EXIT.failed, `no coordinator acted on the cancel request for task ${id} within ${timeoutSec} s`, {
      hint: "is a coordinator of this deployment running? The request stays on the owners' topic: the coordinator that owns the task applies it when it reads it (after a restart too)",
    })
  }
  return new CliError(EXIT.failed, `the cancel of task ${id} was applied (${last.status}), but the task did not end within ${timeoutSec} s`, {
    hint: `a running handler stops when it next looks at its ctx.signal; a node whose worker went silent ends at the cancel deadline (cancel_grace_sec) or when its lease runs out. Follow it with \`flowkit status ${id} --watch\`, or wait longer with --timeout`,
  })
}

/** What `flowkit cancel` reports once a coordinator acted on the request (or the task ended). */
export function cancelOutcome(now: TaskDoc): { cancelled: boolean; status: string; line: string } {
  const view: TaskView = toTaskView(now)
  const id = view.id
  const failing = failingTask(view)
  const cancelled = !failing && (now.coordinator.cancelled || view.status === 'cancelling' || view.status === 'cancelled')
  const line = failing
    ? `task ${id} ${view.status === 'failed' ? 'failed' : 'is stopping because it fails'} (${view.error}): the cancel changes nothing`
    : view.status === 'cancelling'
      ? `task ${id} is cancelling (its running nodes are being stopped)`
      : cancelled && (view.status === 'running' || view.status === 'queued')
        ? `task ${id}: cancel recorded (its nodes are stopped once the reports already queued for it are applied; nothing new starts)`
        : cancelled
          ? `task ${id} ${view.status}`
          : `task ${id} ${view.status} before the cancel applied`
  return { cancelled, status: view.status, line }
}
