/**
 * The event that finishes a running node from its complete artifact (its TASK_DONE lost with its
 * worker, or not read by this coordinator): the finalize metrics the artifact carries are counted
 * as TASK_DONE's would have been, once (the `__final__` entry of the node's batch ledger).
 */
import type { ArtifactDoc } from '../ports/store.ts'
import { FINAL_UID } from '../protocol/messages.ts'
import type { TaskRuntime } from './runtime.ts'
import type { NodeEvent } from './transition-types.ts'

export function recoveredComplete(rt: TaskRuntime, ord: number, artifact: Pick<ArtifactDoc, 'final_metrics'> | null): NodeEvent {
  const final = artifact?.final_metrics ?? null
  return { kind: 'recovered_complete', final, prev: rt.batches.get(ord)?.get(FINAL_UID)?.metrics ?? null }
}
