/**
 * The commands the coordinator sends, built from a task runtime: a node's TASK_START (with the
 * task variables inline, a flowkit extension) and the cancel of an attempt (TASK_CANCEL on the
 * role's command topic, and a CANCEL signal to the worker holding it).
 */
import type { CoordinatorConfig } from '../config.ts'
import { topicFor } from '../config.ts'
import type { NodeSpec } from '../graph/types.ts'
import { type UpstreamFailure, dedupId, encode, makeEnvelope, messageKey } from '../protocol/messages.ts'
import type { PendingCommand, TaskRuntime } from './runtime.ts'
import { handOver } from '../ports/store-rules.ts'
import { encodedLater } from '../ports/bus.ts'

/** Largest variables object sent inside a TASK_START (bigger ones are read from the store). */
export const VARS_INLINE_MAX = 256 * 1024

/** A START's ids given by the caller (createTask sizes a START with placeholders of their length). */
export interface StartIds {
  dedupId: string
  cancelToken: string
}

/** The cancel token of an attempt: its TASK_START carries it, its TASK_CANCEL and CANCEL repeat it. */
export function cancelToken(taskId: string, nodeId: string, epoch: number): string {
  // Keys in sorted order: their canonical JSON is written without sorting (util/ids.ts).
  return dedupId({ epoch, node: nodeId, task: taskId, token: 'cancel' })
}

/**
 * The TASK_START of a node's attempt: the node's io (input_ref, input_inline, batching), the cancel
 * token and the task variables (flowkit extension, `null` when sent too large to inline: the
 * worker then reads them from the store). createTask sizes this very envelope (submit.ts).
 */
export function startEnvelope(taskId: string, spec: NodeSpec, epoch: number, now: number, vars: Record<string, unknown> | null, failures?: UpstreamFailure[], ids?: StartIds) {
  const io = spec.io
  const payload: Record<string, unknown> = {
    cmd: 'TASK_START',
    input_ref: io.input_ref ?? null,
    input_inline: io.input_inline ?? null,
    batching: io.batching ?? null,
    cancel_token: ids?.cancelToken ?? cancelToken(taskId, spec.node_id, epoch),
    vars,
    ...(failures !== undefined && failures.length > 0 ? { failures } : {}),
  }
  return makeEnvelope({
    msg_type: 'cmd',
    role: 'coordinator',
    task_id: taskId,
    node_id: spec.node_id,
    step_type: spec.type,
    attempt_epoch: epoch,
    ts_ms: now,
    // One logical message per attempt: a resend carries the same dedup_id (workers dedup on it).
    dedup_id: ids?.dedupId ?? dedupId({ cmd: 'TASK_START', epoch, node: spec.node_id, task: taskId }),
    payload,
  })
}

/**
 * JSON bytes of a task's variables, by object: a task's variables are replaced, never changed in
 * place, so a fan-out of thousands of STARTs measures them once (not once per START: with large
 * variables that stalled the event loop for seconds).
 */
const VARS_BYTES = new WeakMap<object, number>()

function varsBytes(vars: Record<string, unknown>): number {
  if (isEmpty(vars)) return 2 // most tasks: no entry in the map for them
  let n = VARS_BYTES.get(vars)
  if (n === undefined) {
    n = Buffer.byteLength(JSON.stringify(vars))
    VARS_BYTES.set(vars, n)
  }
  return n
}

function isEmpty(o: object): boolean {
  for (const _ in o) return false
  return true
}

/**
 * The START envelope of node `ord`'s attempt `epoch` as it would be sent now, for a copy sent to a
 * worker by name (steer.ts); null when its variables are too large to inline and the task
 * document does not hold them yet (the START itself makes the next write hold them).
 */
export function startEnvelopeOf(rt: TaskRuntime, ord: number, epoch: number, now: number): ReturnType<typeof startEnvelope> | null {
  const inline = varsBytes(rt.vars) <= VARS_INLINE_MAX
  if (!inline && !rt.varsStored()) return null
  return startEnvelope(rt.id, rt.spec(ord), epoch, now, inline ? rt.vars : null, failuresFor(rt, ord))
}

export function startCommand(config: CoordinatorConfig, rt: TaskRuntime, ord: number, epoch: number, resend: number, now: number): PendingCommand {
  const spec = rt.spec(ord)
  const inline = varsBytes(rt.vars) <= VARS_INLINE_MAX
  // Without its variables the worker reads them from the task document: it must hold them first.
  if (!inline && !rt.varsStored()) rt.forceSnapshot = true
  const env = startEnvelope(rt.id, spec, epoch, now, inline ? rt.vars : null, failuresFor(rt, ord))
  // A worker in this process (memory bus) reads the envelope itself: its text is made when first
  // read (a bus on the network, the outbox's store).
  const cmd = encodedLater(topicFor(config.topicCmdFmt, spec.type), messageKey(rt.id, spec.node_id), handOver(env)) as PendingCommand
  cmd.dedup_id = resend === 0 ? env.dedup_id : `${env.dedup_id}:r${resend}`
  cmd.kind = 'TASK_START'
  cmd.ord = ord
  cmd.epoch = epoch
  return cmd
}

