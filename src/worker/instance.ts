/**
 * Process instances of a worker id. A claim is held by `workerId#instance`; a worker restarted
 * with the same id is another instance, and it hands back the attempts an *older* instance (its
 * dead predecessor) claimed. An instance id starts with the time its process started, so two
 * instances are ordered: `<start ms, base 36, 9 digits>-<random>`. A paused process that resumes
 * (SIGSTOP, a frozen VM) while a newer instance of its id runs is the older one: a claim of the
 * newer instance is held elsewhere for it, never handed back (that handed back live runs).
 */
import { randomUUID } from 'node:crypto'
import { STAMP_DIGITS, instanceStamp, parseClaimHolder } from '../ports/store-rules.ts'

export { instanceStamp }

/** The last stamp given in this process: instances made in one millisecond are still ordered. */
let lastStamp = 0

/** A new instance id for a process (or Worker) started at `nowMs`. */
export function newInstanceId(nowMs: number): string {
  lastStamp = Math.max(Math.floor(Number.isFinite(nowMs) ? Math.max(0, nowMs) : 0), lastStamp + 1)
  return `${lastStamp.toString(36).padStart(STAMP_DIGITS, '0')}-${randomUUID()}`
}

/**
 * Whether a claim holder (`workerId#instance`) is an older instance of this worker id than
 * `ownInstance`: a predecessor, whose attempts are handed back. Not when it is this instance, a
 * newer one, one started in the same millisecond (not known to be older: held elsewhere, the safe
 * side — the coordinator's accept timeout hands the attempt back if its holder is gone), or another
 * worker id. An instance without a stamp is older: only a process of an earlier flowkit version
 * writes one, and such a process ran before this one (an upgrade restarts the worker).
 */
export function heldByOlderInstance(holder: string, workerId: string, ownInstance: string): boolean {
  const h = parseClaimHolder(holder)
  if (h === null || h.instance === null || h.workerId !== workerId) return false
  const theirs = h.instance
  if (theirs === ownInstance) return false
  const mine = instanceStamp(ownInstance)
  const stamp = instanceStamp(theirs)
  if (stamp === null) return mine !== null
  return mine !== null && stamp < mine
}
