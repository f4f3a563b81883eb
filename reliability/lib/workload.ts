/**
 * The workload: tasks of one graph shape (lib/shapes.ts) whose every total is known in advance,
 * submitted to the coordinator processes (spread over those that are up, retried, with a
 * caller-chosen id so a retry can never create a second task), some meant to fail and some
 * cancelled by the harness.
 */
import type { Cluster } from './cluster.ts'
import { type ShapeParams, type TaskKind, graphOf } from './shapes.ts'

export { type Expected, type TaskKind, expected, workerNodes } from './shapes.ts'

export const ROLES = ['rel_src', 'rel_map', 'rel_sink']

export interface WorkloadSpec extends ShapeParams {
  /** Tasks expected to finish. */
  ok: number
  /** Tasks whose map node fails permanently (`planned_failure`): expected failed. */
  fail: number
  /** Tasks the harness cancels once submitted: expected cancelled (or finished if it was done first). */
  cancel: number
  /** Pause between two submissions. */
  submitEveryMs: number
  /** Submissions in flight at once (default 1: each waits for the previous one's answer). */
  inFlight?: number
}

export interface PlannedTask {
  id: string
  kind: TaskKind
  graph: unknown
  /** createTask answered (or the id was found taken: an earlier attempt landed). */
  acked: boolean
  /**
   * cancelTask answered: true = cancel applied (by the owner) or handed to the owner (by another
   * coordinator: see `cancelVia`), false = the task was already terminal.
   */
  cancelAck: boolean | null
  /** Who answered the cancel: the task's owner (applied) or another coordinator (request sent to the owner). */
  cancelVia: 'owner' | 'request' | null
  attempts: number
  lastError: string | null
}

export function planTasks(w: WorkloadSpec, tag: string): PlannedTask[] {
  const kinds: TaskKind[] = []
  const total = w.ok + w.fail + w.cancel
  // Spread the kinds over the submission order.
  let ok = w.ok
  let fail = w.fail
  let cancel = w.cancel
  for (let i = 0; i < total; i++) {
    if (fail > 0 && i % 4 === 2) {
      kinds.push('fail')
      fail--
    } else if (cancel > 0 && i % 4 === 3) {
      kinds.push('cancel')
      cancel--
    } else if (ok > 0) {
      kinds.push('ok')
      ok--
    } else if (fail > 0) {
      kinds.push('fail')
      fail--
    } else {
      kinds.push('cancel')
      cancel--
    }
  }
  return kinds.map((kind, i) => ({ id: `${tag}-${i}-${kind}`, kind, graph: graphOf(w, kind), acked: false, cancelAck: null, cancelVia: null, attempts: 0, lastError: null }))
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/**
 * Submits every task in order, one every `submitEveryMs` (at most `inFlight` waiting for an
 * answer), each retried until a coordinator answers or `deadline` passes; attempts are spread
 * over the coordinators that are up. Cancel-kind tasks are cancelled once submitted.
 */
export async function submitAll(tasks: PlannedTask[], w: WorkloadSpec, cluster: Cluster, deadline: number): Promise<void> {
  const cancels: Promise<void>[] = []
  const inFlight = new Set<Promise<void>>()
  let k = 0
  let acked = 0
  // Large workloads note every 100th submission only (the timeline stays readable).
  const noteEach = tasks.length <= 50 ? 1 : 100
  const submit = async (task: PlannedTask): Promise<void> => {
    while (!task.acked && Date.now() < deadline) {
      task.attempts++
      try {
        await cluster.pickCoordinator(k++).request('create', { task: { id: task.id, params: { kind: task.kind }, graph: task.graph } }, 10_000)
        task.acked = true
      } catch (err) {
        const code = (err as { code?: unknown }).code
        if (code === 'STORE_DUPLICATE_KEY') task.acked = true
        else {
          task.lastError = err instanceof Error ? err.message : String(err)
          await sleep(1000)
        }
      }
    }
    if (task.acked && ++acked % noteEach === 0) cluster.note(`submitted ${task.id} (attempt ${task.attempts})${noteEach > 1 ? `: ${acked} submitted` : ''}`)
    if (task.acked && task.kind === 'cancel') cancels.push(cancelTask(task, cluster, deadline, () => k++))
  }
  for (const task of tasks) {
    const p = submit(task).finally(() => inFlight.delete(p))
    inFlight.add(p)
    if (inFlight.size >= Math.max(1, w.inFlight ?? 1)) await Promise.race(inFlight)
    await sleep(w.submitEveryMs)
  }
  await Promise.all(inFlight)
  await Promise.all(cancels)
}

async function cancelTask(task: PlannedTask, cluster: Cluster, deadline: number, next: () => number): Promise<void> {
  await sleep(1500) // let it start running first
  while (task.cancelAck === null && Date.now() < deadline) {
    try {
      const r = (await cluster.pickCoordinator(next()).request('cancel', { taskId: task.id }, 10_000)) as { applied: boolean; owner: boolean }
      task.cancelAck = r.applied === true
      task.cancelVia = r.owner ? 'owner' : 'request'
      cluster.note(`cancel ${task.id}: ${!task.cancelAck ? 'already terminal' : r.owner ? 'applied' : 'sent to the owner'}`)
    } catch (err) {
      task.lastError = err instanceof Error ? err.message : String(err)
      await sleep(1000)
    }
  }
}
