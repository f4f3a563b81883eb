/**
 * Retrying a dead letter (an outbox row whose sends were given up): the row goes back to the
 * outbox, which sends it again. A TASK_START that could not be delivered failed its attempt
 * (`start_undeliverable`) and the coordinator moved on: retried once the task has ended or its node
 * is at another attempt, it would have a worker run work nobody waits for, which nothing would
 * stop. Such a row is refused (DEAD_LETTER_STALE) and stays a dead letter; other commands (cancels,
 * signals) are harmless to send again.
 */
import { ErrorCode, FlowkitError } from '../errors.ts'
import { TERMINAL_TASK_STATUSES, type TaskDoc } from '../model/state.ts'
import type { OutboxRow, Store } from '../ports/store.ts'
import { parseEnvelope } from '../protocol/parse.ts'

/**
 * Why sending dead letter `row` again would run an attempt that ended, or null. `getTask`: how to
 * read a task (the store's, or a cache over it for many rows).
 */
export async function staleDeadLetter(store: Store, row: OutboxRow, getTask: (id: string) => Promise<TaskDoc | null> = (id) => store.getTask(id)): Promise<string | null> {
  const parsed = parseEnvelope(row.value)
  if (!parsed.ok) return null
  const env = parsed.value
  if (env.msg_type !== 'cmd' || env.payload['cmd'] !== 'TASK_START') return null
  const task = await getTask(env.task_id)
  if (task === null) return `its task ${env.task_id} is not in the store`
  if (TERMINAL_TASK_STATUSES.includes(task.status)) return `its task ${env.task_id} has ended (${task.status})`
  const node = Object.hasOwn(task.nodes, env.node_id) ? task.nodes[env.node_id] : undefined
  if (node === undefined) return `its task has no node ${env.node_id}`
  if (node.attempt_epoch !== env.attempt_epoch || node.status !== 'running') {
    return `it starts attempt ${env.attempt_epoch} of node ${env.node_id}, which is now ${node.status} at attempt ${node.attempt_epoch}`
  }
  return null
}

/**
 * Puts dead letter `id` back in the outbox: false when there is no such dead letter; throws
 * DEAD_LETTER_STALE when it would start an attempt that ended.
 */
export async function requeueDeadLetter(store: Store, id: string, now: number): Promise<boolean> {
  const [row] = await store.outboxList({ status: 'failed', id })
  if (row === undefined) return false
  const stale = await staleDeadLetter(store, row)
  if (stale !== null) {
    throw new FlowkitError(ErrorCode.StaleDeadLetter, `dead letter ${id} is not retried: ${stale}; sending it again would run work nobody waits for (resubmit the task instead)`, {
      details: { outbox_id: id },
    })
  }
  return store.outboxRequeue(id, now)
}

/** What `requeueDeadLetters` did: the rows put back, and those left dead letters (with why). */
export interface RequeueAllResult {
  requeued: string[]
  stale: { id: string; reason: string }[]
}

/**
 * Puts every dead letter back in the outbox (the oldest first; at most `limit` requeued), except
 * the TASK_STARTs whose attempts ended: those stay dead letters (listed with why; their tasks are
 * to be resubmitted). A task is read once for all its rows.
 */
export async function requeueDeadLetters(store: Store, now: number, limit = Number.POSITIVE_INFINITY): Promise<RequeueAllResult> {
  // All of them: the limit counts the rows requeued (stale ones at the head would otherwise hold it).
  const rows = await store.outboxList({ status: 'failed' })
  const tasks = new Map<string, Promise<TaskDoc | null>>()
  const getTask = (id: string): Promise<TaskDoc | null> => {
    let t = tasks.get(id)
    if (t === undefined) {
      t = store.getTask(id)
      tasks.set(id, t)
    }
    return t
  }
  const out: RequeueAllResult = { requeued: [], stale: [] }
  for (const row of rows) {
    if (out.requeued.length >= limit) break
    const stale = await staleDeadLetter(store, row, getTask)
    if (stale !== null) out.stale.push({ id: row.id, reason: stale })
    // False: no longer a dead letter (another operator's retry, meanwhile): nothing to do.
    else if (await store.outboxRequeue(row.id, now)) out.requeued.push(row.id)
  }
  return out
}
