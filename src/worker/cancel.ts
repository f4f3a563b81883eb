/** The reason a run's AbortSignal carries when it is cancelled. */
export class CancelledRunError extends Error {
  constructor(reason: string) {
    super(reason)
    this.name = 'CancelledError'
  }
}

/**
 * The CANCELLED reason of a run the worker gives up because it stops (a deploy): a hand-back, not
 * a failure of the node. The coordinator re-dispatches such a run without counting a retry.
 */
export const WORKER_STOPPING_REASON = 'worker_stopping'
