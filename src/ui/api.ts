/**
 * The dashboard's JSON API (everything under /api except the live streams, see live.ts). Reads go
 * through the Coordinator where it has a verb (tasks, workers, dead letters, artifacts, output)
 * and the Store for the rest (graph, batch metrics, checkpoints, worker run state); every action
 * goes through the Coordinator (cancelTask, createTask, retryDeadLetter) and is logged.
 */
import type { IncomingMessage } from 'node:http'
import type { Coordinator } from '../coordinator/coordinator.ts'
import type { TaskView } from '../coordinator/view.ts'
import { MAX_DEADLINE_SEC } from '../coordinator/submit.ts'
import { ErrorCode, GraphValidationError, isFlowkitError } from '../errors.ts'
import { closest } from '../graph/parse-context.ts'
import { type Logger, redact, redactText } from '../log.ts'
import type { Store, TaskStatus } from '../ports/store.ts'
import { countingAttempt } from '../ports/store-rules.ts'
import { FINAL_UID } from '../protocol/messages.ts'
import { type GraphModel, graphModel, resubmitInput } from './graph-model.ts'
import { HttpError, intParam, preview, readJson } from './http.ts'
import { attemptsOf, withClaimHolders } from './attempts.ts'
import { TASK_STATUSES, type TaskCursor, type TaskIndex, type TaskSummary } from './task-index.ts'
import type { RecentMap } from '../util/recent.ts'

/** The Coordinator verbs the dashboard uses. */
export type DashboardCoordinator = Pick<
  Coordinator,
  'createTask' | 'getTask' | 'watch' | 'cancelTask' | 'listWorkers' | 'listDeadLetters' | 'countDeadLetters' | 'retryDeadLetter' | 'listArtifacts' | 'getOutput'
>

export interface ApiContext {
  coordinator: DashboardCoordinator
  store: Store
  index: TaskIndex
  now: () => number
  log: Logger
  version: string
  auth: boolean
  /**
   * Graph models by task id, with the task's deadline (neither changes once the task exists, and
   * its page is opened often: then the task is read once, by the coordinator).
   */
  graphs: RecentMap<string, TaskShape>
  /** A worker not heard from for this long is silent (the coordinator's workerLivenessSec). */
  workerLivenessMs: number
}

/** What a task page shows that never changes: its graph's model and its deadline. */
export interface TaskShape {
  graph: GraphModel
  deadline_at_ms: number | null
}

type Handler = (ctx: ApiContext, params: string[], url: URL, req: IncomingMessage) => Promise<unknown>
interface Route {
  method: 'GET' | 'POST'
  pattern: RegExp
  handler: Handler
}

const ID = '([^/]+)'
const LIST_MAX = 200
const SHOWN = 50
/** Largest body of POST /api/tasks (a graph and its params). */
const MAX_SUBMIT_BYTES = 4 * 1024 * 1024

/** Graph models of task pages kept (the oldest dropped first). */
export const GRAPHS_KEPT = 200

function param(params: string[], i: number): string {
  try {
    return decodeURIComponent(params[i] ?? '')
  } catch {
    throw new HttpError(400, 'bad path')
  }
}

function statusesParam(url: URL): TaskStatus[] | undefined {
  const raw = url.searchParams.get('status')
  if (raw === null || raw === '') return undefined
  const out = raw.split(',').filter((s) => s !== '')
  for (const s of out) if (!(TASK_STATUSES as readonly string[]).includes(s)) throw new HttpError(400, `unknown status ${JSON.stringify(s)}; one of ${TASK_STATUSES.join(', ')}`)
  return out as TaskStatus[]
}

async function taskView(ctx: ApiContext, id: string): Promise<TaskView> {
  const t = await ctx.coordinator.getTask(id)
  if (t === null) throw new HttpError(404, `task ${id} not found`)
  return t
}

