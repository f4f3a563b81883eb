/**
 * Which consumers have a group join in flight, from @platformatic/kafka's own diagnostics channel
 * (`plt:kafka:consumer:group`, operation `joinGroup`): joins the consumer starts by itself (a
 * heartbeat that saw a rebalance) as well as ours. A consumer closed while a join is in flight is
 * armed again by that join when it completes, and then heartbeats every second for ever on the
 * closed client (@platformatic/kafka 2.12): a session waits for the join before it closes one.
 */
import { consumerGroupChannel } from '@platformatic/kafka'

interface GroupContext {
  operation?: unknown
  client?: unknown
}

const inFlight = new WeakMap<object, number>()
let subscribed = false

function change(ctx: GroupContext, by: number): void {
  if (ctx.operation !== 'joinGroup' || typeof ctx.client !== 'object' || ctx.client === null) return
  const n = (inFlight.get(ctx.client) ?? 0) + by
  if (n > 0) inFlight.set(ctx.client, n)
  else inFlight.delete(ctx.client)
}

/** Starts counting joins (once per process; call before the consumers it should see join). */
export function trackJoins(): void {
  if (subscribed) return
  subscribed = true
  const none = (): void => {}
  consumerGroupChannel.subscribe({
    start: (ctx) => change(ctx as GroupContext, 1),
    // Runs when the join's callback ran, with or without an error.
    asyncEnd: (ctx) => change(ctx as GroupContext, -1),
    end: none,
    asyncStart: none,
    error: none,
  })
}

/** True while `consumer` has a join in flight. */
export function joining(consumer: object): boolean {
  return inFlight.has(consumer)
}

/** Resolves once `consumer` has no join in flight, or after `maxMs`. */
export async function joinsSettled(consumer: object, maxMs: number): Promise<void> {
  const deadline = performance.now() + maxMs
  while (joining(consumer) && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
}
