/**
 * Invariants from the independent observer's record of the bus (proc/observer.ts):
 * - stale deliveries: status events of an epoch older than a TASK_START already sent for the same
 *   node (by record time). Counted, as proof the scenario exercised fencing; each is a violation
 *   when the journal shows it applied (its label in an entry written after it was produced);
 * - a finished worker node must have finished from its last epoch: when the TASK_DONE of that
 *   epoch is on the bus, the node cannot have finished before it was produced, unless its complete
 *   artifact of that epoch already existed (finished at recovery from the artifact);
 * - one epoch accepted by two different worker ids is an epoch run by two workers.
 */
import { existsSync, readFileSync } from 'node:fs'
import type { ArtifactDoc, JournalEntry, VersionedTask } from 'flowkit'
import type { ObservedRecord } from '../proc/observer.ts'
import { workerNodes } from './shapes.ts'

const STATUS_KINDS = new Set(['TASK_ACCEPTED', 'TASK_HEARTBEAT', 'TASK_RESUMED', 'BATCH_OK', 'BATCH_FAILED', 'TASK_DONE', 'TASK_FAILED', 'CANCELLED'])

export function readObserved(file: string): ObservedRecord[] {
  if (!existsSync(file)) return []
  const out: ObservedRecord[] = []
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (line.trim() === '') continue
    try {
      out.push(JSON.parse(line) as ObservedRecord)
    } catch {
      // cut line
    }
  }
  return out
}

export interface ObservedCheck {
  records: number
  malformed: number
  starts: number
  staleDelivered: number
  staleApplied: string[]
  finishedEarly: string[]
  dualAccepted: string[]
}

export function checkObserved(
  records: readonly ObservedRecord[],
  docs: ReadonlyMap<string, VersionedTask>,
  journal: ReadonlyMap<string, JournalEntry[]>,
  artifacts: ReadonlyMap<string, ArtifactDoc[]>,
  nodes: readonly string[] = workerNodes('pipeline'),
): ObservedCheck {
  const ours = records.filter((r) => !r.bad && r.task !== undefined && docs.has(r.task))
  // Per (task, node): epoch → first TASK_START record time.
  const starts = new Map<string, Map<number, number>>()
  for (const r of ours) {
    if (r.kind !== 'TASK_START') continue
    const key = `${r.task}/${r.node}`
    const m = starts.get(key) ?? new Map<number, number>()
    m.set(r.epoch as number, Math.min(m.get(r.epoch as number) ?? Number.POSITIVE_INFINITY, r.ts))
    starts.set(key, m)
  }
  const out: ObservedCheck = { records: records.length, malformed: records.filter((r) => r.bad).length, starts: 0, staleDelivered: 0, staleApplied: [], finishedEarly: [], dualAccepted: [] }
  for (const m of starts.values()) out.starts += m.size
  const accepted = new Map<string, Set<string>>()
  for (const r of ours) {
    if (r.kind === undefined || !STATUS_KINDS.has(r.kind)) continue
    const key = `${r.task}/${r.node}`
    const epoch = r.epoch as number
    if (r.kind === 'TASK_ACCEPTED' && r.worker !== undefined) {
      const a = accepted.get(`${key}@${epoch}`) ?? new Set<string>()
      a.add(r.worker)
      accepted.set(`${key}@${epoch}`, a)
    }
    const newer = [...(starts.get(key)?.entries() ?? [])].find(([e, ts]) => e > epoch && ts <= r.ts)
    if (newer === undefined) continue
    out.staleDelivered++
    const label = `${r.kind} ${r.node}@${epoch}${r.kind === 'BATCH_OK' && r.batch ? ` ${r.batch}` : ''}`
    const applied = (journal.get(r.task as string) ?? []).find((e) => e.at_ms >= r.ts && e.events.some((l) => l === label || l.startsWith(`${label} `)))
    if (applied !== undefined) {
      out.staleApplied.push(`${key}: "${label}" produced after TASK_START@${newer[0]} was sent, applied in journal seq ${applied.seq}`)
    }
  }
  for (const [run, workers] of accepted) {
    if (workers.size > 1) out.dualAccepted.push(`${run} accepted by ${[...workers].join(' and ')}`)
  }
  for (const [id, doc] of docs) {
    for (const nodeId of nodes) {
      const n = doc.nodes[nodeId]
      if (n === undefined || n.status !== 'finished' || n.finished_at_ms === null) continue
      const e = n.attempt_epoch
      const done = ours.filter((r) => r.task === id && r.node === nodeId && r.epoch === e && r.kind === 'TASK_DONE')
      if (done.length === 0) continue
      const doneTs = Math.min(...done.map((r) => r.ts))
      if (n.finished_at_ms >= doneTs) continue
      const complete = (artifacts.get(id) ?? []).find((a) => a.node_id === nodeId && a.status === 'complete' && a.attempt_epoch === e)
      if (complete !== undefined && complete.created_at <= n.finished_at_ms) continue
      out.finishedEarly.push(`${id}/${nodeId}: finished at ${n.finished_at_ms}, ${doneTs - n.finished_at_ms} ms before its epoch-${e} TASK_DONE was produced`)
    }
  }
  return out
}
