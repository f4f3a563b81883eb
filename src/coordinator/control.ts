/**
 * Control requests: how another process (the CLI, a dashboard, another coordinator) reaches the
 * coordinator that owns a task. Requests go to the owners' topic `topicTasks`, keyed by task id,
 * and are applied by the owner of the task's partition (ownership.ts). The older `topicControl`
 * is still read by every coordinator; only the owner applies what it reads there:
 *   - `cancel`: `Coordinator.cancelTask` (with the checks of the in-process API);
 *   - `adopt`: a task written to the store by another process (`flowkit submit`) is loaded now,
 *     instead of at the next sweep.
 * A request: `{ "op", "task_id", "reason"?, "request_id", "requested_at_ms" }`. Requests older
 * than REQUEST_TTL_MS when read are dropped; malformed ones are logged and skipped.
 */
import { randomUUID } from 'node:crypto'
import { COORDINATOR_DEFAULTS } from '../config.ts'
import { ErrorCode, FlowkitError, errorMessage } from '../errors.ts'
import { TASK_ID_PATTERN } from '../graph/types.ts'
import type { Logger } from '../log.ts'
import type { Bus, BusMessage } from '../ports/bus.ts'

export const REQUEST_TTL_MS = 10 * 60_000
const MAX_REASON = 500

export interface ControlRequest {
  op: 'cancel' | 'adopt'
  task_id: string
  reason: string
  request_id: string
  requested_at_ms: number
  /** `adopt` only: the task as its creator wrote it (checked by the receiver), so it need not be read. */
  task?: unknown
}

export function controlRequest(op: ControlRequest['op'], taskId: string, now: number, reason = ''): ControlRequest {
  return { op, task_id: taskId, reason: reason.slice(0, MAX_REASON), request_id: randomUUID(), requested_at_ms: now }
}

/** Sends a request to the coordinators reading `topic` (created with `partitions` when missing). */
export async function sendControl(bus: Bus, topic: string, req: ControlRequest, partitions = COORDINATOR_DEFAULTS.taskPartitions): Promise<void> {
  await bus.ensureTopics([{ name: topic, partitions }])
  await bus.produce([{ topic, key: req.task_id, value: JSON.stringify(req) }])
}

/** A record's JSON object, or why it is not one. */
export function jsonObject(value: string): Record<string, unknown> | string {
  let v: unknown
  try {
    v = JSON.parse(value)
  } catch {
    return 'not JSON'
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return 'not an object'
  return v as Record<string, unknown>
}

export function parseControl(value: string): ControlRequest | string {
  const r = jsonObject(value)
  return typeof r === 'string' ? r : requestFrom(r)
}

/** A control request from a parsed record, or why it is not one. */
export function requestFrom(r: Record<string, unknown>): ControlRequest | string {
  if (r['op'] !== 'cancel' && r['op'] !== 'adopt') return `unknown op ${JSON.stringify(r['op'])}`
  if (typeof r['task_id'] !== 'string' || !TASK_ID_PATTERN.test(r['task_id'])) return 'bad task_id'
  if (typeof r['requested_at_ms'] !== 'number' || !Number.isFinite(r['requested_at_ms'])) return 'bad requested_at_ms'
  const reason = typeof r['reason'] === 'string' && r['reason'] !== '' ? r['reason'].slice(0, MAX_REASON) : 'cancelled by request'
  const req: ControlRequest = { op: r['op'], task_id: r['task_id'], reason, request_id: String(r['request_id'] ?? ''), requested_at_ms: r['requested_at_ms'] }
  if (r['op'] === 'adopt' && r['task'] !== undefined) req.task = r['task']
  return req
}

export interface ControlTarget {
  cancelTask(id: string, options: { reason?: string }): Promise<boolean>
  /** Loads a task another process wrote, if it is active and not held yet; false otherwise. */
  adoptTask(id: string, task?: unknown): Promise<boolean>
}

/** Applies one control record; retryable failures are thrown (the bus delivers it again). */
export async function applyControl(target: ControlTarget, log: Logger, m: BusMessage, now: number): Promise<void> {
  const req = parseControl(m.value)
  if (typeof req === 'string') {
    log.warn('control.malformed', { offset: m.offset, error: req })
    return
  }
  await applyRequest(target, log, req, now)
}

/** Applies one parsed request; retryable failures are thrown (the bus delivers it again). */
export async function applyRequest(target: ControlTarget, log: Logger, req: ControlRequest, now: number): Promise<void> {
  const ids = { task_id: req.task_id, request_id: req.request_id, op: req.op }
  if (now - req.requested_at_ms > REQUEST_TTL_MS) {
    log.warn('control.expired', { ...ids, age_ms: now - req.requested_at_ms })
    return
  }
  try {
    const done = req.op === 'cancel' ? await target.cancelTask(req.task_id, { reason: req.reason }) : await target.adoptTask(req.task_id, req.task)
    log.info('control.applied', { ...ids, changed: done })
  } catch (err) {
    if (err instanceof FlowkitError && err.code === ErrorCode.TaskNotFound) {
      log.debug('control.unknown_task', ids)
      return
    }
    if (err instanceof FlowkitError && (err.retryable || err.code === ErrorCode.Closed)) throw err
    log.error('control.failed', { ...ids, error: errorMessage(err) })
  }
}
