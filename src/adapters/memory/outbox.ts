/**
 * The outbox of the MemoryStore (see the Store port): one row per id (topic, key, dedup id);
 * pending rows are claimed when due (oldest due first), then marked sent (payload dropped, kept for
 * audit), retried later, or failed (dead letter) until an operator requeues them. Only a pending
 * row moves on; sent rows are purged by age.
 */
import type { OutboxEnqueue, OutboxFilter, OutboxRow, OutboxStatus } from '../../ports/store.ts'
import { compareCodePoints } from '../../ports/store-rules.ts'
import { outboxId } from '../../util/ids.ts'
import { clone, limitOf, take } from './copy.ts'

export class MemoryOutbox {
  readonly #rows = new Map<string, OutboxRow>()

  enqueue(row: OutboxEnqueue, now: number, parked?: { attempts: number; error: string }): boolean {
    const key = row.key ?? null
    const id = outboxId(row.topic, key, row.dedup_id)
    if (this.#rows.has(id)) return false
    this.#rows.set(id, {
      id,
      topic: row.topic,
      key,
      value: row.value,
      dedup_id: row.dedup_id,
      ...(row.task_id == null ? {} : { task_id: row.task_id }),
      status: parked ? 'failed' : 'pending',
      attempts: parked?.attempts ?? 0,
      next_attempt_at_ms: now,
      last_error: parked?.error ?? null,
      created_at_ms: now,
      updated_at_ms: now,
      sent_at_ms: null,
    })
    return true
  }

  claimDue(now: number, limit: number, claimUntil: number): OutboxRow[] {
    const due = [...this.#rows.values()]
      .filter((r) => r.status === 'pending' && r.next_attempt_at_ms <= now)
      .sort(
        (a, b) =>
          a.next_attempt_at_ms - b.next_attempt_at_ms ||
          a.created_at_ms - b.created_at_ms ||
          compareCodePoints(a.id, b.id),
      )
    const claimed = due.slice(0, limitOf(limit))
    for (const r of claimed) {
      r.next_attempt_at_ms = claimUntil
      r.updated_at_ms = now
    }
    return claimed.map(clone)
  }

  /** Pending → sent. A row that is not pending (sent, dead-lettered, unknown) is left as is. */
  markSent(id: string, now: number): void {
    const r = this.#rows.get(id)
    if (r?.status !== 'pending') return
    r.status = 'sent'
    r.value = '' // kept for audit without its payload
    r.sent_at_ms = now
    r.updated_at_ms = now
  }

  /** Stays pending, due again at `nextAttemptAt`. Only applies to a pending row. */
  markRetry(id: string, attempts: number, nextAttemptAt: number, error: string, now: number): void {
    const r = this.#rows.get(id)
    if (r?.status !== 'pending') return
    r.attempts = attempts
    r.next_attempt_at_ms = nextAttemptAt
    r.last_error = error
    r.updated_at_ms = now
  }

  /** Pending → failed (dead letter). Only applies to a pending row. */
  markFailed(id: string, attempts: number, error: string, now: number): void {
    const r = this.#rows.get(id)
    if (r?.status !== 'pending') return
    r.status = 'failed'
    r.attempts = attempts
    r.last_error = error
    r.updated_at_ms = now
  }

  /** Rows ordered by created_at_ms then id. */
  list(filter: OutboxFilter): OutboxRow[] {
    const one = filter.id === undefined ? undefined : this.#rows.get(filter.id)
    const rows = (filter.id === undefined ? [...this.#rows.values()] : one === undefined ? [] : [one])
      .filter((r) => filter.status === undefined || r.status === filter.status)
      .sort((a, b) => a.created_at_ms - b.created_at_ms || compareCodePoints(a.id, b.id))
    return take(rows, filter.limit).map(clone)
  }

  count(status: OutboxStatus): number {
    let n = 0
    for (const r of this.#rows.values()) if (r.status === status) n += 1
    return n
  }

  /** Failed → pending, due `now`, attempts reset to 0 (last_error kept). False otherwise. */
  requeue(id: string, now: number): boolean {
    const r = this.#rows.get(id)
    if (r?.status !== 'failed') return false
    r.status = 'pending'
    r.attempts = 0
    r.next_attempt_at_ms = now
    r.updated_at_ms = now
    return true
  }

  /** Deletes the rows of these tasks not sent (Store.purgeTasks). */
  dropTasks(gone: ReadonlySet<string>): void {
    for (const [k, row] of this.#rows) {
      if (row.status !== 'sent' && row.task_id != null && gone.has(row.task_id)) this.#rows.delete(k)
    }
  }

  /** Deletes the rows sent before `cutoff`; returns how many. */
  purgeSent(cutoff: number): number {
    let outbox = 0
    for (const [k, row] of this.#rows) {
      if (row.status === 'sent' && (row.sent_at_ms ?? Number.POSITIVE_INFINITY) < cutoff) {
        this.#rows.delete(k)
        outbox++
      }
    }
    return outbox
  }
}
