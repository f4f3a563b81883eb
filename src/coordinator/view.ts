import type { ArtifactDoc, NodeState, TaskDoc, TaskStatus } from '../ports/store.ts'

export interface NodeView extends NodeState {
  depends_on: string[]
  fan_in: string
  /** Dispatched, but no live worker has announced this node's type: it cannot run yet. */
  waiting_for_worker?: boolean
}

/** The public shape of a task (getTask / waitForTask). */
export interface TaskView {
  id: string
  status: TaskStatus
  params: Record<string, unknown>
  nodes: NodeView[]
  vars: Record<string, unknown>
  result: unknown
  error: string | null
  /**
   * A cancel was requested (true from the moment it is recorded, before it applies). Not for a
   * task stopping because a node failed or its deadline passed (it stops its other nodes the same
   * way, and its document says `coordinator.cancelled` as the seed's does: `error` says why).
   */
  cancelled: boolean
  /** Why, as the cancel asked (null when not cancelled). */
  cancel_reason: string | null
  created_at_ms: number
  updated_at_ms: number
  finished_at_ms: number | null
}

export function toTaskView(task: TaskDoc): TaskView {
  // A failing task's stop sets `error` with the flag; a user's cancel never does.
  const cancelled = task.coordinator.cancelled && task.error === null
  return {
    id: task.id,
    status: task.status,
    params: task.params,
    nodes: task.graph.nodes.map((spec) => {
      const state = task.nodes[spec.node_id] as NodeState
      return { ...state, depends_on: spec.depends_on, fan_in: spec.fan_in_raw }
    }),
    vars: task.coordinator.vars,
    result: task.result,
    error: task.error,
    cancelled,
    cancel_reason: cancelled ? (task.coordinator.cancel_reason ?? null) : null,
    created_at_ms: task.created_at_ms,
    updated_at_ms: task.updated_at_ms,
    finished_at_ms: task.finished_at_ms,
  }
}

export type ArtifactView = ArtifactDoc

/**
 * A task stopping (or stopped) because a node failed or its deadline passed: it ends failed, and
 * a cancel changes nothing (its error is set; a user's cancel leaves none).
 */
export function failingTask(t: { status: string; error: string | null }): boolean {
  return t.error !== null && (t.status === 'cancelling' || t.status === 'failed')
}
