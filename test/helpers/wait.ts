/**
 * Waits for a condition with a deadline: the only way tests synchronise on asynchronous state.
 * Polls `cond` every `intervalMs` until it returns true; rejects after `timeoutMs` with `message`.
 * An exception thrown by `cond` fails the wait immediately.
 */
export interface WaitForOptions {
  timeoutMs?: number
  intervalMs?: number
  message?: string
}

export async function waitFor(
  cond: () => boolean | Promise<boolean>,
  { timeoutMs = 10_000, intervalMs = 10, message }: WaitForOptions = {},
): Promise<void> {
  const deadline = performance.now() + timeoutMs
  for (;;) {
    if (await cond()) return
    if (performance.now() >= deadline) {
      throw new Error(`waitFor timed out after ${timeoutMs}ms${message ? `: ${message}` : ''}`)
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
}

/**
 * Waits a fixed time. ONLY for proving that something did NOT happen within a window; say so in a
 * comment at the call site. Never use it to wait for something to happen (use waitFor).
 */
export function quietPeriod(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
