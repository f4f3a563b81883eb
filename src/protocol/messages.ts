/**
 * Wire protocol v1 (docs/protocol.md): envelopes and payloads with the seed's JSON field names, so a
 * Python flowkit peer understands every message. Parsing and checking them is parse.ts.
 */
import { canonicalJson, sha256HexPrefix, uuidV4 } from '../util/ids.ts'

export const MsgType = { Cmd: 'cmd', Event: 'event', Heartbeat: 'heartbeat', Query: 'query', Reply: 'reply' } as const
export type MsgType = (typeof MsgType)[keyof typeof MsgType]

export const Role = { Coordinator: 'coordinator', Worker: 'worker' } as const
export type Role = (typeof Role)[keyof typeof Role]

export const EventKind = {
  WorkerOnline: 'WORKER_ONLINE',
  WorkerOffline: 'WORKER_OFFLINE',
  TaskAccepted: 'TASK_ACCEPTED',
  TaskHeartbeat: 'TASK_HEARTBEAT',
  TaskResumed: 'TASK_RESUMED',
  BatchOk: 'BATCH_OK',
  BatchFailed: 'BATCH_FAILED',
  TaskDone: 'TASK_DONE',
  TaskFailed: 'TASK_FAILED',
  Cancelled: 'CANCELLED',
} as const
export type EventKind = (typeof EventKind)[keyof typeof EventKind]

export const CommandKind = {
  TaskStart: 'TASK_START',
  TaskCancel: 'TASK_CANCEL',
  TaskPause: 'TASK_PAUSE',
  TaskResume: 'TASK_RESUME',
} as const
export type CommandKind = (typeof CommandKind)[keyof typeof CommandKind]

export const FINAL_UID = '__final__'
/**
 * The CANCELLED reason of a run a worker gives up because it stops (a deploy): a hand-back, not a
 * failure; a flowkit coordinator starts it again at once without counting a retry.
 */
export const WORKER_STOPPING_REASON = 'worker_stopping'
/**
 * The CANCELLED reason of an attempt a worker's dead predecessor (an older process with its worker
 * id) held, found when its START comes again: given back like `worker_stopping`, but the attempt
 * was lost with a process, so a flowkit coordinator counts it (a node whose runs keep killing their
 * worker is failed once more attempts than `retry_policy.max` are lost so).
 */
export const WORKER_RESTARTED_REASON = 'worker_restarted'

export interface Envelope<P = Record<string, unknown>> {
  v: 1
  msg_type: MsgType
  role: Role
  corr_id: string
  dedup_id: string
  task_id: string
  node_id: string
  step_type: string
  attempt_epoch: number
  ts_ms: number
  payload: P
  target_worker_id?: string | null
}

export interface CmdTaskStart {
  cmd: 'TASK_START'
  input_ref: Record<string, unknown> | null
  input_inline: Record<string, unknown> | null
  batching: Record<string, unknown> | null
  cancel_token: string
  /**
   * flowkit extension: for a node started by `routing.on_failure`, the failed nodes that routed
   * to it, with why they failed (absent from other STARTs and from Python coordinators).
   */
  failures?: UpstreamFailure[]
}

/** A failed node that routed to the node being started (its `routing.on_failure`). */
export interface UpstreamFailure {
  node_id: string
  attempt_epoch: number
  reason_code: string
  error: string | null
}
export interface CmdTaskCancel {
  cmd: 'TASK_CANCEL'
  reason: string
  cancel_token: string
}
export interface EvLease {
  kind: 'TASK_ACCEPTED' | 'TASK_HEARTBEAT' | 'TASK_RESUMED'
  worker_id: string
  lease_id: string
  lease_deadline_ts_ms: number
}
export interface EvBatchOk {
  kind: 'BATCH_OK'
  worker_id: string
  batch_uid: string
  metrics: Record<string, unknown>
  artifacts_ref: Record<string, unknown> | null
}
export interface EvBatchFailed {
  kind: 'BATCH_FAILED'
  worker_id: string
  batch_uid: string
  reason_code: string
  permanent: boolean
  error: string | null
  artifacts_ref: Record<string, unknown> | null
}
export interface EvTaskDone {
  kind: 'TASK_DONE'
  worker_id: string
  metrics: Record<string, unknown>
  artifacts_ref: Record<string, unknown> | null
  final_uid: string | null
  /** flowkit extension: how many BATCH_OK the worker sent for this attempt (absent from Python peers). */
  batches?: number
}
export interface EvTaskFailed {
  kind: 'TASK_FAILED'
  worker_id: string
  reason_code: string
  permanent: boolean
  error: string | null
}
export interface EvCancelled {
  kind: 'CANCELLED'
  worker_id: string
  reason: string
}
export type StatusEvent = EvLease | EvBatchOk | EvBatchFailed | EvTaskDone | EvTaskFailed | EvCancelled

