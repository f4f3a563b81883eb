/**
 * How the CLI reaches the coordinator that owns a task: control requests (cancel, adopt) on the
 * coordinators' control topic (src/coordinator/control.ts; every coordinator reads it).
 */
import { COORDINATOR_DEFAULTS, resolveConfig } from '../config.ts'
import type { Settings } from './settings.ts'

/** The control topic of the coordinators these settings describe. */
export function controlTopic(s: Settings): string {
  return resolveConfig(COORDINATOR_DEFAULTS, s.coordinator, 'coordinator config').topicControl
}
