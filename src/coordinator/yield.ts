/**
 * Which running nodes hold a worker slot while they wait for a node's data: its streaming
 * consumers (`start_when: first_batch`, an `on_batch` edge) and the nodes that pull its output
 * (input adapter `from_nodes`), then theirs, and so on — also through a plain dependent that has
 * not started because it waits for that node (a puller of `b` waits for `b`'s parent `a` as much
 * as for `b`). When that node cannot run (no worker accepted its START, or a concurrency limit is
 * reached), they may hold the very slot it needs: they yield (engine.ts). A running dependent that
 * does not wait for its data (it started from `fan_in: any` of another parent, say) keeps running.
 */
import type { TaskRuntime } from './runtime.ts'

/** A queued node that has not started because it waits for its parents. */
function waitsForParents(rt: TaskRuntime, ord: number): boolean {
  return rt.node(ord).status === 'queued' && rt.readiness(ord).kind === 'wait'
}

/** Running (accepted) worker nodes that wait for `ord`'s data, directly or through each other. */
export function waitingConsumers(rt: TaskRuntime, ord: number): number[] {
  const { streamingInto, pullsFrom, pulledBy, feedsConsumer } = rt.plan
  // No node below it waits for data while it runs (always so in a graph without streaming edges
  // or pulls, the common case): no search.
  if (feedsConsumer[ord] !== true) return []
  const out: number[] = []
  const seen = new Set<number>([ord])
  const stack = [ord]
  while (stack.length > 0) {
    const p = stack.pop() as number
    // Its dependents, and the nodes that pull its output without depending on it.
    for (const c of [...(rt.reeval[p] as number[]), ...(pulledBy[p] ?? [])]) {
      if (seen.has(c)) continue
      if (streamingInto[c]?.has(p) || pullsFrom[c]?.has(p)) {
        seen.add(c)
        const n = rt.node(c)
        if (n.status === 'running' && n.accepted_at_ms !== null && !rt.isFn(c)) out.push(c)
        stack.push(c)
      } else if (feedsConsumer[c] === true && waitsForParents(rt, c)) {
        // A plain dependent still waiting: whatever waits for its data waits for `p` too.
        seen.add(c)
        stack.push(c)
      }
    }
  }
  return out
}

/**
 * The upstream that `ord` (a consumer just accepted) waits for and that a concurrency limit holds
 * back, or null: the consumer was dispatched, not yet accepted, when that upstream started to
 * wait, so it was not asked to yield then. Looks through the upstreams that have not started
 * because they wait for their own parents.
 */
export function heldUpstream(rt: TaskRuntime, ord: number, isWaiting: (ord: number) => boolean): number | null {
  const { streamingInto, pullsFrom, parents } = rt.plan
  const seen = new Set<number>([ord])
  const stack = [...(pullsFrom[ord] ?? []), ...(streamingInto[ord] ?? [])]
  while (stack.length > 0) {
    const p = stack.pop() as number
    if (seen.has(p)) continue
    seen.add(p)
    if (isWaiting(p)) return p
    if (waitsForParents(rt, p)) stack.push(...(parents[p] ?? []))
  }
  return null
}

/**
 * A yielded consumer (`held_for` its upstream) waits for that upstream: it is looked at again when
 * the upstream is accepted or ends (engine.ts #releaseHeld). Also after such a release, when the
 * upstream lost its worker again (it failed and waits for its retry) before the consumer started.
 */
export function holdYielded(rt: TaskRuntime, ord: number): void {
  const upstream = rt.node(ord).held_for
  if (!upstream) return
  let set = rt.held.get(upstream)
  if (set === undefined) {
    set = new Set()
    rt.held.set(upstream, set)
  }
  set.add(ord)
}
