/**
 * Small parts of a run's execution (execute.ts): a set of a few strings, reports awaited in
 * order, the once-per-field warning about result fields flowkit does not read.
 */
import type { WorkerCore } from './core.ts'
import { unknownResultField } from './results.ts'

/**
 * A set of strings that holds its first one without a Set (most runs have one batch): the batch
 * ids a run used, the batches whose partial artifact is written.
 */
export class FewStrings {
  #first: string | null = null
  #more: Set<string> | null = null

  has(s: string): boolean {
    return s === this.#first || this.#more?.has(s) === true
  }

  add(s: string): void {
    if (this.#first === null) this.#first = s
    else if (s !== this.#first) {
      this.#more ??= new Set()
      this.#more.add(s)
    }
  }
}

/**
 * Waits for each of `reports` in turn; rejects with the first rejection in that order. (The run's
 * reports go out in order and each already has a handler: no Promise.all for the usual two.)
 */
export async function inOrder(reports: readonly Promise<void>[]): Promise<void> {
  for (const r of reports) await r
}

/** Fields already warned about, per worker (`role/what/field`): said once, not per batch. */
const warnedFields = new WeakMap<WorkerCore, Set<string>>()

/** Warns once per role and field about a result field flowkit does not read (`metric` for `metrics`). */
export function noteUnknownField(core: WorkerCore, role: string, what: string, raw: unknown, known: ReadonlySet<string>): void {
  const u = unknownResultField(raw, known)
  if (u === null) return
  let seen = warnedFields.get(core)
  if (seen === undefined) {
    seen = new Set()
    warnedFields.set(core, seen)
  }
  const key = `${role}/${what}/${u.field}`
  if (seen.has(key) || seen.size >= 1000) return
  seen.add(key)
  core.log.warn('worker.result_unknown_field', { role, result: what, field: u.field, did_you_mean: u.didYouMean, known: [...known] })
}
