/**
 * "No write from a fenced owner lands", from the journal. Tasks are owned by partition of the
 * coordinators' owners' topic; a coordinator that loads a task (hand-over, adoption, restart)
 * first writes a claim entry, one whose `events` hold `owner <writer> generation <g>`. Entries are
 * unique per (task, seq), so once the claim is durable the previous owner's next write is refused
 * and it drops the task. On the store that reads: per task, entries in seq order, after a claim
 * entry written by X every later entry up to the next claim is X's (its `writer` field).
 *
 * Counted too, as proof that hand-over was exercised: claims, hand-overs (a claim by another
 * writer than the entry before it: the task moved to another coordinator or another process of
 * it), tasks written by more than one writer, and distinct writers.
 */
import type { JournalEntry } from 'flowkit'

export interface OwnersCheck {
  claims: number
  handovers: number
  /** Tasks whose journal has entries of two writers or more. */
  movedTasks: number
  writers: number
  violations: string[]
}

const isClaim = (e: JournalEntry): boolean => e.events.some((ev) => ev.startsWith('owner '))

export function checkOwners(journal: ReadonlyMap<string, readonly JournalEntry[]>): OwnersCheck {
  const out: OwnersCheck = { claims: 0, handovers: 0, movedTasks: 0, writers: 0, violations: [] }
  const writers = new Set<string>()
  for (const [id, entries] of journal) {
    const sorted = [...entries].sort((a, b) => a.seq - b.seq)
    const mine = new Set<string>()
    let owner: { writer: string; seq: number } | null = null
    let previous: JournalEntry | null = null
    for (const e of sorted) {
      writers.add(e.writer)
      mine.add(e.writer)
      if (isClaim(e)) {
        out.claims++
        if (previous !== null && previous.writer !== e.writer) out.handovers++
        owner = { writer: e.writer, seq: e.seq }
      } else if (owner !== null && e.writer !== owner.writer) {
        const what = e.events.slice(0, 3).join('; ')
        out.violations.push(`${id}: journal seq ${e.seq} written by ${e.writer} after ${owner.writer} claimed the task at seq ${owner.seq}${what ? ` (${what})` : ''}`)
      }
      previous = e
    }
    if (mine.size > 1) out.movedTasks++
  }
  out.writers = writers.size
  return out
}
