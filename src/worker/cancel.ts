/** The reason a run's AbortSignal carries when it is cancelled. */
export class CancelledRunError extends Error {
  constructor(reason: string) {
    super(reason)
    this.name = 'CancelledError'
  }
}
