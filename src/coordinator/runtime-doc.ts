/**
 * A task runtime as a document and back: the task document a runtime stands for (views,
 * coordinator functions, snapshots), with its per-node batch ledger as the plain object snapshots
 * carry, and that ledger read back from a loaded document.
 */
import type { BatchCounts, VersionedTask } from '../model/journal.ts'
import type { NodeState } from '../model/state.ts'
import type { TaskRuntime } from './runtime.ts'

/** One node's ledger of applied batches: batch uid → the attempt that reported it and its metrics. */
export type BatchLedger = Map<string, { epoch: number; metrics: Record<string, unknown> }>

/** The task as a document (a view needs no batch ledger: `withBatches` false). */
export function taskDocOf(rt: TaskRuntime, withBatches: boolean): VersionedTask {
  const nodes: Record<string, NodeState> = {}
  rt.specs.forEach((s, i) => {
    nodes[s.node_id] = rt.nodes[i] as NodeState
  })
  return {
    id: rt.id,
    status: rt.status,
    params: rt.params,
    graph: rt.graph,
    nodes,
    coordinator: { vars: rt.vars, cancelled: rt.cancelled, cancel_reason: rt.cancelReason },
    result: rt.result,
    error: rt.error,
    created_at_ms: rt.createdAt,
    updated_at_ms: rt.updatedAt,
    finished_at_ms: rt.finishedAt,
    ...(rt.deadlineAt !== null ? { deadline_at_ms: rt.deadlineAt } : {}),
    v: rt.v,
    sent_through: rt.sentRecorded,
    ...(withBatches ? { batches: batchCountsOf(rt) } : {}),
  }
}

/** The batch ledgers as a plain object (for snapshots). */
export function batchCountsOf(rt: TaskRuntime): BatchCounts {
  const out: BatchCounts = {}
  rt.batches.forEach((m, ord) => {
    // Batch uids are the workers' (any string, "__proto__" too): defined as own keys, never set.
    const per: Record<string, [number, Record<string, unknown>]> = {}
    m.forEach((b, uid) => {
      Object.defineProperty(per, uid, { value: [b.epoch, b.metrics], enumerable: true, writable: true, configurable: true })
    })
    out[rt.spec(ord).node_id] = per
  })
  return out
}

/** The batch ledgers of a loaded document, by node ordinal (nodes the graph does not have are left out). */
export function batchLedgersOf(doc: object, ord: ReadonlyMap<string, number>): Map<number, BatchLedger> {
  const out = new Map<number, BatchLedger>()
  const counts = (doc as { batches?: BatchCounts }).batches ?? {}
  for (const [nodeId, per] of Object.entries(counts)) {
    const o = ord.get(nodeId)
    if (o === undefined) continue
    out.set(o, new Map(Object.entries(per).map(([uid, [epoch, metrics]]) => [uid, { epoch, metrics }])))
  }
  return out
}
