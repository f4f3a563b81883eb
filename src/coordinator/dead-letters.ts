/**
 * Retrying a dead letter (an outbox row whose sends were given up): the row goes back to the
 * outbox, which sends it again. A TASK_START that could not be delivered failed its attempt
 * (`start_undeliverable`) and the coordinator moved on: retried once the task has ended or its node
 * is at another attempt, it would have a worker run work nobody waits for, which nothing would
 * stop. Such a row is refused (DEAD_LETTER_STALE) and stays a dead letter; other commands (cancels,
 * signals) are harmless to send again.
 */
import { ErrorCode, FlowkitError } from '../errors.ts'
import { TERMINAL_TASK_STATUSES } from '../model/state.ts'
import type { OutboxRow, Store } from '../ports/store.ts'
import { parseEnvelope } from '../protocol/parse.ts'

/** Why sending dead letter `row` again would run an attempt that ended, or null. */
export async function staleDeadLetter(store: Store, row: OutboxRow): Promise<string | null> {
  const parsed = parseEnvelope(row.value)
  if (!parsed.ok) return null
  const env = parsed.value
  if (env.msg_type !== 'cmd' || env.payload['cmd'] !== 'TASK_START') return null
  const task = await store.getTask(env.task_id)
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
  const row = (await store.outboxList({ status: 'failed' })).find((r) => r.id === id)
  if (row === undefined) return false
  const stale = await staleDeadLetter(store, row)
  if (stale !== null) {
    throw new FlowkitError(ErrorCode.StaleDeadLetter, `dead letter ${id} is not retried: ${stale}; sending it again would run work nobody waits for (resubmit the task instead)`, {
      details: { outbox_id: id },
    })
  }
  return store.outboxRequeue(id, now)
}
