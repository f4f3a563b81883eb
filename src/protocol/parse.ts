/**
 * Parsing and checking of wire protocol v1 messages (messages.ts has their types). Strict, and
 * never throws: a malformed message yields `{ ok: false, error }` for the caller to log and skip.
 */
import { type CmdTaskCancel, type CmdTaskStart, type Envelope, type EvTaskDone, MsgType, type ReplySnapshot, Role, type SigCancel, type StatusEvent, type UpstreamFailure } from './messages.ts'

import { isHandedOver } from '../ports/store-rules.ts'

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
  // One flowkit made and handed over (makeEnvelope, then handOver) is well formed: not checked again.
  const bad = isHandedOver(data) ? null : envelopeProblem(data)
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

/**
 * Deepest nesting of the values a status event carries for the coordinator to store (`metrics`,
 * `artifacts_ref`: a worker's counters and a reference, shallow in practice). Deeper is malformed:
 * stores, encoders and copies recurse through these values, and a value nested thousands deep
 * would overflow the stack on every write of its task (and block its partition with redeliveries).
 */
export const MAX_EVENT_VALUE_DEPTH = 32

/** Whether `v` nests containers deeper than `left` levels (recursion bounded by `left`). */
export function deeperThan(v: unknown, left: number): boolean {
  if (v === null || typeof v !== 'object') return false
  if (left === 0) return true
  if (Array.isArray(v)) {
    for (const c of v) if (deeperThan(c, left - 1)) return true
    return false
  }
  for (const k in v) if (deeperThan((v as Record<string, unknown>)[k], left - 1)) return true
  return false
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
      if (deeperThan(metrics, MAX_EVENT_VALUE_DEPTH)) return bad(`metrics nested deeper than ${MAX_EVENT_VALUE_DEPTH} levels`)
      if (deeperThan(artifacts_ref, MAX_EVENT_VALUE_DEPTH)) return bad(`artifacts_ref nested deeper than ${MAX_EVENT_VALUE_DEPTH} levels`)
      return { ok: true, value: { kind, worker_id, batch_uid, metrics, artifacts_ref } }
    }
    case 'BATCH_FAILED': {
      const batch_uid = str(p, 'batch_uid')
      const reason_code = str(p, 'reason_code')
      const artifacts_ref = objOrNull(p['artifacts_ref'])
      if (batch_uid === undefined) return bad('batch_uid must be a string')
      if (reason_code === undefined) return bad('reason_code must be a string')
      if (artifacts_ref === undefined) return bad('artifacts_ref must be an object or null')
      if (deeperThan(artifacts_ref, MAX_EVENT_VALUE_DEPTH)) return bad(`artifacts_ref nested deeper than ${MAX_EVENT_VALUE_DEPTH} levels`)
      const error = p['error'] === undefined || p['error'] === null ? null : String(p['error'])
      return { ok: true, value: { kind, worker_id, batch_uid, reason_code, permanent: p['permanent'] === true, error, artifacts_ref } }
    }
    case 'TASK_DONE': {
      const metrics = p['metrics'] === undefined ? {} : p['metrics']
      const artifacts_ref = objOrNull(p['artifacts_ref'])
      if (!isObj(metrics)) return bad('metrics must be an object')
      if (artifacts_ref === undefined) return bad('artifacts_ref must be an object or null')
      if (deeperThan(metrics, MAX_EVENT_VALUE_DEPTH)) return bad(`metrics nested deeper than ${MAX_EVENT_VALUE_DEPTH} levels`)
      if (deeperThan(artifacts_ref, MAX_EVENT_VALUE_DEPTH)) return bad(`artifacts_ref nested deeper than ${MAX_EVENT_VALUE_DEPTH} levels`)
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
