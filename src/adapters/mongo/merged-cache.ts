/**
 * The merged states a MongoDB store keeps of the tasks it read far ahead of their snapshots
 * (tasks.ts `get`): so that reading one again reads only the journal entries written since. Held
 * by weight — a task's node states plus its batch ledger entries — not by count, so that a few
 * tasks of thousands of nodes or batches cannot hold much memory: past `budget`, the states set
 * longest ago go first (the one just set always stays).
 */
import type { VersionedTask } from '../../model/journal.ts'

/** The weight of a merged state: its node states and batch ledger entries. */
export function weightOf(t: VersionedTask): number {
  let w = 1
  for (const _ in t.nodes) w++
  if (t.batches !== undefined) for (const node in t.batches) for (const _ in t.batches[node]) w++
  return w
}

export class MergedTasks {
  readonly #budget: number
  readonly #held = new Map<string, { task: VersionedTask; weight: number }>()
  #weight = 0

  constructor(budget: number) {
    this.#budget = budget
  }

  get(taskId: string): VersionedTask | undefined {
    return this.#held.get(taskId)?.task
  }

  set(taskId: string, task: VersionedTask): void {
    this.delete(taskId)
    const weight = weightOf(task)
    this.#held.set(taskId, { task, weight })
    this.#weight += weight
    for (const [id, h] of this.#held) {
      if (this.#weight <= this.#budget || id === taskId) break
      this.#held.delete(id)
      this.#weight -= h.weight
    }
  }

  delete(taskId: string): void {
    const h = this.#held.get(taskId)
    if (h === undefined) return
    this.#held.delete(taskId)
    this.#weight -= h.weight
  }

  /** Tasks and total weight held (for tests). */
  get size(): { tasks: number; weight: number } {
    return { tasks: this.#held.size, weight: this.#weight }
  }
}
