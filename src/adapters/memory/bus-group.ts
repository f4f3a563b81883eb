/**
 * Consumer groups of the in-memory Bus: subscriptions (group members), the range assignor that
 * splits each topic's partitions among the members subscribed to it, and `caughtUp` bookkeeping.
 * When ownership moves, the new owner starts only after the old owner's in-flight handler has
 * finished, from the group's committed offset (at-least-once; never two handlers on a partition).
 */
import type { BusBatchHandler, BusHandler, SubscribeOptions, Subscription } from '../../ports/bus.ts'
import { ErrorCode, FlowkitError, errorMessage } from '../../errors.ts'
import type { AssignmentInfo, TopicState } from './bus-types.ts'
import { endOffset, partitionKey } from './bus-types.ts'
import { PartitionWorker } from './bus-worker.ts'
import type { BusInternals, WorkerGroup, WorkerMember } from './bus-worker.ts'

export const DEFAULT_MAX_BATCH = 500

export interface GroupState extends WorkerGroup {
  /** Incremented at every rebalance (reported with assignments). */
  generation: number
  readonly members: MemorySubscription[]
}

/** Checks the handler options of `subscribe` (exactly one of handler / batchHandler). */
export function checkHandlerOptions(options: SubscribeOptions): void {
  const hasHandler = options.handler !== undefined
  const hasBatch = options.batchHandler !== undefined
  if (hasHandler === hasBatch) {
    throw new FlowkitError(ErrorCode.Config, 'subscribe: give exactly one of handler and batchHandler')
  }
  if (hasHandler && typeof options.handler !== 'function') {
    throw new FlowkitError(ErrorCode.Config, 'subscribe: handler must be a function')
  }
  if (hasBatch && typeof options.batchHandler !== 'function') {
    throw new FlowkitError(ErrorCode.Config, 'subscribe: batchHandler must be a function')
  }
  if (options.maxBatch !== undefined && (!Number.isInteger(options.maxBatch) || options.maxBatch < 1)) {
    throw new FlowkitError(ErrorCode.Config, 'subscribe: maxBatch must be a positive integer')
  }
}

export class MemorySubscription implements Subscription, WorkerMember {
  readonly groupId: string
  readonly memberId: string
  readonly topics: readonly string[]
  readonly handler: BusHandler | null
  readonly batchHandler: BusBatchHandler | null
  readonly maxBatch: number
  readonly onAssignment: SubscribeOptions['onAssignment'] | null
  /** The assignment last reported to `onAssignment` (sorted partition keys). */
  reported = ''
  /** The first assignment is reported even when empty. */
  #reportedOnce = false
  /** Owned partitions: partition key → worker. */
  readonly workers = new Map<string, PartitionWorker>()
  #paused = false
  #closing: Promise<void> | null = null
  readonly #leave: (member: MemorySubscription) => Promise<void>
  readonly #group: GroupState
  /** Partition key → end of its log when first assigned to this member (caughtUp targets). */
  readonly #replayTargets = new Map<string, number>()
  #caughtUp = false
  readonly #caughtUpWaiters: Array<() => void> = []
  #drainWaiters: Array<{ done: () => boolean; resolve: () => void }> = []

  constructor(group: GroupState, options: SubscribeOptions, memberId: string, leave: (member: MemorySubscription) => Promise<void>) {
    this.#group = group
    this.#leave = leave
    this.groupId = options.groupId
    this.memberId = memberId
    this.topics = [...new Set(options.topics)]
    this.handler = options.handler ?? null
    this.batchHandler = options.batchHandler ?? null
    this.maxBatch = options.maxBatch ?? DEFAULT_MAX_BATCH
    this.onAssignment = options.onAssignment ?? null
  }

  confirmedAt(): number {
    return Date.now()
  }

