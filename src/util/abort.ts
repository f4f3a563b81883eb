/**
 * The reason given to AbortControllers that only stop an internal wait (a timer re-armed, a loop
 * woken): one shared object, so an abort costs no DOMException (and its stack trace) each time.
 */
export const QUIET_ABORT: Error = Object.freeze(Object.assign(new Error('aborted'), { name: 'AbortError' })) as Error

/**
 * `promise`'s outcome, or a rejection with `reason()` (by default the signal's reason) as soon as
 * `signal` aborts. The promise goes on (a store call or a produce cannot be taken back); its
 * outcome is then ignored.
 */
export function unlessAborted<T>(promise: Promise<T>, signal: AbortSignal, reason: () => unknown = () => signal.reason): Promise<T> {
  if (signal.aborted) {
    promise.catch(() => undefined)
    return Promise.reject(reason())
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(reason())
    signal.addEventListener('abort', onAbort, { once: true })
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort)
        resolve(value)
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort)
        reject(err)
      },
    )
  })
}
