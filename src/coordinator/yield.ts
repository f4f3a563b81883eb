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
  const { streamingInto, pullsFrom } = rt.plan
  const out: number[] = []
  const seen = new Set<number>([ord])
  const stack = [ord]
  while (stack.length > 0) {
    const p = stack.pop() as number
    for (const c of rt.reeval[p] as number[]) {
      if (seen.has(c) || !(streamingInto[c]?.has(p) || pullsFrom[c]?.has(p))) continue
      seen.add(c)
      const n = rt.node(c)
      if (n.status === 'running' && n.accepted_at_ms !== null && !rt.isFn(c)) out.push(c)
      stack.push(c)
    }
  }
  return out
}