/** Longest error text of a failed upstream carried in a START (the full text is in the task). */
const FAILURE_ERROR_MAX = 2048

/** For a node started by `routing.on_failure`: the failed nodes that routed to it, and why. */
function failuresFor(rt: TaskRuntime, ord: number): UpstreamFailure[] {
  const out: UpstreamFailure[] = []
  for (const r of rt.index.routedFrom.get(rt.spec(ord).node_id) ?? []) {
    if (r.on !== 'failure') continue
    const src = rt.node(rt.ord.get(r.source) as number)
    if (src.status !== 'failed') continue
    const err = src.last_error?.error ?? null
    out.push({ node_id: src.node_id, attempt_epoch: src.attempt_epoch, reason_code: src.last_error?.reason_code ?? 'failed', error: err !== null && err.length > FAILURE_ERROR_MAX ? `${err.slice(0, FAILURE_ERROR_MAX)}…` : err })
  }
  return out
}

/** TASK_CANCEL to the role (when `cmd`) and a CANCEL signal to `holder` (when known). */
export function cancelCommands(
  config: CoordinatorConfig,
  rt: TaskRuntime,
  ord: number,
  epoch: number,
  reason: string,
  holder: string | null,
  deadline: number,
  cmd: boolean,
  now: number,
): PendingCommand[] {
  const spec = rt.spec(ord)
  const out: PendingCommand[] = []
  const token = cancelToken(rt.id, spec.node_id, epoch)
  const base = { role: 'coordinator' as const, task_id: rt.id, node_id: spec.node_id, step_type: spec.type, attempt_epoch: epoch, ts_ms: now }
  if (cmd) {
    const d = dedupId({ cmd: 'TASK_CANCEL', epoch, node: spec.node_id, task: rt.id })
    out.push({
      topic: topicFor(config.topicCmdFmt, spec.type),
      key: messageKey(rt.id, spec.node_id),
      dedup_id: d,
      value: encode(makeEnvelope({ ...base, msg_type: 'cmd', dedup_id: d, payload: { cmd: 'TASK_CANCEL', reason, cancel_token: token } })),
      kind: 'TASK_CANCEL',
      ord,
      epoch,
    })
  }
  if (holder) out.push(cancelSignal(config, { taskId: rt.id, nodeId: spec.node_id, stepType: spec.type, epoch }, holder, reason, deadline, now, ord))
  return out
}

/** The CANCEL signal of one attempt to the worker that holds it (the signal topic is never paused). */
export function cancelSignal(
  config: CoordinatorConfig,
  a: { taskId: string; nodeId: string; stepType: string; epoch: number },
  holder: string,
  reason: string,
  deadline: number,
  now: number,
  ord = -1,
): PendingCommand {
  const d = dedupId({ epoch: a.epoch, node: a.nodeId, sig: 'CANCEL', task: a.taskId })
  const base = { role: 'coordinator' as const, task_id: a.taskId, node_id: a.nodeId, step_type: a.stepType, attempt_epoch: a.epoch, ts_ms: now }
  // Whole milliseconds: a Python worker's model takes an int (a cancelGraceSec of 0.3333 made 1796689075037.3, and it dropped the signal).
  const payload = { sig: 'CANCEL', reason, cancel_token: cancelToken(a.taskId, a.nodeId, a.epoch), deadline_ts_ms: Math.ceil(deadline) }
  return {
    topic: config.topicSignals,
    key: holder,
    dedup_id: d,
    value: encode(makeEnvelope({ ...base, msg_type: 'event', dedup_id: d, target_worker_id: holder, payload })),
    kind: 'CANCEL',
    ord,
    epoch: a.epoch,
  }
}

/** After a restart: the commands a loaded node's state implies, queued again (receivers dedup); false when none. */
export function reissueCommands(config: CoordinatorConfig, rt: TaskRuntime, ord: number, now: number): boolean {
  if (rt.isFn(ord)) return false
  const n = rt.node(ord)
  if (n.status === 'cancelling') {
    rt.commands.push(...cancelCommands(config, rt, ord, n.attempt_epoch, rt.cancelReason ?? 'cancelled', n.lease.worker_id ?? null, now + config.cancelGraceSec * 1000, true, now))
  } else if (n.status === 'running' && n.accepted_at_ms === null) {
    rt.commands.push(startCommand(config, rt, ord, n.attempt_epoch, 0, now))
  } else return false
  rt.events.push(`reissue ${n.node_id}@${n.attempt_epoch}`)
  return true
}

/** The CANCEL signal to a worker that accepted a replaced attempt, queued. */
export function staleCancel(config: CoordinatorConfig, rt: TaskRuntime, ord: number, epoch: number, workerId: string, now: number): void {
  rt.commands.push(...cancelCommands(config, rt, ord, epoch, 'stale_attempt', workerId, now + config.cancelGraceSec * 1000, false, now))
  rt.events.push(`cancel stale ${rt.spec(ord).node_id}@${epoch}`)
}
