/**
 * A worker's WORKER_ONLINE / WORKER_OFFLINE announcements on the announce topic (the coordinator's
 * worker registry reads them): sent through the status emitter, so a failed produce is retried
 * with backoff, and repeated on a schedule while the worker runs.
 */
import { errorMessage } from '../errors.ts'
import type { WorkerRun } from '../ports/store.ts'
import { dedupId, encode, makeEnvelope } from '../protocol/messages.ts'
import type { WorkerCore } from './core.ts'

/** What an announcement says about its worker. */
export interface AnnounceInfo {
  workerId: string
  roles: string[]
  version: string
  concurrency: number
  /** The announce topic. */
  topic: string
  /** Slots held now (sent as `load.running`). */
  running?: () => number
}

/** Sends one announcement; rejects only when it failed for good (after the emitter's retries). */
export function announce(core: WorkerCore, w: AnnounceInfo, kind: 'WORKER_ONLINE' | 'WORKER_OFFLINE', resume: WorkerRun[], change = false): Promise<void> {
  const running = w.running?.()
  const payload: Record<string, unknown> =
    kind === 'WORKER_ONLINE'
      ? {
          kind,
          worker_id: w.workerId,
          type: w.roles.join(','),
          // start_signal: this worker takes a START sent to it by name on the signals topic (a
          // coordinator steers one past a busy worker's partition; coordinator/steer.ts).
          capabilities: { roles: w.roles, start_signal: true },
          version: w.version,
          capacity: { tasks: w.concurrency },
          // Slots held (flowkit extension); `report: "change"`: sent because its slots filled up
          // or one freed (load-report.ts), the rest of the announce as usual.
          ...(running === undefined ? {} : { load: change ? { running, report: 'change' } : { running } }),
          ...(resume.length > 0 ? { resume } : {}),
        }
      : { kind, worker_id: w.workerId }
  const now = core.clock.now()
  return core.status.send({
    topic: w.topic,
    key: null,
    value: encode(
      makeEnvelope({
        msg_type: 'event',
        role: 'worker',
        task_id: '*',
        node_id: '*',
        step_type: '*',
        attempt_epoch: 0,
        ts_ms: now,
        dedup_id: dedupId({ worker: w.workerId, kind, ts: now, ...(change ? { load: running } : {}) }),
        payload,
      }),
    ),
  })
}

/**
 * Announces WORKER_ONLINE every `intervalMs` until `signal` aborts. The first repeats come sooner
 * (2 s, 4 s, 8 s … up to the interval): a coordinator reads announces from the end of the topic,
 * so one that subscribed just after this worker started (both started together) would otherwise
 * not know it for a whole interval. The schedule does not depend on the sends: a send that fails
 * (after its retries) is logged and the next announce still goes at its time; while one is still
 * being retried, the next tick is skipped.
 */
export async function announceLoop(core: WorkerCore, w: AnnounceInfo, intervalMs: number, signal: AbortSignal): Promise<void> {
  let inFlight = false
  let delayMs = Math.min(2_000, intervalMs)
  while (!signal.aborted) {
    try {
      await core.clock.sleep(delayMs, signal)
      delayMs = Math.min(delayMs * 2, intervalMs)
    } catch {
      return // stopped
    }
    if (inFlight || signal.aborted) continue
    inFlight = true
    announce(core, w, 'WORKER_ONLINE', []).then(
      () => {
        inFlight = false
      },
      (err: unknown) => {
        inFlight = false
        if (!signal.aborted) core.log.warn('worker.announce_failed', { error: errorMessage(err) })
      },
    )
  }
}
