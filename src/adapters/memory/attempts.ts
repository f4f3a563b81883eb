/**
 * Attempt claims and checkpoints of the MemoryStore (see the Store port): one claim per (task,
 * node, epoch), one checkpoint per (task, node) — the newest attempt's.
 */
import type { AttemptClaim, Checkpoint, CheckpointWrite } from '../../ports/store.ts'
import { assertNodeId } from '../../ports/store-rules.ts'
import { canonicalJson } from '../../util/ids.ts'

export class MemoryAttempts {
  readonly #claims = new Map<string, { task_id: string; worker_id: string; claimed_at_ms: number }>()
  readonly #checkpoints = new Map<string, { task_id: string; attempt_epoch: number; json: string; saved_at_ms: number }>()

  claim(claim: AttemptClaim, now: number): boolean {
    assertNodeId(claim.node_id)
    const key = canonicalJson([claim.task_id, claim.node_id, claim.attempt_epoch])
    const held = this.#claims.get(key)
    if (held !== undefined) return held.worker_id === claim.worker_id
    this.#claims.set(key, { task_id: claim.task_id, worker_id: claim.worker_id, claimed_at_ms: now })
    return true
  }

  holder(taskId: string, nodeId: string, attemptEpoch: number): string | null {
    assertNodeId(nodeId)
    return this.#claims.get(canonicalJson([taskId, nodeId, attemptEpoch]))?.worker_id ?? null
  }

  saveCheckpoint(cp: CheckpointWrite, now: number): boolean {
    assertNodeId(cp.node_id)
    const key = canonicalJson([cp.task_id, cp.node_id])
    const cur = this.#checkpoints.get(key)
    if (cur !== undefined && cur.attempt_epoch > cp.attempt_epoch) return false
    this.#checkpoints.set(key, { task_id: cp.task_id, attempt_epoch: cp.attempt_epoch, json: JSON.stringify(cp.state ?? null), saved_at_ms: now })
    return true
  }

  getCheckpoint(taskId: string, nodeId: string): Checkpoint | null {
    const cur = this.#checkpoints.get(canonicalJson([taskId, nodeId]))
    return cur === undefined ? null : { attempt_epoch: cur.attempt_epoch, state: JSON.parse(cur.json) as unknown, saved_at_ms: cur.saved_at_ms }
  }

  /** Deletes the claims and checkpoints of these tasks. */
  drop(taskIds: ReadonlySet<string>): void {
    for (const [k, row] of this.#claims) if (taskIds.has(row.task_id)) this.#claims.delete(k)
    for (const [k, row] of this.#checkpoints) if (taskIds.has(row.task_id)) this.#checkpoints.delete(k)
  }

  purge(cutoff: number): void {
    for (const [k, row] of this.#claims) if (row.claimed_at_ms < cutoff) this.#claims.delete(k)
  }
}
