/**
 * A task's output: the sink nodes (no dependents, no routing targets) that finished, as the
 * task's result names them (`result.outputs`), each with its final (complete) artifact.
 */
import type { ArtifactDoc, Store } from '../ports/store.ts'
import type { TaskView } from './view.ts'

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