/** A list position in a URL (`before`, `after`): `<created_at_ms>.<task id>`. */
function cursorParam(url: URL, name: string): TaskCursor | undefined {
  const raw = url.searchParams.get(name)
  if (raw === null || raw === '') return undefined
  const dot = raw.indexOf('.')
  const digits = raw.slice(0, dot)
  const ms = Number(digits)
  // (Digits only: a creation time is never negative, and `1e3`, ` 1`, `0x10` are not positions.)
  if (dot < 1 || !/^[0-9]+$/.test(digits) || !Number.isSafeInteger(ms)) throw new HttpError(400, `${name}: <created_at_ms>.<task id>, got ${JSON.stringify(raw.slice(0, 80))}`)
  return { created_at_ms: ms, id: raw.slice(dot + 1) }
}

const cursorOf = (s: TaskSummary): string => `${s.created_at_ms}.${s.id}`

/**
 * A page of the task list, newest first. `page` counts pages from the newest; `before` / `after`
 * (the `next` / `prev` of a previous answer) start next to a row, so the rows of a page stay put
 * while tasks arrive, end or leave the filtered status; `last=1` is the oldest page.
 */
async function listTasks(ctx: ApiContext, _p: string[], url: URL): Promise<unknown> {
  const limit = intParam(url, 'limit', 50, 1, LIST_MAX)
  const page = intParam(url, 'page', 1, 1, 1_000_000)
  const now = ctx.now()
  const maxAge = intParam(url, 'max_age_sec', 0, 0, 10 * 365 * 86_400)
  const minAge = intParam(url, 'min_age_sec', 0, 0, 10 * 365 * 86_400)
  const statuses = statusesParam(url) // a bad value is refused before any read
  const before = cursorParam(url, 'before')
  const after = cursorParam(url, 'after')
  if (before !== undefined && after !== undefined) throw new HttpError(400, 'before and after: one of them')
  await ctx.index.ensureFresh()
  const result = ctx.index.query({
    ...(statuses !== undefined ? { statuses } : {}),
    type: url.searchParams.get('type') ?? '',
    idContains: url.searchParams.get('q') ?? '',
    ...(maxAge > 0 ? { createdAfterMs: now - maxAge * 1000 } : {}),
    ...(minAge > 0 ? { createdBeforeMs: now - minAge * 1000 } : {}),
    offset: (page - 1) * limit,
    ...(before !== undefined ? { before } : after !== undefined ? { after } : url.searchParams.get('last') === '1' ? { last: true } : {}),
    limit,
  })
  // Rows that may have moved since they were read in full are read again (an active row once per
  // refresh period: a page reloaded each second would read every running task of it each time),
  // waited for 0.5 s at most (a slow store: the summaries held, the reads update them later).
  await ctx.index.reread(result.items, (id) => ctx.coordinator.getTask(id))
  const items = result.items.map((s) => ctx.index.get(s.id) ?? s)
  const first = result.items[0]
  const last = result.items.at(-1)
  return {
    now_ms: now,
    page: Math.floor(result.offset / limit) + 1,
    offset: result.offset,
    limit,
    total: result.total,
    all: result.all,
    counts: result.counts,
    version: ctx.index.version,
    // Cursors of the pages on either side (null at an end).
    prev: first !== undefined && result.offset > 0 ? cursorOf(first) : null,
    next: last !== undefined && result.offset + result.items.length < result.total ? cursorOf(last) : null,
    items: items.map(({ stale: _, ...rest }) => rest),
  }
}

/**
 * A task as the pages show it: what looks like a credential in its params and variables masked
 * (`***`), as in logs and dead letters — a dashboard may be bound off loopback. The values stay
 * in the store, for the handlers.
 */
export function shownTask(task: TaskView): TaskView {
  return { ...task, params: redact(task.params) as TaskView['params'], vars: redact(task.vars) as TaskView['vars'] }
}

async function getTask(ctx: ApiContext, p: string[]): Promise<unknown> {
  const id = param(p, 0)
  const task = await taskView(ctx, id)
  ctx.index.update(task)
  let shape = ctx.graphs.get(id)
  if (shape === undefined) {
    const doc = await ctx.store.getTask(id)
    if (doc !== null) {
      shape = { graph: graphModel(doc.graph), deadline_at_ms: doc.deadline_at_ms ?? null }
      ctx.graphs.set(id, shape)
    }
  }
  return {
    now_ms: ctx.now(),
    task: shownTask(task),
    graph: shape?.graph ?? { nodes: [], edges: [] },
    deadline_at_ms: shape?.deadline_at_ms ?? null,
    cancel_reason: task.cancel_reason,
  }
}

