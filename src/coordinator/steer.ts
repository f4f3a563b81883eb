/**
 * Steering a START past a busy worker. Workers of a type share its command topic through a
 * consumer group: a START lands on the partition of its key, and a worker whose slots are all
 * taken stops fetching its partitions. A START there waits for that worker — for as long as its
 * runs take — while another worker of the type may sit idle.
 *
 * So a START still not accepted `steerAfterSec` after its dispatch (and again every
 * `steerAfterSec` while it waits) is also sent by name to a live worker of its type with a free
 * slot: on the signals topic, which every worker reads whole, with `target_worker_id` naming it.
 * That worker runs it at once if it still has the slot, else ignores it. The attempt's claim in
 * the store keeps it to one worker: the copy left in the busy worker's partition is dropped there
 * when it comes up (`worker.attempt_held_elsewhere`). Nothing else changes: the same attempt and
 * epoch, the accept timeouts and resends as before.
 *
 * A free slot, as this coordinator sees it: the capacity a worker announced, less the accepted
 * runs of this coordinator's tasks it holds and the STARTs steered to it not yet accepted, free
 * for the last 2 s (or `steerAfterSec` if shorter) — not the moment between two runs. Only
 * workers whose announce says they take such a START (`capabilities.start_signal`, flowkit
 * workers) are chosen, and a type one of whose live workers does not say so is not steered at
 * all: such a worker (a Python worker) does not claim attempts, and would run the copy left in its
 * partition again. Python workers ignore signals that do not name them. Such a worker is known
 * from its announce, sent once a minute, or from its status events (LiveRoles.heard). Until this
 * coordinator has listened to announces for `steerWarmupSec` (75 s), so that every live worker
 * has announced itself to it, a START is steered only while a known worker that takes steered
 * STARTs is full (the START waits behind it, not behind a worker it does not know yet).
 */
import type { CoordinatorConfig } from '../config.ts'
import { encodedLater } from '../ports/bus.ts'
import { handOver } from '../ports/store-rules.ts'
import { messageKey } from '../protocol/messages.ts'
import { startEnvelopeOf } from './commands.ts'
import type { Limits } from './limits.ts'
import type { LiveRoles } from './roles.ts'
import type { PendingCommand, TaskRuntime } from './runtime.ts'

/** How long a worker must have had a free slot to be steered to (a backlog's momentary gaps are shorter). */
const IDLE_MS = 2_000

interface Steered {
  worker: string
  taskId: string
  ord: number
  epoch: number
  /** Not counted against the worker's slots after this (a START it never answered). */
  until: number
}

export class Steering {
  readonly #config: CoordinatorConfig
  readonly #roles: LiveRoles
  readonly #limits: Limits
  readonly #tasks: Pick<ReadonlyMap<string, TaskRuntime>, 'get'>
  /** STARTs steered and not yet accepted, by task:ord. */
  readonly #pending = new Map<string, Steered>()
  /** When steering may begin: `steerWarmupSec` after this coordinator began to listen to announces. */
  #from = Number.POSITIVE_INFINITY

  constructor(config: CoordinatorConfig, roles: LiveRoles, limits: Limits, tasks: Pick<ReadonlyMap<string, TaskRuntime>, 'get'>) {
    this.#config = config
    this.#roles = roles
    this.#limits = limits
    this.#tasks = tasks
  }

  /** This coordinator (re)started listening to worker announces at `now`. */
  listening(now: number): void {
    this.#from = now + this.#config.steerWarmupSec * 1000
    this.#pending.clear()
  }

  /**
   * Whether worker `workerId` held runs in all its `capacity` slots now or at `since` or later: by
   * this coordinator's count of its accepted runs, or as the worker said (its load reports count
   * every coordinator's runs). The one rule for "busy": steering, and the accept timeouts
   * (wiring's `saturated`).
   */
  fullSince(workerId: string, capacity: number, since: number): boolean {
    return this.#limits.fullSince(workerId, capacity, since) || this.#roles.reportedFullSince(workerId, since)
  }

  /** STARTs steered to a worker and still waiting for it (expired or settled ones are forgotten). */
  #reserved(now: number): Map<string, number> {
    const out = new Map<string, number>()
    for (const [k, s] of this.#pending) {
      const n = this.#tasks.get(s.taskId)?.nodes[s.ord]
      if (s.until <= now || n === undefined || n.status !== 'running' || n.attempt_epoch !== s.epoch || n.accepted_at_ms !== null) {
        this.#pending.delete(k)
        continue
      }
      out.set(s.worker, (out.get(s.worker) ?? 0) + 1)
    }
    return out
  }

  /**
   * The live worker of `type` with the most free slots (null: none has one, or none takes a
   * steered START). Only a worker that has had a free slot for a while (`IDLE_MS`, at most
   * `steerAfterSec`): in a backlog every worker has one for a moment after each run ends (its
   * acceptance of its next START reaches this coordinator a little later), and steering then
   * would only send copies it declines.
   */
  target(type: string, now: number): string | null {
    // A worker that does not claim attempts (a Python worker) would run the copy left in its
    // partition again: a type it serves is not steered.
    if (!this.#roles.allSteerable(type, now)) return null
    // Before every live worker had the time to announce itself (one that does not take steered
    // STARTs may be unknown yet), only when a known worker that does is full: the START waits
    // behind it, not behind a stranger.
    let explained = now >= this.#from
    const idleSince = now - Math.min(IDLE_MS, this.#config.steerAfterSec * 1000)
    let best: string | null = null
    let room = 0
    let reserved: Map<string, number> | null = null
    for (const w of this.#roles.steerable(type, now)) {
      if (this.fullSince(w.workerId, w.capacity, idleSince)) {
        explained ||= this.fullSince(w.workerId, w.capacity, now)
        continue
      }
      reserved ??= this.#reserved(now)
      const free = w.capacity - this.#limits.acceptedBy(w.workerId) - (reserved.get(w.workerId) ?? 0)
      if (free > room) {
        best = w.workerId
        room = free
      }
    }
    return explained ? best : null
  }

  /**
   * Sends node `ord`'s START (its current attempt, unaccepted) to `worker` by name, with the
   * flush that follows; null when it cannot go inline (variables too large: they are read from
   * the task document, which must hold them first — the normal START sees to that).
   */
  steer(rt: TaskRuntime, ord: number, worker: string, now: number): PendingCommand | null {
    const n = rt.node(ord)
    const env = startEnvelopeOf(rt, ord, n.attempt_epoch, now)
    if (env === null) return null
    env.target_worker_id = worker
    const cmd = encodedLater(this.#config.topicSignals, worker, handOver(env)) as PendingCommand
    // Its own outbox row (a START steered twice, or to two workers, is sent each time); the
    // envelope keeps the START's dedup_id: one logical message.
    cmd.dedup_id = `${env.dedup_id}:steer:${now}:${worker}`
    cmd.kind = 'STEER'
    cmd.ord = ord
    cmd.epoch = n.attempt_epoch
    // Its trace context is its node attempt's (looked up by the START's own key).
    cmd.node_key = messageKey(rt.id, n.node_id)
    this.#pending.set(`${rt.id}:${ord}`, { worker, taskId: rt.id, ord, epoch: n.attempt_epoch, until: now + this.#config.acceptTimeoutSec * 1000 })
    return cmd
  }
}
