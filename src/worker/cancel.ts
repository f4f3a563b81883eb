/** The reason a run's AbortSignal carries when it is cancelled. */
export class CancelledRunError extends Error {
  constructor(reason: string) {
    super(reason)
    this.name = 'CancelledError'
  }
}

/** The CANCELLED reason of a run a stopping worker gives up (see protocol/messages.ts). */
export { WORKER_STOPPING_REASON } from '../protocol/messages.ts'