async function getNode(ctx: ApiContext, p: string[]): Promise<unknown> {
  const id = param(p, 0)
  const nodeId = param(p, 1)
  const task = await taskView(ctx, id)
  const node = task.nodes.find((n) => n.node_id === nodeId)
  if (node === undefined) throw new HttpError(404, `task ${id} has no node ${nodeId}`)
  const [artifacts, batches, checkpoint] = await Promise.all([
    ctx.coordinator.listArtifacts(id, { nodeId, allAttempts: true }),
    ctx.store.listBatchMetrics(id, nodeId),
    ctx.store.getCheckpoint(id, nodeId),
  ])
  const counting = countingAttempt(artifacts)
  return {
    node,
    attempts: await withClaimHolders(attemptsOf(node, artifacts, batches), (epoch) => ctx.store.attemptHolder(id, nodeId, epoch)),
    artifacts: {
      total: counting.length,
      items: counting
        .slice(-SHOWN)
        .reverse()
        .map((a) => ({ batch_uid: a.batch_uid, status: a.status, attempt_epoch: a.attempt_epoch, worker_id: a.worker_id, created_at: a.created_at, updated_at: a.updated_at, meta: preview(redact(a.meta), 600) })),
    },
    // The worker's final metrics come as one more row (batch_uid __final__): listed, not counted.
    batches: { total: batches.filter((b) => b.batch_uid !== FINAL_UID).length, items: batches.slice(-SHOWN).reverse() },
    checkpoint: checkpoint === null ? null : { attempt_epoch: checkpoint.attempt_epoch, saved_at_ms: checkpoint.saved_at_ms, state: preview(redact(checkpoint.state), 600) },
  }
}

async function getOutput(ctx: ApiContext, p: string[]): Promise<unknown> {
  const out = await ctx.coordinator.getOutput(param(p, 0))
  return {
    outputs: out.map((o) => ({
      node_id: o.node_id,
      stats: o.stats,
      artifact: o.artifact === null ? null : { attempt_epoch: o.artifact.attempt_epoch, worker_id: o.artifact.worker_id, updated_at: o.artifact.updated_at, meta: preview(redact(o.artifact.meta), 4_000, 2) },
    })),
  }
}

async function cancelTask(ctx: ApiContext, p: string[], _u: URL, req: IncomingMessage): Promise<unknown> {
  const id = param(p, 0)
  const body = await readJson(req)
  const reason = typeof body['reason'] === 'string' && body['reason'] !== '' ? body['reason'].slice(0, 500) : 'cancelled from the dashboard'
  const ok = await ctx.coordinator.cancelTask(id, { reason })
  ctx.log.info('dashboard.cancel', { task_id: id, accepted: ok })
  return { ok }
}

/** The fields of POST /api/tasks. */
const SUBMIT_FIELDS = ['graph', 'params', 'deadline_sec']

/**
 * A new task from `{ graph, params?, deadline_sec? }` (the graph as its JSON format), through the
 * coordinator's createTask: the same checks (422 with every problem when the graph is refused).
 */