export interface AnnounceOnline {
  kind: 'WORKER_ONLINE'
  worker_id: string
  type: string
  capabilities: { roles: string[] }
  version: string
  capacity: { tasks: number }
  resume?: unknown
}
export interface AnnounceOffline {
  kind: 'WORKER_OFFLINE'
  worker_id: string
}

export interface QueryDiscover {
  query: 'TASK_DISCOVER'
  want_epoch: number
}
export interface ReplySnapshot {
  reply: 'TASK_SNAPSHOT'
  worker_id: string | null
  run_state: 'running' | 'cancelling' | 'idle' | string
  attempt_epoch: number
  lease: { worker_id: string; lease_id: string; deadline_ts_ms: number } | null
  progress: Record<string, unknown>
  artifacts: Record<string, unknown> | null
}
export interface SigCancel {
  sig: 'CANCEL'
  reason: string
  cancel_token: string | null
  deadline_ts_ms: number | null
}

/** Length of every dedup id (and cancel token) flowkit makes. */
export const DEDUP_ID_LENGTH = 40

/** Longest reason code put in an event or a node's last_error (a worker's handler, a coordinator function). */
export const MAX_REASON_CODE_CHARS = 200

/**
 * A reason code as sent and kept: its first MAX_REASON_CODE_CHARS characters, no surrogate pair
 * split, no mark added (a code is matched by `permanent_on`, not read as text). Every place that
 * takes a code from a handler, a function or a foreign worker cuts it here.
 */
export function cutReasonCode(code: string): string {
  if (code.length <= MAX_REASON_CODE_CHARS) return code
  const last = code.charCodeAt(MAX_REASON_CODE_CHARS - 1)
  return code.slice(0, last >= 0xd800 && last <= 0xdbff ? MAX_REASON_CODE_CHARS - 1 : MAX_REASON_CODE_CHARS)
}

/** Longest worker id (a coordinator refuses the announces of a longer one; a Worker will not start with one). */
export const MAX_WORKER_ID_CHARS = 256

/** Stable dedup id: hex hash of the canonical JSON of the fields that identify the message. */
export function dedupId(parts: Record<string, unknown>): string {
  return sha256HexPrefix(canonicalJson(parts), DEDUP_ID_LENGTH)
}

export interface EnvelopeInit<P> {
  msg_type: MsgType
  role: Role
  task_id: string
  node_id: string
  step_type: string
  attempt_epoch: number
  ts_ms: number
  payload: P
  dedup_id: string
  corr_id?: string
  target_worker_id?: string | null
}

export function makeEnvelope<P>(init: EnvelopeInit<P>): Envelope<P> {
  const env: Envelope<P> = {
    v: 1,
    msg_type: init.msg_type,
    role: init.role,
    corr_id: init.corr_id ?? uuidV4(),
    dedup_id: init.dedup_id,
    task_id: init.task_id,
    node_id: init.node_id,
    step_type: init.step_type,
    attempt_epoch: init.attempt_epoch,
    ts_ms: init.ts_ms,
    payload: init.payload,
  }
  if (init.target_worker_id !== undefined) env.target_worker_id = init.target_worker_id
  return env
}

export function encode(env: Envelope<unknown>): string {
  return JSON.stringify(env)
}

export function messageKey(taskId: string, nodeId: string): string {
  return `${taskId}:${nodeId}`
}
