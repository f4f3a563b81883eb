/** All engine time goes through a Clock, so tests can drive timers by hand. */
export interface Clock {
  /** Wall clock, epoch milliseconds. */
  now(): number
  /** Resolves after `ms` of this clock's time; rejects with the signal's reason when aborted. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>
}
