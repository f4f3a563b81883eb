/**
 * The workload: tasks of one streaming pipeline whose every total is known in advance, submitted
 * to whichever coordinator process is up (retried, with a caller-chosen id so a retry can never
 * create a second task), some meant to fail and some cancelled by the harness.
 *
 *   src (rel_src: B batches of I items) ──on_batch──▶ map (rel_map, first_batch, pull.from_artifacts)
 *     ──▶ sink (rel_sink, pull.from_artifacts.rechunk:R) ──▶ count (coordinator_fn vars.incr runs+1)
 */
import type { Cluster } from './cluster.ts'

export const ROLES = ['rel_src', 'rel_map', 'rel_sink']
export const WORKER_NODES = ['src', 'map', 'sink'] as const

export interface WorkloadSpec {
  /** Tasks expected to finish. */
  ok: number
  /** Tasks whose map node fails permanently (`planned_failure`): expected failed. */
  fail: number
  /** Tasks the harness cancels once submitted: expected cancelled (or finished if it was done first). */
  cancel: number
  batches: number
  items: number
  rechunk: number
  /** Per batch, every worker node sleeps this long (so faults land on running nodes). */
  delayMs: number
  /** Pause between two submissions. */
  submitEveryMs: number
}

export type TaskKind = 'ok' | 'fail' | 'cancel'

export interface PlannedTask {
  id: string
  kind: TaskKind
  graph: unknown
  /** createTask answered (or the id was found taken: an earlier attempt landed). */
  acked: boolean
  /** cancelTask answered: true = cancel applied, false = the task was already terminal. */
  cancelAck: boolean | null
  attempts: number
  lastError: string | null
}

export interface Expected {
  items: number
  srcSum: number
  mapSum: number
  partials: { src: number; map: number; sink: number }
}

export function expected(w: WorkloadSpec): Expected {
  const n = w.batches * w.items
  const srcSum = (n * (n - 1)) / 2
  return { items: n, srcSum, mapSum: 2 * srcSum, partials: { src: w.batches, map: w.batches, sink: Math.ceil(n / w.rechunk) } }
}

const RETRY = { max: 40, backoff_sec: 0.3 }

export function pipeline(w: WorkloadSpec, kind: TaskKind): unknown {
  const mapArgs: Record<string, unknown> = { from_node: 'src', poll_ms: 50, delay_ms: w.delayMs }
  if (kind === 'fail') mapArgs['fail_at'] = 1
  return {
    nodes: [
      { node_id: 'src', type: 'rel_src', io: { input_inline: { batches: w.batches, items: w.items, delay_ms: w.delayMs } }, retry_policy: RETRY },
      {
        node_id: 'map',
        type: 'rel_map',
        depends_on: ['src'],
        io: { start_when: 'first_batch', input_inline: { input_adapter: 'pull.from_artifacts', input_args: mapArgs } },
        retry_policy: RETRY,
      },
      {
        node_id: 'sink',
        type: 'rel_sink',
        depends_on: ['map'],
        io: {
          input_inline: {
            input_adapter: 'pull.from_artifacts.rechunk:size',
            input_args: { from_nodes: ['map'], size: w.rechunk, meta_list_key: 'items', poll_ms: 50, delay_ms: w.delayMs },
          },
        },
        retry_policy: RETRY,
      },
      { node_id: 'count', type: 'coordinator_fn', depends_on: ['sink'], io: { fn: 'vars.incr', fn_args: { key: 'runs', by: 1 } } },
    ],
    edges_ex: [{ from: 'src', to: 'map', mode: 'async', trigger: 'on_batch' }],
  }
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
  return kinds.map((kind, i) => ({ id: `${tag}-${i}-${kind}`, kind, graph: pipeline(w, kind), acked: false, cancelAck: null, attempts: 0, lastError: null }))
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/**
 * Submits every task in order (one every `submitEveryMs`), each retried until a coordinator
 * answers or `deadline` passes; cancel-kind tasks are cancelled once submitted.
 */
export async function submitAll(tasks: PlannedTask[], w: WorkloadSpec, cluster: Cluster, deadline: number): Promise<void> {
  const cancels: Promise<void>[] = []
  for (const task of tasks) {
    while (!task.acked && Date.now() < deadline) {
      task.attempts++
      try {
        await cluster.coordinator.request('create', { task: { id: task.id, params: { kind: task.kind }, graph: task.graph } }, 10_000)
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
    if (task.acked) cluster.note(`submitted ${task.id} (attempt ${task.attempts})`)
    if (task.acked && task.kind === 'cancel') cancels.push(cancelTask(task, cluster, deadline))
    await sleep(w.submitEveryMs)
  }
  await Promise.all(cancels)
}

async function cancelTask(task: PlannedTask, cluster: Cluster, deadline: number): Promise<void> {
  await sleep(1500) // let it start running first
  while (task.cancelAck === null && Date.now() < deadline) {
    try {
      task.cancelAck = (await cluster.coordinator.request('cancel', { taskId: task.id }, 10_000)) === true
      cluster.note(`cancel ${task.id}: ${task.cancelAck ? 'applied' : 'already terminal'}`)
    } catch (err) {
      task.lastError = err instanceof Error ? err.message : String(err)
      await sleep(1000)
    }
  }
}
