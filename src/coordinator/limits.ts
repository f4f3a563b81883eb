/**
 * Concurrency limits on running worker nodes (across all tasks, and per type). Running counts are
 * kept per type; a node that is ready while its type (or the total) is at the limit waits in its
 * type's FIFO. When a slot frees, the oldest waiter that may run is handed out: O(types) per
 * freed slot, whatever the number of blocked tasks.
 */
import type { NodeState } from '../model/state.ts'

/**
 * The worker holding node `n` in a worker's slot when it is accepted and `busy` (running or
 * cancelling): its lease's worker ('' when the lease names none); null when it holds no slot.
 */
export function acceptedHolder(n: NodeState, busy: boolean): string | null {
  return busy && n.accepted_at_ms !== null ? (n.lease.worker_id ?? '') : null
}

/** Workers whose last full moment is remembered, at most (older ones are forgotten past it). */
const MAX_FULL_AT = 4096

export interface Waiter {
  taskId: string
  ord: number
  type: string
  seq: number
}

export class Limits {
  readonly #maxTotal: number
  /** Per-type limits: a Map, so a type named like an Object member (`toString`) finds none. */
  readonly #maxByType: ReadonlyMap<string, number>
  #total = 0
  readonly #byType = new Map<string, number>()
  /** Accepted nodes by the worker holding them (a worker's slots serve all its types). */
  readonly #acceptedByWorker = new Map<string, number>()
  /** When each worker last held as many accepted nodes as its capacity (`capacityOf`). */
  readonly #fullAt = new Map<string, number>()
  /** The capacity a worker announced (0: unknown); set by the wiring. */
  capacityOf: ((workerId: string) => number) | null = null
  readonly #queues = new Map<string, Waiter[]>()
  readonly #queued = new Set<string>()
  #seq = 0

  constructor(maxTotal: number, maxByType: Readonly<Record<string, number>>) {
    this.#maxTotal = maxTotal
    this.#maxByType = new Map(Object.entries(maxByType))
  }

  get limited(): boolean {
    if (this.#maxTotal > 0) return true
    for (const n of this.#maxByType.values()) if (n > 0) return true
    return false
  }

  get running(): number {
    return this.#total
  }

  #typeOk(type: string): boolean {
    const cap = this.#maxByType.get(type)
    return cap === undefined || cap <= 0 || (this.#byType.get(type) ?? 0) < cap
  }

  /** Nodes of `type` running or cancelling (dispatched). */
  runningOf(type: string): number {
    return this.#byType.get(type) ?? 0
  }

  /** Accepted nodes (running or cancelling) held by worker `workerId`, whatever their type. */
  acceptedBy(workerId: string): number {
    return this.#acceptedByWorker.get(workerId) ?? 0
  }

  /**
   * Counts a node that became accepted (running or cancelling), or stopped being so:
   * `was` / `is` the worker holding it before / after (null: not accepted then); `now`: when
   * (the moments a worker is full are remembered).
   */
  accepting(was: string | null, is: string | null, now?: number): void {
    if (was === is) return
    if (was !== null) {
      const before = this.#acceptedByWorker.get(was) ?? 0
      this.#full(was, before, now) // full until now
      if (before > 1) this.#acceptedByWorker.set(was, before - 1)
      else this.#acceptedByWorker.delete(was)
    }
    if (is !== null) {
      const after = (this.#acceptedByWorker.get(is) ?? 0) + 1
      this.#acceptedByWorker.set(is, after)
      this.#full(is, after, now)
    }
  }

  #full(workerId: string, held: number, now: number | undefined): void {
    // (No time: a count loaded or dropped with a task, not a moment the worker was seen full.)
    if (now === undefined) return
    const cap = this.capacityOf?.(workerId) ?? 0
    if (cap <= 0 || held < cap) return
    this.#fullAt.set(workerId, now)
    if (this.#fullAt.size > MAX_FULL_AT) {
      for (const [w, at] of this.#fullAt) if (at < now - 3_600_000) this.#fullAt.delete(w)
    }
  }

  /**
   * Whether worker `workerId` holds accepted nodes in all its `capacity` slots now, or did at
   * `since` or later: a worker whose runs end and whose next START is being taken up is still
   * busy (its acceptance reaches this coordinator a moment after the end of the run before).
   */
  fullSince(workerId: string, capacity: number, since: number): boolean {
    return this.acceptedBy(workerId) >= capacity || (this.#fullAt.get(workerId) ?? Number.NEGATIVE_INFINITY) >= since
  }

  /** Whether one more node of `type` may run now. */
  canRun(type: string): boolean {
    return (this.#maxTotal <= 0 || this.#total < this.#maxTotal) && this.#typeOk(type)
  }

  /** Whether a running node of `held` leaving would let a node of `wanted` run (now blocked). */
  wouldFree(held: string, wanted: string): boolean {
    if (this.#maxTotal > 0 && this.#total >= this.#maxTotal) return held === wanted || this.#typeOk(wanted)
    return held === wanted
  }

  /** Counts a node that entered running/cancelling. */
  take(type: string): void {
    this.#total++
    this.#byType.set(type, (this.#byType.get(type) ?? 0) + 1)
  }

  /** Counts a node that left running/cancelling. */
  give(type: string): void {
    this.#total = Math.max(0, this.#total - 1)
    this.#byType.set(type, Math.max(0, (this.#byType.get(type) ?? 0) - 1))
  }

  /** Whether node `ord` of the task waits in a queue for capacity. */
  isWaiting(taskId: string, ord: number): boolean {
    return this.#queued.has(`${taskId}\u0000${ord}`)
  }

  /** Queues a ready node that may not run yet (once). */
  wait(taskId: string, ord: number, type: string): void {
    const key = `${taskId}\u0000${ord}`
    if (this.#queued.has(key)) return
    this.#queued.add(key)
    let q = this.#queues.get(type)
    if (q === undefined) {
      q = []
      this.#queues.set(type, q)
    }
    q.push({ taskId, ord, type, seq: this.#seq++ })
  }

  /** The oldest waiter that may run now, removed from its queue; null when none may. */
  next(): Waiter | null {
    if (this.#maxTotal > 0 && this.#total >= this.#maxTotal) return null
    let best: Waiter[] | null = null
    for (const [type, q] of this.#queues) {
      if (q.length === 0 || !this.#typeOk(type)) continue
      if (best === null || (q[0] as Waiter).seq < (best[0] as Waiter).seq) best = q
    }
    if (best === null) return null
    const w = best.shift() as Waiter
    this.#queued.delete(`${w.taskId}\u0000${w.ord}`)
    return w
  }

  /** Forgets every waiter and count (coordinator stop). */
  clear(): void {
    this.#total = 0
    this.#byType.clear()
    this.#queues.clear()
    this.#queued.clear()
    // (A stopped coordinator started again counts its tasks' accepted runs again as it loads them.)
    this.#acceptedByWorker.clear()
    this.#fullAt.clear()
  }
}
