/**
 * A task runtime as a document and back: the task document a runtime stands for (views,
 * coordinator functions, snapshots), with its per-node batch ledger as the plain object snapshots
 * carry, and that ledger read back from a loaded document.
 */
import type { BatchCounts, VersionedTask } from '../model/journal.ts'
import type { NodeState } from '../model/state.ts'
import type { BatchMetricsRow, BatchMetricsWrite } from '../ports/store.ts'
import type { TaskRuntime } from './runtime.ts'

/** One node's ledger of applied batches: batch uid → the attempt that reported it and its metrics. */
export type BatchLedger = Map<string, { epoch: number; metrics: Record<string, unknown> }>

/**
 * What a task document carries of the batch ledger: nothing (a view), all of it (coordinator
 * functions; a snapshot that must stand alone), or, for a background snapshot, all of it up to
 * `inlineMax` entries and none past that (`batches_in_rows`: the store's batch metrics rows hold
 * it, docs/write-path.md).
 */
export type LedgerInDoc = 'none' | 'all' | { inlineMax: number }

/** The number of entries of the task's batch ledger (every node's). */
export function ledgerSize(rt: TaskRuntime): number {
  let n = 0
  for (const m of rt.batches.values()) n += m.size
  return n
}

/** The whole batch ledger as batch metrics rows (what a snapshot without it relies on). */
export function ledgerRows(rt: TaskRuntime): BatchMetricsWrite[] {
  const out: BatchMetricsWrite[] = []
  rt.batches.forEach((m, ord) => {
    const nodeId = rt.spec(ord).node_id
    m.forEach((b, uid) => {
      out.push({ task_id: rt.id, node_id: nodeId, batch_uid: uid, attempt_epoch: b.epoch, metrics: b.metrics })
    })
  })
  return out
}

/**
 * Rows of the batch counts a loaded task document carries (`batches`): the whole ledger of a
 * snapshot that keeps it inline, or what the journal added after a snapshot that left it to the
 * rows. Nothing says their rows were written (a coordinator writes rows after its entries, in the
 * background, and may die first): the claimant offers them again (insert-only, a row that exists
 * stays as it is).
 */
export function countsRows(taskId: string, counts: BatchCounts | undefined): BatchMetricsWrite[] {
  const out: BatchMetricsWrite[] = []
  for (const [nodeId, per] of Object.entries(counts ?? {})) {
    for (const [uid, [epoch, metrics]] of Object.entries(per)) out.push({ task_id: taskId, node_id: nodeId, batch_uid: uid, attempt_epoch: epoch, metrics })
  }
  return out
}

/** The task as a document, with its batch ledger as `ledger` says (and without its nodes, empty, when `withNodes` is false). */
export function taskDocOf(rt: TaskRuntime, ledger: LedgerInDoc, withNodes = true): VersionedTask {
  const inRows = typeof ledger === 'object' && ledgerSize(rt) > ledger.inlineMax
  const withBatches = ledger === 'all' || (typeof ledger === 'object' && !inRows)
  const nodes: Record<string, NodeState> = {}
  if (withNodes) {
    rt.specs.forEach((s, i) => {
      nodes[s.node_id] = rt.nodes[i] as NodeState
    })
  }
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
    ...(rt.createdBy !== null ? { created_by: rt.createdBy } : {}),
    v: rt.v,
    sent_through: rt.sentRecorded,
    ...(withBatches ? { batches: batchCountsOf(rt) } : {}),
    ...(inRows ? { batches_in_rows: true } : {}),
  }
}

/** One ledger entry of a node; batch uids are the workers' (any string, "__proto__" too): defined as own keys, never set. */
function setEntry(per: Record<string, [number, Record<string, unknown>]>, uid: string, epoch: number, metrics: Record<string, unknown>): void {
  Object.defineProperty(per, uid, { value: [epoch, metrics], enumerable: true, writable: true, configurable: true })
}

/** The batch ledgers as a plain object (for snapshots). */
export function batchCountsOf(rt: TaskRuntime): BatchCounts {
  const out: BatchCounts = {}
  rt.batches.forEach((m, ord) => {
    const per: Record<string, [number, Record<string, unknown>]> = {}
    m.forEach((b, uid) => {
      setEntry(per, uid, b.epoch, b.metrics)
    })
    out[rt.spec(ord).node_id] = per
  })
  return out
}

/**
 * The batch ledger of a task whose snapshot left it out (`batches_in_rows`): its batch metrics
 * rows (the newest epoch of each batch), with what the journal entries after the snapshot counted
 * (`batches`) over them.
 */
export function ledgerFromRows(rows: readonly BatchMetricsRow[], after: BatchCounts | undefined): BatchCounts {
  const out: BatchCounts = {}
  const put = (nodeId: string, uid: string, epoch: number, metrics: Record<string, unknown>): void => {
    let per = out[nodeId]
    if (per === undefined) {
      per = {}
      out[nodeId] = per
    }
    const cur = Object.hasOwn(per, uid) ? per[uid] : undefined
    if (cur !== undefined && cur[0] > epoch) return
    setEntry(per, uid, epoch, metrics)
  }
  for (const r of rows) put(r.node_id, r.batch_uid, r.attempt_epoch, r.metrics)
  for (const [nodeId, per] of Object.entries(after ?? {})) for (const [uid, [epoch, metrics]] of Object.entries(per)) put(nodeId, uid, epoch, metrics)
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
