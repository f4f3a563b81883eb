/**
 * Readiness rules (pure): given the task's node states, decide for a queued node whether it can
 * start now, must wait, or can never run (skipped).
 *
 * - Dependencies are depends_on ∪ edges ∪ edges_ex sources. A parent counts as "satisfied" when it
 *   finished or, for a streaming parent (start_when first_batch on the child, or an async on_batch
 *   edge), as soon as it has produced output. fan_in all / any / count:N apply to that count.
 * - A parent that failed, was cancelled or skipped can no longer satisfy the child.
 * - A node's `when` guard is checked on the task variables once it is otherwise ready; false skips it.
 * - Routing: a target of `on_success` needs its source finished; a target of `on_failure` needs its
 *   source failed. The other outcome skips it.
 */
import type { NodeState, NodeStatus } from '../model/state.ts'
import type { DependencyIndex } from './deps.ts'
import type { NodeSpec } from './types.ts'
import { evaluateGuard } from './guard.ts'

export type Readiness = { kind: 'start' } | { kind: 'wait' } | { kind: 'skip'; reason: string }

const DEAD: ReadonlySet<NodeStatus> = new Set(['failed', 'cancelled', 'skipped'])

export function evaluateReadiness(
  spec: NodeSpec,
  nodes: Readonly<Record<string, NodeState>>,
  index: DependencyIndex,
  vars: Readonly<Record<string, unknown>> = {},
): Readiness {
  const id = spec.node_id
  const routed = index.routedFrom.get(id) ?? []
  const routedSources = new Set(routed.map((r) => r.source))
  let routingWait = false
  for (const r of routed) {
    const src = nodes[r.source]
    if (src === undefined) continue
    if (r.on === 'success') {
      if (src.status === 'finished') continue
      if (DEAD.has(src.status)) return { kind: 'skip', reason: `routing: ${r.source} did not succeed` }
    } else {
      if (src.status === 'failed') continue
      if (src.status === 'finished' || src.status === 'skipped' || src.status === 'cancelled') {
        return { kind: 'skip', reason: `routing: ${r.source} did not fail` }
      }
    }
    routingWait = true
  }

  const parents = (index.parents.get(id) ?? []).filter((p) => !routedSources.has(p))
  const streaming = index.streamingParents.get(id)
  let satisfied = 0
  let dead = 0
  for (const p of parents) {
    const st = nodes[p]
    if (st === undefined) continue
    if (st.status === 'finished') satisfied++
    else if (DEAD.has(st.status)) dead++
    else if (streaming?.has(p) && st.has_output) satisfied++
  }
  const total = parents.length
  const pending = total - satisfied - dead
  let need: number
  switch (spec.fan_in.kind) {
    case 'all':
      need = total
      break
    case 'any':
      need = total === 0 ? 0 : 1
      break
    case 'count':
      need = Math.min(spec.fan_in.n, total)
      break
  }
  if (satisfied + pending < need) {
    return { kind: 'skip', reason: `fan_in ${spec.fan_in_raw}: ${dead} of ${total} parents can no longer run` }
  }
  if (routingWait || satisfied < need) return { kind: 'wait' }
  if (spec.when && !evaluateGuard(spec.when, vars)) return { kind: 'skip', reason: 'guard on task variables does not hold' }
  return { kind: 'start' }
}
