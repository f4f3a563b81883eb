/**
 * The reason given to AbortControllers that only stop an internal wait (a timer re-armed, a loop
 * woken): one shared object, so an abort costs no DOMException (and its stack trace) each time.
 */
export const QUIET_ABORT: Error = Object.freeze(Object.assign(new Error('aborted'), { name: 'AbortError' })) as Error

/**
 * `promise`'s outcome, or a rejection with `signal`'s reason as soon as it aborts. The promise
 * goes on (a store call cannot be taken back); its outcome is then ignored.
 */
export function unlessAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    promise.catch(() => undefined)
    return Promise.reject(signal.reason)
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason)
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
