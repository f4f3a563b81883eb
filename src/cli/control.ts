/**
 * How the CLI reaches the coordinator that owns a task: control requests (cancel, adopt) on the
 * coordinators' owners' topic `topicTasks`, keyed by task id, read by the owner of the task's
 * partition (src/coordinator/ownership.ts). Requests wait there through a hand-over.
 */
import { COORDINATOR_DEFAULTS, resolveConfig } from '../config.ts'
import type { Settings } from './settings.ts'

/** The topic that reaches the owners of tasks, for the coordinators these settings describe. */
export function controlTopic(s: Settings): string {
  return resolveConfig(COORDINATOR_DEFAULTS, s.coordinator, 'coordinator config').topicTasks
}
