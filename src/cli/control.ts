/**
 * CLI control requests: how `flowkit cancel` reaches the coordinator that owns a task.
 *
 * The Coordinator has no bus API to cancel a task from another process (only the in-process
 * `cancelTask`), and writing the cancel into the store behind the owner's back would fence it.
 * So `flowkit coordinator` also consumes the topic `cli.control.v1` and applies each request with
 * the public `Coordinator.cancelTask`; `flowkit cancel` sends one request (keyed by task id) and
 * then reads the store until the task is cancelling or ended. A coordinator embedded in an
 * application does not read this topic (docs/cli.md, "Known limits").
 *
 * A request: `{ "op": "cancel", "task_id", "reason", "request_id", "requested_at_ms" }`. Requests
 * older than REQUEST_TTL_MS when read are dropped (a coordinator started much later does not act
 * on a stale request). Another deployment's coordinator on the same cluster finds no such task in
 * its store and ignores the request.
 */
import { randomUUID } from 'node:crypto'
import { ErrorCode, FlowkitError, errorMessage } from '../errors.ts'
import { TASK_ID_PATTERN } from '../graph/types.ts'
import type { Logger } from '../log.ts'
import type { Bus, BusMessage, Subscription } from '../ports/bus.ts'

export const CONTROL_TOPIC = 'cli.control.v1'
export const REQUEST_TTL_MS = 10 * 60_000
const MAX_REASON = 500

export interface CancelRequest {
  op: 'cancel'
  task_id: string
  reason: string
  request_id: string
  requested_at_ms: number
}

export function cancelRequest(taskId: string, reason: string, now: number): CancelRequest {
  return { op: 'cancel', task_id: taskId, reason: reason.slice(0, MAX_REASON), request_id: randomUUID(), requested_at_ms: now }
}

export async function sendCancel(bus: Bus, req: CancelRequest): Promise<void> {
  await bus.ensureTopics([{ name: CONTROL_TOPIC, partitions: 1 }])
  await bus.produce([{ topic: CONTROL_TOPIC, key: req.task_id, value: JSON.stringify(req) }])
}

export function parseRequest(value: string): CancelRequest | string {
  let v: unknown
  try {
    v = JSON.parse(value)
  } catch {
    return 'not JSON'
  }
  if (v === null || typeof v !== 'object') return 'not an object'
  const r = v as Record<string, unknown>
  if (r['op'] !== 'cancel') return `unknown op ${JSON.stringify(r['op'])}`
  if (typeof r['task_id'] !== 'string' || !TASK_ID_PATTERN.test(r['task_id'])) return 'bad task_id'
  if (typeof r['requested_at_ms'] !== 'number' || !Number.isFinite(r['requested_at_ms'])) return 'bad requested_at_ms'
  const reason = typeof r['reason'] === 'string' && r['reason'] !== '' ? r['reason'].slice(0, MAX_REASON) : 'cancelled from the CLI'
  return { op: 'cancel', task_id: r['task_id'], reason, request_id: String(r['request_id'] ?? ''), requested_at_ms: r['requested_at_ms'] }
}

export interface ControlTarget {
  cancelTask(id: string, options: { reason?: string }): Promise<boolean>
}

/** Applies one control record; retryable failures are thrown (the bus delivers it again). */
export async function applyControl(target: ControlTarget, log: Logger, m: BusMessage, now: number): Promise<void> {
  const req = parseRequest(m.value)
  if (typeof req === 'string') {
    log.warn('cli.control_malformed', { offset: m.offset, error: req })
    return
  }
  const ids = { task_id: req.task_id, request_id: req.request_id }
  if (now - req.requested_at_ms > REQUEST_TTL_MS) {
    log.warn('cli.control_expired', { ...ids, age_ms: now - req.requested_at_ms })
    return
  }
  try {
    const done = await target.cancelTask(req.task_id, { reason: req.reason })
    log.info('cli.cancel_applied', { ...ids, cancelled: done })
  } catch (err) {
    if (err instanceof FlowkitError && err.code === ErrorCode.TaskNotFound) {
      log.debug('cli.cancel_unknown_task', ids)
      return
    }
    if (err instanceof FlowkitError && (err.retryable || err.code === ErrorCode.Closed)) throw err
    log.error('cli.cancel_failed', { ...ids, error: errorMessage(err) })
  }
}

/** Subscribes the coordinator process to control requests. */
export async function serveControl(bus: Bus, groupId: string, target: ControlTarget, log: Logger): Promise<Subscription> {
  await bus.ensureTopics([{ name: CONTROL_TOPIC, partitions: 1 }])
  return bus.subscribe({
    groupId: `${groupId}.cli-control`,
    topics: [CONTROL_TOPIC],
    fromLatest: true,
    name: 'coordinator-cli-control',
    handler: (m) => applyControl(target, log, m, Date.now()),
  })
}
