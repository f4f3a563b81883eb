/**
 * Audit of a consumer group's assignment after a join: every partition of the subscription's
 * topics must be held by some member of the group.
 *
 * Why: @platformatic/kafka 2.12 can leave a group otherwise. When the leader's SyncGroup fails
 * with NOT_COORDINATOR (the broker reloading the group after a pause) and the member rejoins
 * meanwhile, the retried SyncGroup goes out with the new member id but the assignment computed for
 * the old one; the broker stores an empty assignment for the new id ("Setting empty assignments
 * for members …" in its log). The member then heartbeats normally and owns nothing: its
 * partitions are read by no one, for ever. Seen in the `broker-pause` reliability scenario: a
 * coordinator's status consumer stopped receiving and 8 tasks stayed stuck.
 *
 * How: AUDIT_MS after a join the group is described (admin DescribeGroups) and the partitions of
 * the subscription's topics are compared with what its members hold. Partitions of a Stable group
 * that no member holds, seen in two checks AUDIT_MS apart with no join in between (a cooperative
 * rebalance leaves some unassigned for a moment), make the subscription start over with a new
 * consumer session (warning `bus.kafka.assignment_incomplete`); the new session's join is audited
 * in turn. A complete assignment ends the checks until the next join. A failed check is tried
 * again later; it never resets anything.
 */
import type { Admin } from '@platformatic/kafka'
import type { Logger } from '../../log.ts'
import type { Redactor } from './bus-errors.ts'

/** Delay between a join and its check, and between two checks. */
export const AUDIT_MS = 3_000
/** Checks that fail (describe or metadata errors) before the audit of a join gives up. */
const MAX_FAILED_CHECKS = 5

export interface AuditHost {
  readonly groupId: string
  readonly topics: readonly string[]
  readonly log: Logger
  readonly redactor: Redactor
  admin(): Admin
  /** Starts the subscription over with a new consumer session. */
  reset(): void
  stopping(): boolean
}

export class AssignmentAudit {
  readonly #host: AuditHost
  readonly #delayMs: number
  /** Joins seen so far: a check belongs to the join it was scheduled after. */
  #joins = 0
  #timer: ReturnType<typeof setTimeout> | null = null
  /** The join whose group was seen incomplete once already. */
  #suspectJoin = -1
  #failed = 0

  constructor(host: AuditHost, delayMs = AUDIT_MS) {
    this.#host = host
    this.#delayMs = delayMs
  }

  /** A join completed: its assignment is checked AUDIT_MS from now. */
  joined(): void {
    this.#joins++
    this.#suspectJoin = -1
    this.#failed = 0
    this.#schedule()
  }

  stop(): void {
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
  }

  #schedule(): void {
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = setTimeout(() => {
      this.#timer = null
      void this.#check(this.#joins)
    }, this.#delayMs)
    this.#timer.unref?.()
  }

  async #check(join: number): Promise<void> {
    const host = this.#host
    if (host.stopping()) return
    let unassigned: string[] | null
    try {
      unassigned = await this.#unassigned()
    } catch (err) {
      if (join !== this.#joins || host.stopping()) return
      host.log.debug('bus.kafka.assignment_audit_failed', { groupId: host.groupId, err: host.redactor.describe(err) })
      if (++this.#failed < MAX_FAILED_CHECKS) this.#schedule()
      return
    }
    // A later join has its own check; a closing subscription needs none.
    if (join !== this.#joins || host.stopping()) return
    if (unassigned === null) {
      this.#schedule() // the group is rebalancing: look again
      return
    }
    if (unassigned.length === 0) return
    if (this.#suspectJoin !== join) {
      this.#suspectJoin = join
      this.#schedule()
      return
    }
    host.log.warn('bus.kafka.assignment_incomplete', { groupId: host.groupId, unassigned: unassigned.slice(0, 20), count: unassigned.length })
    host.reset()
  }

  /** Partitions of the topics no member holds (`topic:partition`); null while the group is not Stable. */
  async #unassigned(): Promise<string[] | null> {
    const host = this.#host
    const admin = host.admin()
    const groups = await admin.describeGroups({ groups: [host.groupId] })
    const group = groups.get(host.groupId)
    if (group === undefined || String(group.state).toUpperCase() !== 'STABLE') return null
    const held = new Set<string>()
    for (const member of group.members.values()) {
      for (const a of member.assignments?.values() ?? []) for (const p of a.partitions) held.add(`${a.topic}:${p}`)
    }
    const metadata = await admin.metadata({ topics: [...host.topics] })
    const out: string[] = []
    for (const topic of host.topics) {
      const count = metadata.topics.get(topic)?.partitionsCount ?? 0
      for (let p = 0; p < count; p++) if (!held.has(`${topic}:${p}`)) out.push(`${topic}:${p}`)
    }
    return out
  }
}
