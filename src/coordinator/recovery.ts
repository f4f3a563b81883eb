/**
 * Recovery after a (re)start, and adoption of tasks found in the store. Active tasks are loaded
 * once (snapshot + journal) with the metrics rows their open nodes need for exact sums; inherited
 * running nodes are left alone during the discovery window (workers are asked whether they still
 * hold them, and the status topics are replayed from the committed offsets); only then is a node
 * finished from its complete artifact or declared lost. Effects the state implies but that may
 * never have gone out (a START nobody accepted, a CANCEL of a cancelling node, a coordinator
 * function that was running) are issued again; they are idempotent.
 */
import type { TaskDoc } from '../model/state.ts'
import type { Store } from '../ports/store.ts'
import type { Engine } from './engine.ts'
import type { Limits } from './limits.ts'
import { TaskRuntime } from './runtime.ts'

/** Builds a runtime for a stored task, with its batch metrics and its running nodes counted. */
export async function loadRuntime(store: Store, engine: Engine, limits: Limits, doc: TaskDoc & { v?: number }): Promise<TaskRuntime> {
  const rt = new TaskRuntime(doc, doc.v ?? 0)
  const needsRows = rt.nodes.some((n) => (n.status === 'running' || n.status === 'cancelling' || n.status === 'deferred' || n.status === 'finished') && Object.keys(n.stats).length > 0)
  if (needsRows) {
    for (const row of await store.listBatchMetrics(rt.id)) {
      const ord = rt.ord.get(row.node_id)
      if (ord === undefined) continue
      let m = rt.batches.get(ord)
      if (m === undefined) {
        m = new Map()
        rt.batches.set(ord, m)
      }
      m.set(row.batch_uid, { epoch: row.attempt_epoch, metrics: row.metrics })
    }
  }
  rt.nodes.forEach((n, i) => {
    if ((n.status === 'running' || n.status === 'cancelling') && !rt.isFn(i)) {
      limits.take(rt.spec(i).type)
      rt.inherited.add(i)
    }
  })
  engine.tasks.set(rt.id, rt)
  return rt
}
