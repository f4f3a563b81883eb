/**
 * Batch metrics rows of the MemoryStore (see the Store port): one row per (task, node, batch_uid,
 * attempt epoch), the first write kept; listed as the newest epoch per batch.
 */
import type { BatchMetricsRow, BatchMetricsWrite } from '../../ports/store.ts'
import { assertNodeId, isHandedOver, newestPerBatch } from '../../ports/store-rules.ts'
import { clone, ingest } from './copy.ts'

interface MetricsRow extends BatchMetricsRow {
  task_id: string
  inserted_at_ms: number
}

export class MemoryMetrics {
  /** Batch metrics rows by task, then (node, batch_uid, epoch). */
  readonly #metrics = new Map<string, Map<string, MetricsRow>>()

  insert(rows: readonly BatchMetricsWrite[], now: number): void {
    for (const row of rows) assertNodeId(row.node_id)
    for (const row of rows) {
      let m = this.#metrics.get(row.task_id)
      if (m === undefined) {
        m = new Map()
        this.#metrics.set(row.task_id, m)
      }
      // node ids hold no NUL: the key is unambiguous.
      const key = `${row.node_id}\u0000${row.attempt_epoch}\u0000${row.batch_uid}`
      if (m.has(key)) continue
      m.set(key, {
        task_id: row.task_id,
        node_id: row.node_id,
        batch_uid: row.batch_uid,
        attempt_epoch: row.attempt_epoch,
        metrics: isHandedOver(row) ? row.metrics : ingest(row.metrics),
        inserted_at_ms: now,
      })
    }
  }

  /** Deletes the rows of these tasks. */
  drop(taskIds: ReadonlySet<string>): void {
    for (const id of taskIds) this.#metrics.delete(id)
  }

  list(taskId: string, nodeId?: string): BatchMetricsRow[] {
    const rows = [...(this.#metrics.get(taskId)?.values() ?? [])].filter((r) => nodeId === undefined || r.node_id === nodeId)
    return newestPerBatch(rows).map((r) => ({ node_id: r.node_id, batch_uid: r.batch_uid, attempt_epoch: r.attempt_epoch, metrics: clone(r.metrics) }))
  }
}
