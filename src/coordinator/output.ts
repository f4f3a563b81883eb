/**
 * A task's output: the sink nodes (no dependents, no on_success routing targets) that finished, as the
 * task's result names them (`result.outputs`), each with its final (complete) artifact.
 */
import type { ArtifactDoc, Store } from '../ports/store.ts'
import type { TaskRuntime } from './runtime.ts'
import type { TaskView } from './view.ts'

/**
 * Whether a node is a sink: nothing depends on it and it routes nothing on success. Its
 * `routing.on_failure` targets (an alert, a fallback) do not count: they run when it fails, and a
 * node that succeeded is what its branch produced.
 */
function isSink(rt: TaskRuntime, i: number): boolean {
  const id = rt.spec(i).node_id
  for (const c of rt.reeval[i] as number[]) {
    if ((rt.plan.parents[c] as readonly number[]).includes(i)) return false
    if ((rt.plan.index.routedFrom.get(rt.spec(c).node_id) ?? []).some((r) => r.source === id && r.on === 'success')) return false
  }
  return true
}

/**
 * An ended task's result: its nodes' statuses and stats, and its output — the sink nodes (no
 * dependents, no `routing.on_success` targets) that finished, each named with its final
 * (complete) artifact's key (Coordinator.getOutput reads them).
 */
export function taskResult(rt: TaskRuntime): Record<string, unknown> {
  const outputs = rt.specs
    .map((s, i) => ({ s, i }))
    .filter(({ i }) => rt.node(i).status === 'finished' && isSink(rt, i))
    .map(({ s, i }) => ({ node_id: s.node_id, attempt_epoch: rt.node(i).attempt_epoch, artifact: { task_id: rt.id, node_id: s.node_id, batch_uid: null } }))
  return { nodes: rt.specs.map((s, i) => ({ node_id: s.node_id, status: rt.node(i).status, stats: rt.node(i).stats })), outputs }
}

export interface TaskOutput {
  node_id: string
  stats: Record<string, unknown>
  /** The node's complete artifact (its meta is the node's result); null when it wrote none. */
  artifact: ArtifactDoc | null
}

/** The sink nodes a task's result names (a task that has not ended: none). */
export function outputNodes(t: TaskView): string[] {
  const outputs = (t.result as { outputs?: unknown } | null)?.outputs
  if (!Array.isArray(outputs)) return []
  return outputs.map((o) => (o as { node_id?: unknown }).node_id).filter((id): id is string => typeof id === 'string')
}

export async function readOutput(store: Store, t: TaskView): Promise<TaskOutput[]> {
  const byId = new Map(t.nodes.map((n) => [n.node_id, n]))
  return Promise.all(
    outputNodes(t).map(async (id) => ({ node_id: id, stats: byId.get(id)?.stats ?? {}, artifact: await store.getArtifact(t.id, id, null) })),
  )
}
