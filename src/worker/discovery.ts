/**
 * Messages addressed to the worker outside the command topics: cancel signals and steered STARTs
 * (`target_worker_id`) and TASK_DISCOVER queries, answered with a TASK_SNAPSHOT of the run (or of the stored artifacts).
 *
 * Nothing here compares the worker's clock with a time another process computed: a cancel
 * signal's `deadline_ts_ms` (the coordinator's clock) is not used, a cancel applies at once and the
 * worker's own grace (`cancelGraceMs`) is a duration.
 */
import type { BusMessage } from '../ports/bus.ts'
import { type Envelope, dedupId, encode, makeEnvelope, messageKey } from '../protocol/messages.ts'
import { parseEnvelope, parseSignal } from '../protocol/parse.ts'
import { attemptKey, invalidIds, type WorkerCore } from './core.ts'
import type { RunManager } from './runs.ts'

export async function onSignal(core: WorkerCore, runs: RunManager, m: BusMessage, steered?: (env: Envelope, headers: Readonly<Record<string, string>> | undefined) => Promise<void>): Promise<void> {
  const parsed = parseEnvelope(m.value)
  if (!parsed.ok) {
    core.log.warn('bus.message_malformed', { topic: m.topic, offset: m.offset, error: parsed.error })
    return
  }
  const env = parsed.value
  if (env.target_worker_id !== core.workerId) return
  // A START steered here past a busy worker (coordinator/steer.ts): the intake decides.
  if (env.msg_type === 'cmd' && env.payload['cmd'] === 'TASK_START' && steered !== undefined) return steered(env, m.headers)
  const sig = parseSignal(env.payload)
  if (!sig.ok) {
    core.log.warn('bus.message_malformed', { topic: m.topic, offset: m.offset, error: sig.error })
    return
  }
  const run = core.runs.get(messageKey(env.task_id, env.node_id))
  if (run && run.info.attemptEpoch === env.attempt_epoch) runs.cancel(run, sig.value.reason)
  else {
    core.log.debug('worker.cancel_unknown_run', { task_id: env.task_id, node_id: env.node_id, attempt_epoch: env.attempt_epoch })
    core.cancelledEarly.add(attemptKey(env.task_id, env.node_id, env.attempt_epoch))
  }
}

export async function onQuery(core: WorkerCore, m: BusMessage): Promise<void> {
  const parsed = parseEnvelope(m.value)
  if (!parsed.ok) {
    core.log.warn('bus.message_malformed', { topic: m.topic, offset: m.offset, error: parsed.error })
    return
  }
  const env = parsed.value
  if (env.msg_type !== 'query' || env.payload['query'] !== 'TASK_DISCOVER') return
  if (!core.roles.includes(env.step_type)) return
  const bad = invalidIds(env)
  if (bad !== null) {
    // Its ids would build a store key: not answered (the coordinator never asks with such ids).
    core.log.warn('worker.query_invalid_ids', { topic: m.topic, partition: m.partition, offset: m.offset, error: bad })
    return
  }
  const run = core.runs.get(messageKey(env.task_id, env.node_id))
  // The lease is stated as a duration (deadline - ts_ms, one reading of the clock).
  const now = core.clock.now()
  let payload: Record<string, unknown>
  if (run) {
    const deadline = Math.ceil(now + core.config.leaseTtlSec * 1000)
    payload = {
      reply: 'TASK_SNAPSHOT',
      worker_id: core.workerId,
      run_state: run.cancelReason === null ? 'running' : 'cancelling',
      attempt_epoch: run.info.attemptEpoch,
      lease: { worker_id: core.workerId, lease_id: run.info.leaseId, deadline_ts_ms: deadline },
      progress: { batches: run.batches },
      artifacts: null,
    }
  } else {
    const complete = await core.store.getArtifact(env.task_id, env.node_id, null)
    payload = {
      reply: 'TASK_SNAPSHOT',
      worker_id: null,
      run_state: 'idle',
      attempt_epoch: 0,
      lease: null,
      progress: {},
      artifacts: complete?.status === 'complete' ? { complete: true } : null,
    }
  }
  // Through the status emitter: a failed produce is retried with backoff (a broker outage).
  await core.status.send(
    {
      topic: core.config.topicReply,
      key: env.task_id,
      value: encode(
        makeEnvelope({
          msg_type: 'reply',
          role: 'worker',
          corr_id: env.corr_id,
          dedup_id: dedupId({ corr: env.corr_id, worker: core.workerId }),
          task_id: env.task_id,
          node_id: env.node_id,
          step_type: env.step_type,
          attempt_epoch: run?.info.attemptEpoch ?? 0,
          ts_ms: now,
          payload,
        }),
      ),
    },
  )
}
