/**
 * A worker's store calls through a short outage (a store restarting or failing over): a retryable
 * error is retried with backoff (50 ms doubling, at most 2 s apart) for up to STORE_RETRY_MS of real
 * time before it fails the run (transiently). Artifact writes (artifacts.ts) and the reads and
 * claims of the pull input adapters (input.ts) go through it.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { FlowkitError } from '../errors.ts'

/** How long a worker's store calls are retried through a store outage (real time). */
export const STORE_RETRY_MS = 30_000

export interface StoreRetryOptions {
  /**
   * Ends the wait between tries (the run was cancelled): rejects with an AbortError (the signal's
   * reason as its cause); a signal already aborted when a try fails rejects with that failure.
   */
  signal?: AbortSignal
  /** Called once, at the first failure that is retried. */
  onRetry?: (err: FlowkitError) => void
  /** Retried for this long (default STORE_RETRY_MS). */
  forMs?: number
}

/** `fn`'s result, and whether it took more than one try (an earlier try failed). */
export async function retryingStore<T>(fn: () => Promise<T>, o: StoreRetryOptions = {}): Promise<{ value: T; retried: boolean }> {
  const until = performance.now() + (o.forMs ?? STORE_RETRY_MS)
  for (let attempt = 0; ; attempt++) {
    try {
      return { value: await fn(), retried: attempt > 0 }
    } catch (err) {
      if (!(err instanceof FlowkitError && err.retryable) || performance.now() >= until) throw err
      if (o.signal?.aborted === true) throw err
      if (attempt === 0) o.onRetry?.(err)
      await sleep(Math.min(2000, 50 * 2 ** attempt), undefined, o.signal === undefined ? undefined : { signal: o.signal })
    }
  }
}
