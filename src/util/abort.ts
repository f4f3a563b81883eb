/**
 * The reason given to AbortControllers that only stop an internal wait (a timer re-armed, a loop
 * woken): one shared object, so an abort costs no DOMException (and its stack trace) each time.
 */
export const QUIET_ABORT: Error = Object.freeze(Object.assign(new Error('aborted'), { name: 'AbortError' })) as Error
