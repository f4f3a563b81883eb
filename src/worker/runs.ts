/**
 * The run lifecycle: a taken start becomes an `ActiveRun` (its slot held until it ends), runs are
 * cancelled cooperatively (abandoned after the cancel grace), and a run that ends gives its slot
 * back and has the worker's run state persisted in the background. Execution is in execute.ts.
 */
import { uuidV4 } from '../util/ids.ts'
import { errorMessage } from '../errors.ts'
import { type CmdTaskStart, type Envelope, messageKey } from '../protocol/messages.ts'
import { CancelledRunError } from './cancel.ts'
import { type ActiveRun, attemptKey, runIds, type WorkerCore } from './core.ts'
import { executeRun } from './execute.ts'
import type { RunInfo } from './handler.ts'
import { failureText } from './results.ts'
import { emitStatus } from './status.ts'
import { QUIET_ABORT } from '../util/abort.ts'

export interface RunManagerHooks {
  /** Gives a run slot back (command intake). */
  releaseSlot(): void
  /** Forgets a taken start, so a resent command runs it again. */
  forget(seenKey: string): void
}

export class RunManager {
  readonly #core: WorkerCore
  readonly #hooks: RunManagerHooks

  constructor(core: WorkerCore, hooks: RunManagerHooks) {
    this.#core = core
    this.#hooks = hooks
  }

  cancel(run: ActiveRun, reason: string): void {
    const core = this.#core
    if (run.cancelReason !== null) return
    run.cancelReason = reason
    const ids = runIds(run.info)
    core.log.info('node.cancel_requested', { ...ids, reason })
    run.abort.abort(new CancelledRunError(reason))
    if (reason === '__killed__') return
    // Cancellation is cooperative: a handler that ignores the signal past the grace period is
    // abandoned (its results are discarded), CANCELLED is reported and its slot is given back.
    const grace = new AbortController()
    void run.freed.then(() => grace.abort(QUIET_ABORT))
    core.clock.sleep(core.config.cancelGraceMs, grace.signal).then(
      async () => {
        if (run.released) return
        core.log.warn('worker.cancel_grace_expired', { ...ids, grace_ms: core.config.cancelGraceMs })
        await emitStatus(core, run.info, { kind: 'CANCELLED', reason }, { kind: 'CANCELLED' }).catch(() => undefined)
        // Abandoned: its cleanups run now (they may release what the handler is stuck on), and
        // the slot waits for them one more grace at most (a stop waits for the slot).
        const cleaned = run.cleanup?.()
        if (cleaned !== undefined) {
          const bound = new AbortController() // (no timer left on the clock once they ended)
          await Promise.race([cleaned, core.clock.sleep(core.config.cancelGraceMs, bound.signal).catch(() => undefined)])
          bound.abort(QUIET_ABORT)
        }
        this.release(messageKey(run.info.taskId, run.info.nodeId), run)
      },
      () => undefined,
    )
  }

  launch(role: string, env: Envelope, cmd: CmdTaskStart, vars: Record<string, unknown>, headers?: Readonly<Record<string, string>>): void {
    const core = this.#core
    const info: RunInfo = {
      taskId: env.task_id,
      nodeId: env.node_id,
      stepType: role,
      attemptEpoch: env.attempt_epoch,
      workerId: core.workerId,
      leaseId: uuidV4(),
    }
    let free!: () => void
    const freed = new Promise<void>((r) => {
      free = r
    })
    const run: ActiveRun = {
      info,
      abort: new AbortController(),
      cancelReason: null,
      started: core.clock.now(),
      batches: 0,
      done: Promise.resolve(),
      accepted: false,
      released: false,
      freed,
      free,
      seenKey: attemptKey(env.task_id, env.node_id, env.attempt_epoch),
      startHeaders: headers,
    }
    const key = messageKey(env.task_id, env.node_id)
    // An older attempt of the node still running here is stale: the coordinator moved on to this one
    // (handed back while its reports were late). Its CANCEL could come after this START, and would
    // then find this run, not that one: it is stopped now.
    const older = core.runs.get(key)
    if (older !== undefined && older.info.attemptEpoch < env.attempt_epoch) {
      core.log.warn('worker.attempt_superseded', { ...runIds(older.info), by_epoch: env.attempt_epoch })
      this.cancel(older, 'stale_attempt')
    }
    core.runs.set(key, run)
    run.done = executeRun(core, role, run, cmd, vars)
      .catch(async (err: unknown) => {
        core.log.error('worker.run_crashed', { ...runIds(info), accepted: run.accepted, error: errorMessage(err) })
        if (core.killed) return
        if (!run.accepted) {
          // The coordinator never learnt of this run: let its resent start run it again.
          this.#hooks.forget(run.seenKey)
          return
        }
        const error = failureText(err)
        await emitStatus(core, info, { kind: 'TASK_FAILED', reason_code: 'worker_error', permanent: false, error }, { kind: 'TASK_FAILED' }).catch(
          () => undefined,
        )
      })
      .finally(() => {
        this.release(key, run)
        core.state.request() // in the background: a run's end never waits for this write
      })
  }

  /** Gives the run's slot back, once. */
  release(key: string, run: ActiveRun): void {
    if (this.#core.runs.get(key) === run) this.#core.runs.delete(key)
    if (run.released) return
    run.released = true
    // A run abandoned after its cancel grace (a handler ignoring its signal) sends no more
    // heartbeats, and its timer does not hold a stopped worker's process for an interval.
    run.stopHeartbeats?.()
    this.#hooks.releaseSlot()
    run.free()
  }
}
