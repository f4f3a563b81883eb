/** The reason a run's AbortSignal carries when it is cancelled. */
export class CancelledRunError extends Error {
  constructor(reason: string) {
    super(reason)
    this.name = 'CancelledError'
  }
}

/** The CANCELLED reason of a run a stopping worker gives up (see protocol/messages.ts). */
export { WORKER_STOPPING_REASON } from '../protocol/messages.ts'

/**
 * Runs a run's cleanups (`ctx.onCleanup`, last registered first) once, however often it is called:
 * at the run's end, or earlier when the run is abandoned after its cancel grace (runs.ts) — the
 * handler still stuck, a cleanup being what may release what it waits on.
 */
export function cleanupsOnce(cleanups: Array<() => void | Promise<void>>, failed: (err: unknown) => void): () => Promise<void> {
  let cleaning: Promise<void> | null = null
  return () => {
    cleaning ??= (async () => {
      for (const fn of [...cleanups].reverse()) {
        try {
          await fn()
        } catch (err) {
          failed(err)
        }
      }
    })()
    return cleaning
  }
}
