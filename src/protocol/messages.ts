/**
 * Wire protocol v1 (docs/protocol.md): envelopes and payloads with the seed's JSON field names, so a
 * Python flowkit peer understands every message. Parsing is strict and never throws past
 * `parseEnvelope`: a malformed message yields `{ ok: false, error }` for the caller to log and skip.
 */
import { randomUUID } from 'node:crypto'
import { canonicalJson, sha256Hex } from '../util/ids.ts'

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

/** Stable dedup id: hex hash of the canonical JSON of the fields that identify the message. */
export function dedupId(parts: Record<string, unknown>): string {
  return sha256Hex(canonicalJson(parts)).slice(0, DEDUP_ID_LENGTH)
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
    corr_id: init.corr_id ?? randomUUID(),
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

export type ParseResult<T> = { ok: true; value: T } | { ok: false; error: string }

function isObj(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

const MSG_TYPES = new Set<string>(Object.values(MsgType))
const ROLES = new Set<string>(Object.values(Role))

/** Parses and checks an envelope; never throws. */
export function parseEnvelope(raw: string): ParseResult<Envelope> {
  let data: unknown
  try {
    data = JSON.parse(raw)
  } catch {
    return { ok: false, error: 'not JSON' }
  }
  const bad = envelopeProblem(data)
  if (bad !== null) return { ok: false, error: bad }
  // The parsed object is ours: completed in place rather than copied.
  const env = data as Record<string, unknown>
  if (env['corr_id'] === undefined) env['corr_id'] = ''
  return { ok: true, value: env as unknown as Envelope }
}

/**
 * The envelope of a bus message: `decoded` when the bus delivered the producer's object (a bus in
 * memory; checked as parsed text is, never changed: a copy is completed), else `value` parsed.
 */
export function envelopeOf(message: { value: string; decoded?: object }): ParseResult<Envelope> {
  const data = message.decoded
  if (data === undefined) return parseEnvelope(message.value)
  const bad = envelopeProblem(data)
  if (bad !== null) return { ok: false, error: bad }
  const env = data as unknown as Envelope
  return { ok: true, value: env.corr_id === undefined ? { ...env, corr_id: '' } : env }
}

/** Why `data` is not a valid envelope, or null. */
function envelopeProblem(data: unknown): string | null {
  if (!isObj(data)) return 'not a JSON object'
  if (data['v'] !== 1) return `unsupported protocol version ${JSON.stringify(data['v'])}`
  if (typeof data['msg_type'] !== 'string' || !MSG_TYPES.has(data['msg_type'])) return 'bad msg_type'
  if (typeof data['role'] !== 'string' || !ROLES.has(data['role'])) return 'bad role'
  for (const f of ['dedup_id', 'task_id', 'node_id', 'step_type'] as const) {
    if (typeof data[f] !== 'string' || (data[f] as string).length === 0 || (data[f] as string).length > 512) return `bad ${f}`
  }
  if (!Number.isSafeInteger(data['attempt_epoch']) || (data['attempt_epoch'] as number) < 0) return 'bad attempt_epoch'
  if (typeof data['ts_ms'] !== 'number' || !Number.isFinite(data['ts_ms'])) return 'bad ts_ms'
  if (!isObj(data['payload'])) return 'bad payload'
  if (data['corr_id'] !== undefined && typeof data['corr_id'] !== 'string') return 'bad corr_id'
  const t = data['target_worker_id']
  if (t !== undefined && t !== null && typeof t !== 'string') return 'bad target_worker_id'
  return null
}

function str(p: Record<string, unknown>, k: string): string | undefined {
  const v = p[k]
  return typeof v === 'string' ? v : undefined
}
function objOrNull(v: unknown): Record<string, unknown> | null | undefined {
  if (v === undefined || v === null) return null
  return isObj(v) ? v : undefined
}

/** Checks a worker status event payload (TASK_ACCEPTED … CANCELLED). */
export function parseStatusEvent(p: Record<string, unknown>): ParseResult<StatusEvent> {
  const kind = p['kind']
  const worker_id = str(p, 'worker_id')
  const bad = (why: string): ParseResult<StatusEvent> => ({ ok: false, error: `${String(kind)}: ${why}` })
  if (worker_id === undefined) return bad('worker_id must be a string')
  switch (kind) {
    case 'TASK_ACCEPTED':
    case 'TASK_HEARTBEAT':
    case 'TASK_RESUMED': {
      const lease_id = str(p, 'lease_id')
      const d = p['lease_deadline_ts_ms']
      if (lease_id === undefined) return bad('lease_id must be a string')
      if (typeof d !== 'number' || !Number.isFinite(d)) return bad('lease_deadline_ts_ms must be a number')
      return { ok: true, value: { kind, worker_id, lease_id, lease_deadline_ts_ms: d } }
    }
    case 'BATCH_OK': {
      const batch_uid = str(p, 'batch_uid')
      const metrics = p['metrics'] === undefined ? {} : p['metrics']
      const artifacts_ref = objOrNull(p['artifacts_ref'])
      if (batch_uid === undefined || batch_uid.length === 0) return bad('batch_uid must be a non-empty string')
      if (!isObj(metrics)) return bad('metrics must be an object')
      if (artifacts_ref === undefined) return bad('artifacts_ref must be an object or null')
      return { ok: true, value: { kind, worker_id, batch_uid, metrics, artifacts_ref } }
    }
    case 'BATCH_FAILED': {
      const batch_uid = str(p, 'batch_uid')
      const reason_code = str(p, 'reason_code')
      const artifacts_ref = objOrNull(p['artifacts_ref'])
      if (batch_uid === undefined) return bad('batch_uid must be a string')
      if (reason_code === undefined) return bad('reason_code must be a string')
      if (artifacts_ref === undefined) return bad('artifacts_ref must be an object or null')
      const error = p['error'] === undefined || p['error'] === null ? null : String(p['error'])
      return { ok: true, value: { kind, worker_id, batch_uid, reason_code, permanent: p['permanent'] === true, error, artifacts_ref } }
    }
    case 'TASK_DONE': {
      const metrics = p['metrics'] === undefined ? {} : p['metrics']
      const artifacts_ref = objOrNull(p['artifacts_ref'])
      if (!isObj(metrics)) return bad('metrics must be an object')
      if (artifacts_ref === undefined) return bad('artifacts_ref must be an object or null')
      const fu = p['final_uid']
      const b = p['batches']
      const value: EvTaskDone = { kind, worker_id, metrics, artifacts_ref, final_uid: typeof fu === 'string' ? fu : null }
      if (Number.isSafeInteger(b) && (b as number) >= 0) value.batches = b as number
      return { ok: true, value }
    }
    case 'TASK_FAILED': {
      const reason_code = str(p, 'reason_code')
      if (reason_code === undefined) return bad('reason_code must be a string')
      const error = p['error'] === undefined || p['error'] === null ? null : String(p['error'])
      return { ok: true, value: { kind, worker_id, reason_code, permanent: p['permanent'] === true, error } }
    }
    case 'CANCELLED': {
      const reason = p['reason'] === undefined || p['reason'] === null ? '' : String(p['reason'])
      return { ok: true, value: { kind, worker_id, reason } }
    }
    default:
      return { ok: false, error: `unknown event kind ${JSON.stringify(kind)}` }
  }
}

export function parseCommand(p: Record<string, unknown>): ParseResult<CmdTaskStart | CmdTaskCancel | { cmd: 'TASK_PAUSE' | 'TASK_RESUME' }> {
  const cmd = p['cmd']
  switch (cmd) {
    case 'TASK_START': {
      const input_ref = objOrNull(p['input_ref'])
      const input_inline = objOrNull(p['input_inline'])
      const batching = objOrNull(p['batching'])
      if (input_ref === undefined || input_inline === undefined || batching === undefined) {
        return { ok: false, error: 'TASK_START: input_ref, input_inline and batching must be objects or null' }
      }
      const cancel_token = typeof p['cancel_token'] === 'string' ? p['cancel_token'] : ''
      const failures = parseFailures(p['failures'])
      return { ok: true, value: { cmd, input_ref, input_inline, batching, cancel_token, ...(failures.length > 0 ? { failures } : {}) } }
    }
    case 'TASK_CANCEL':
      return {
        ok: true,
        value: { cmd, reason: typeof p['reason'] === 'string' ? p['reason'] : 'cancelled', cancel_token: String(p['cancel_token'] ?? '') },
      }
    case 'TASK_PAUSE':
    case 'TASK_RESUME':
      return { ok: true, value: { cmd } }
    default:
      return { ok: false, error: `unknown command ${JSON.stringify(cmd)}` }
  }
}

/** The `failures` of a TASK_START, leniently: malformed entries are dropped. */
function parseFailures(v: unknown): UpstreamFailure[] {
  if (!Array.isArray(v)) return []
  const out: UpstreamFailure[] = []
  for (const f of v) {
    if (f === null || typeof f !== 'object') continue
    const r = f as Record<string, unknown>
    if (typeof r['node_id'] !== 'string' || typeof r['reason_code'] !== 'string') continue
    out.push({
      node_id: r['node_id'],
      attempt_epoch: typeof r['attempt_epoch'] === 'number' ? r['attempt_epoch'] : 0,
      reason_code: r['reason_code'],
      error: typeof r['error'] === 'string' ? r['error'] : null,
    })
  }
  return out
}

export function parseSignal(p: Record<string, unknown>): ParseResult<SigCancel> {
  if (p['sig'] !== 'CANCEL') return { ok: false, error: `unknown signal ${JSON.stringify(p['sig'])}` }
  const d = p['deadline_ts_ms']
  return {
    ok: true,
    value: {
      sig: 'CANCEL',
      reason: typeof p['reason'] === 'string' ? p['reason'] : 'cancelled',
      cancel_token: typeof p['cancel_token'] === 'string' ? p['cancel_token'] : null,
      deadline_ts_ms: typeof d === 'number' && Number.isFinite(d) ? d : null,
    },
  }
}

export function parseReply(p: Record<string, unknown>): ParseResult<ReplySnapshot> {
  if (p['reply'] !== 'TASK_SNAPSHOT') return { ok: false, error: `unknown reply ${JSON.stringify(p['reply'])}` }
  const ep = p['attempt_epoch']
  const lease = isObj(p['lease']) ? p['lease'] : null
  return {
    ok: true,
    value: {
      reply: 'TASK_SNAPSHOT',
      worker_id: typeof p['worker_id'] === 'string' ? p['worker_id'] : null,
      run_state: typeof p['run_state'] === 'string' ? p['run_state'] : 'idle',
      attempt_epoch: Number.isSafeInteger(ep) ? (ep as number) : 0,
      lease:
        lease && typeof lease['worker_id'] === 'string' && typeof lease['lease_id'] === 'string'
          ? { worker_id: lease['worker_id'], lease_id: lease['lease_id'], deadline_ts_ms: Number(lease['deadline_ts_ms'] ?? 0) }
          : null,
      progress: isObj(p['progress']) ? p['progress'] : {},
      artifacts: isObj(p['artifacts']) ? p['artifacts'] : null,
    },
  }
}

export function messageKey(taskId: string, nodeId: string): string {
  return `${taskId}:${nodeId}`
}