async function submitTask(ctx: ApiContext, _p: string[], _u: URL, req: IncomingMessage): Promise<unknown> {
  const body = await readJson(req, MAX_SUBMIT_BYTES)
  // An unknown field (`deadlineSec`, `param`) would be dropped without a word: refused, with the near miss.
  for (const k of Object.keys(body)) {
    if (SUBMIT_FIELDS.includes(k)) continue
    const near = closest(k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`), SUBMIT_FIELDS)
    throw new HttpError(400, `unknown field ${JSON.stringify(k)}${near === null ? '' : ` (did you mean ${JSON.stringify(near)}?)`}; the body is { graph, params?, deadline_sec? }`)
  }
  if (body['graph'] === undefined) throw new HttpError(400, 'the body needs a "graph" (the graph JSON)')
  const params = body['params']
  if (params !== undefined && (params === null || typeof params !== 'object' || Array.isArray(params))) throw new HttpError(400, '"params" must be a JSON object')
  const deadline = body['deadline_sec']
  if (deadline !== undefined && typeof deadline !== 'number') throw new HttpError(400, '"deadline_sec" must be a number of seconds')
  // Checked here too, so that the message names the field the caller sent (not the API's deadlineSec).
  if (deadline !== undefined && !(Number.isFinite(deadline) && deadline > 0 && deadline <= MAX_DEADLINE_SEC)) {
    throw new HttpError(422, `"deadline_sec" must be a number of seconds > 0 and at most ${MAX_DEADLINE_SEC}, got ${JSON.stringify(deadline)}`)
  }
  const id = await ctx.coordinator.createTask({
    graph: body['graph'],
    ...(params === undefined ? {} : { params: params as Record<string, unknown> }),
    ...(deadline === undefined ? {} : { deadlineSec: deadline }),
  })
  ctx.log.info('dashboard.submit', { task_id: id })
  return { id }
}

async function resubmitTask(ctx: ApiContext, p: string[]): Promise<unknown> {
  const id = param(p, 0)
  const doc = await ctx.store.getTask(id)
  if (doc === null) throw new HttpError(404, `task ${id} not found`)
  const newId = await ctx.coordinator.createTask(resubmitInput(doc))
  ctx.log.info('dashboard.resubmit', { task_id: id, new_task_id: newId })
  return { id: newId }
}

async function listWorkers(ctx: ApiContext): Promise<unknown> {
  const workers = await ctx.coordinator.listWorkers()
  const states = await Promise.all(workers.map((w) => ctx.store.getWorkerState(w.worker_id)))
  const now = ctx.now()
  return {
    now_ms: now,
    liveness_ms: ctx.workerLivenessMs,
    // Silent: online by its last announcement, but not heard from within the liveness window (a
    // killed worker never says goodbye); its runs are what it last reported.
    workers: workers.map((w, i) => ({ ...w, silent: w.status === 'online' && now - w.last_seen_ms > ctx.workerLivenessMs, active_runs: states[i]?.active_runs ?? [], state_updated_at_ms: states[i]?.updated_at_ms ?? null })),
  }
}

/** What a parked message is about, read from its envelope (nulls when it is not one). */
function envelopeOf(value: string): { msg_type: string | null; task_id: string | null; node_id: string | null } {
  const text = (v: unknown): string | null => (typeof v === 'string' ? v : null)
  try {
    const v = JSON.parse(value) as unknown
    if (v === null || typeof v !== 'object') return { msg_type: null, task_id: null, node_id: null }
    const e = v as Record<string, unknown>
    return { msg_type: text(e['msg_type']), task_id: text(e['task_id']), node_id: text(e['node_id']) }
  } catch {
    return { msg_type: null, task_id: null, node_id: null }
  }
}

/**
 * The first 400 characters of a parked message, secrets masked: as JSON when it is (secret-named
 * fields become "***", still JSON, as `flowkit dlq ls` shows them), else as text — masked, then cut:
 * cut first, a secret whose end falls past the cut slips past the rules (they bound a secret's
 * length, so a window past the cut holds any that starts before it).
 */
function previewOf(value: string): string {
  if (value.length <= 65_536) {
    try {
      return JSON.stringify(redact(JSON.parse(value))).slice(0, 400)
    } catch {
      // not JSON: as text
    }
  }
  return redactText(value.slice(0, 400 + 8192)).slice(0, 400)
}

async function listDeadLetters(ctx: ApiContext, _p: string[], url: URL): Promise<unknown> {
  const limit = intParam(url, 'limit', 100, 1, 1000)
  const rows = await ctx.coordinator.listDeadLetters(limit)
  return {
    now_ms: ctx.now(),
    items: rows.map(({ value, ...r }) => ({
      ...r,
      last_error: r.last_error === null ? null : redactText(r.last_error),
      ...envelopeOf(value),
      value_bytes: Buffer.byteLength(value),
      value_preview: previewOf(value),
    })),
  }
}

async function retryDeadLetter(ctx: ApiContext, p: string[]): Promise<unknown> {
  const id = param(p, 0)
  const ok = await ctx.coordinator.retryDeadLetter(id)
  ctx.log.info('dashboard.retry_dead_letter', { outbox_id: id, accepted: ok })
  // As `flowkit dlq retry`: not (or no longer) a dead letter is a 404.
  if (!ok) throw new HttpError(404, `no dead letter ${id} (a retried one is pending again, or sent)`)
  return { ok }
}

async function info(ctx: ApiContext): Promise<unknown> {
  return { version: ctx.version, now_ms: ctx.now(), auth: ctx.auth, statuses: TASK_STATUSES }
}

async function types(ctx: ApiContext): Promise<unknown> {
  await ctx.index.ensureFresh()
  return { types: ctx.index.types() }
}

const ROUTES: Route[] = [
  { method: 'GET', pattern: /^\/api\/info$/, handler: info },
  { method: 'GET', pattern: /^\/api\/tasks$/, handler: listTasks },
  { method: 'POST', pattern: /^\/api\/tasks$/, handler: submitTask },
  { method: 'GET', pattern: /^\/api\/types$/, handler: types },
  { method: 'GET', pattern: new RegExp(`^/api/tasks/${ID}$`), handler: getTask },
  { method: 'GET', pattern: new RegExp(`^/api/tasks/${ID}/nodes/${ID}$`), handler: getNode },
  { method: 'GET', pattern: new RegExp(`^/api/tasks/${ID}/output$`), handler: getOutput },
  { method: 'POST', pattern: new RegExp(`^/api/tasks/${ID}/cancel$`), handler: cancelTask },
  { method: 'POST', pattern: new RegExp(`^/api/tasks/${ID}/resubmit$`), handler: resubmitTask },
  { method: 'GET', pattern: /^\/api\/workers$/, handler: listWorkers },
  { method: 'GET', pattern: /^\/api\/dead-letters$/, handler: listDeadLetters },
  { method: 'POST', pattern: new RegExp(`^/api/dead-letters/${ID}/retry$`), handler: retryDeadLetter },
]

/** Runs the route for this request; HttpError 404/405 when there is none. */
export async function handleApi(ctx: ApiContext, req: IncomingMessage, url: URL): Promise<unknown> {
  const allowed: string[] = []
  for (const r of ROUTES) {
    const m = r.pattern.exec(url.pathname)
    if (m === null) continue
    allowed.push(...(r.method === 'GET' ? ['GET', 'HEAD'] : [r.method]))
    // HEAD is a GET without the body (Node's response leaves it out).
    if (r.method !== (req.method === 'HEAD' ? 'GET' : req.method)) continue
    try {
      return await r.handler(ctx, m.slice(1), url, req)
    } catch (err) {
      throw toHttpError(err)
    }
  }
  if (allowed.length === 0) throw new HttpError(404, `no such API: ${url.pathname}`)
  throw new HttpError(405, `${req.method} not allowed here (${allowed.join(', ')})`, { allow: allowed.join(', ') })
}

export function toHttpError(err: unknown): HttpError {
  if (err instanceof HttpError) return err
  if (err instanceof URIError) return new HttpError(400, 'bad percent-encoding in the path')
  if (err instanceof GraphValidationError) {
    const listed = err.details['errors']
    const errors = Array.isArray(listed) ? (listed as { code: string; path: string; message: string }[]).map((p) => ({ code: p.code, path: p.path, message: redactText(p.message) })) : []
    return new HttpError(422, redactText(err.message), {}, errors.length > 0 ? { errors } : {})
  }
  if (isFlowkitError(err)) {
    if (err.code === ErrorCode.TaskNotFound) return new HttpError(404, err.message)
    if (err.code === ErrorCode.StaleDeadLetter) return new HttpError(409, redactText(err.message))
    // A submission refused for its own content (a deadline, a task id, params): the client's error.
    if (String(err.code).startsWith('GRAPH_')) return new HttpError(422, redactText(err.message))
    return new HttpError(500, `${err.code}: ${redactText(err.message)}`)
  }
  return new HttpError(500, redactText(err instanceof Error ? err.message : String(err)))
}
