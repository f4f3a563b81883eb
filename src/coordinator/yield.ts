/**
 * Which running nodes hold a worker slot while they wait for a node's data: its streaming
 * consumers (`start_when: first_batch`, an `on_batch` edge) and the nodes that pull its output
 * (input adapter `from_nodes`), then theirs, and so on. When that node cannot run (no worker
 * accepted its START, or a concurrency limit is reached), they may hold the very slot it needs:
 * they yield (engine.ts). A running dependent that does not wait for its data (it started from
 * `fan_in: any` of another parent, say) keeps running.
 */
import type { TaskRuntime } from './runtime.ts'

/** Running (accepted) worker nodes that wait for `ord`'s data, directly or through each other. */
export function waitingConsumers(rt: TaskRuntime, ord: number): number[] {
  const { streamingInto, pullsFrom, pulledBy } = rt.plan
  const out: number[] = []
  const seen = new Set<number>([ord])
  const stack = [ord]
  while (stack.length > 0) {
    const p = stack.pop() as number
    // Its dependents, and the nodes that pull its output without depending on it.
    for (const c of [...(rt.reeval[p] as number[]), ...(pulledBy[p] ?? [])]) {
      if (seen.has(c) || !(streamingInto[c]?.has(p) || pullsFrom[c]?.has(p))) continue
      seen.add(c)
      const n = rt.node(c)
      if (n.status === 'running' && n.accepted_at_ms !== null && !rt.isFn(c)) out.push(c)
      stack.push(c)
    }
  }
  return out
}

/**
 * The upstream that `ord` (a consumer just accepted) waits for and that a concurrency limit holds
 * back, or null: the consumer was dispatched, not yet accepted, when that upstream started to
 * wait, so it was not asked to yield then.
 */
export function heldUpstream(rt: TaskRuntime, ord: number, isWaiting: (ord: number) => boolean): number | null {
  const { streamingInto, pullsFrom } = rt.plan
  for (const p of pullsFrom[ord] ?? []) if (isWaiting(p)) return p
  for (const p of streamingInto[ord] ?? []) if (isWaiting(p)) return p
  return null
}
