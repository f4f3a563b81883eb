/** Polling period of waitUntil. */
const POLL_MS = 250

/**
 * Resolves once `done()` holds (polled every 250 ms) or after `ms` of real time (a bus's sessions
 * run on it). Its timer does not keep the process alive.
 */
export async function waitUntil(done: () => boolean, ms: number): Promise<void> {
  const until = performance.now() + ms
  while (!done() && performance.now() < until) {
    await new Promise((resolve) => setTimeout(resolve, Math.min(POLL_MS, until - performance.now())).unref())
  }
}