  /** Calls `onAssignment` with `owned` unless it is what was reported last. */
  report(internals: BusInternals, owned: PartitionWorker[], generation: number): void {
    const keys = owned.map((w) => w.key).sort()
    if (!this.onAssignment || (keys.join('\u0001') === this.reported && this.#reportedOnce)) return
    this.#reportedOnce = true
    this.reported = keys.join('\u0001')
    try {
      this.onAssignment(
        owned.map((w) => ({ topic: w.topic, partition: w.partition })),
        generation,
      )
    } catch (err) {
      internals.logger?.warn({ groupId: this.groupId, member: this.memberId, err: errorMessage(err) }, 'memory bus: onAssignment callback failed')
    }
  }

  get paused(): boolean {
    return this.#paused
  }

  pause(): void {
    this.#paused = true
  }

  resume(): void {
    if (!this.#paused) return
    this.#paused = false
    for (const worker of this.workers.values()) worker.wake()
  }

  caughtUp(): Promise<void> {
    if (this.#caughtUp) return Promise.resolve()
    return new Promise<void>((resolve) => this.#caughtUpWaiters.push(resolve))
  }

  close(): Promise<void> {
    this.#closing ??= this.#leave(this).finally(() => {
      this.#markCaughtUp()
      for (const w of this.#drainWaiters.splice(0)) w.resolve()
    })
    return this.#closing
  }

  /** A partition was assigned to this member: the first time, its log end becomes a target. */
  onAssigned(key: string, logEnd: number): void {
    if (!this.#caughtUp && !this.#replayTargets.has(key)) this.#replayTargets.set(key, logEnd)
  }

  drained(): Promise<void> {
    const targets = [...this.workers.values()].map((w) => ({ key: w.key, end: w.end }))
    const done = (): boolean => targets.every(({ key, end }) => !this.workers.has(key) || (this.#group.committed.get(key) ?? 0) >= end)
    if (done() || this.#closing !== null) return Promise.resolve()
    return new Promise<void>((resolve) => this.#drainWaiters.push({ done, resolve }))
  }

  onCommitted(): void {
    if (this.#drainWaiters.length > 0) {
      this.#drainWaiters = this.#drainWaiters.filter((w) => {
        if (!w.done()) return true
        w.resolve()
        return false
      })
    }
    if (this.#caughtUp) return
    for (const [key, end] of this.#replayTargets) {
      if ((this.#group.committed.get(key) ?? 0) < end) return
    }
    this.#markCaughtUp()
  }

  #markCaughtUp(): void {
    this.#caughtUp = true
    this.#replayTargets.clear()
    for (const resolve of this.#caughtUpWaiters.splice(0)) resolve()
  }
}

/** Range assignor per topic over the members subscribed to it, in join order; starts and stops workers. */
export function rebalance(internals: BusInternals, group: GroupState, topics: ReadonlyMap<string, TopicState>): void {
  const desired = new Map<MemorySubscription, Set<string>>()
  for (const member of group.members) desired.set(member, new Set())
  const topicNames = new Set(group.members.flatMap((m) => m.topics))
  for (const name of topicNames) {
    const topic = topics.get(name)
    if (!topic) continue
    const subscribers = group.members.filter((m) => m.topics.includes(name))
    const n = topic.partitions.length
    const per = Math.floor(n / subscribers.length)
    const extra = n % subscribers.length
    subscribers.forEach((member, i) => {
      const start = i * per + Math.min(i, extra)
      const count = per + (i < extra ? 1 : 0)
      for (let p = start; p < start + count; p++) desired.get(member)!.add(partitionKey(name, p))
    })
  }
  // Revoke first, then assign: a new owner chains on the previous owner's `done`.
  for (const member of group.members) {
    const want = desired.get(member)!
    for (const [key, worker] of member.workers) {
      if (!want.has(key)) {
        member.workers.delete(key)
        void worker.stop()
      }
    }
  }
  for (const member of group.members) {
    for (const key of desired.get(member)!) {
      if (member.workers.has(key)) continue
      const [name, p] = key.split('\u0000') as [string, string]
      const topic = topics.get(name)!
      const partition = Number(p)
      member.onAssigned(key, endOffset(topic.partitions[partition]!))
      const previous = group.workers.get(key)
      const worker = new PartitionWorker(internals, member, group, topic, partition, previous?.done)
      member.workers.set(key, worker)
      group.workers.set(key, worker)
    }
  }
  reportAssignments(internals, group)
  // Targets already reached (nothing to replay, or a committed position at the end) resolve now.
  for (const member of group.members) member.onCommitted()
}

/**
 * Reports the members' new assignments to `onAssignment`: first, to the members that lost
 * partitions, what they keep (a generation of its own), then everyone's new set. A partition is
 * thus reported to its new owner only after its previous owner was reported losing it, as with
 * Kafka's cooperative protocol (an owner releases what it lost before another one acquires it).
 */
function reportAssignments(internals: BusInternals, group: GroupState): void {
  const reporting = group.members.filter((m) => m.onAssignment)
  const losing = reporting.flatMap((m) => {
    const before = new Set(m.reported === '' ? [] : m.reported.split('\u0001'))
    const kept = [...m.workers.values()].filter((w) => before.has(w.key))
    return kept.length < before.size ? [{ m, kept }] : []
  })
  if (losing.length > 0) {
    group.generation++
    for (const { m, kept } of losing) m.report(internals, kept, group.generation)
  }
  group.generation++
  for (const m of reporting) m.report(internals, [...m.workers.values()], group.generation)
}

/** Current partition assignment of a group, one entry per (member, topic). */
export function assignmentsOf(group: GroupState): AssignmentInfo[] {
  const out: AssignmentInfo[] = []
  for (const member of group.members) {
    for (const topic of member.topics) {
      const partitions = [...member.workers.values()]
        .filter((w) => w.topic === topic)
        .map((w) => w.partition)
        .sort((a, b) => a - b)
      out.push({ member: member.memberId, topic, partitions })
    }
  }
  return out
}
