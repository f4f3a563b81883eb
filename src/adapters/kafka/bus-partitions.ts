/**
 * Partition ownership of a Kafka subscription (bus-subscription.ts): one PartitionWorker
 * (bus-worker.ts) per owned partition, and the changes a rebalance makes to them. A partition that
 * comes back waits for its previous worker (never two handlers of one partition at once); a
 * revoked one stops after its in-flight handler, its buffered records and pending commits dropped.
 * Commits are held from the start of a rebalance until the join (bus-commits.ts); every new
 * assignment is reported once (bus-assignment.ts) and handed to the replay tracker (bus-replay.ts).
 * The subscription calls in only for its current session and while it is not stopping.
 */
import type { GroupAssignment } from '@platformatic/kafka'
import type { TopicPartition } from '../../ports/bus.ts'
import type { Logger } from '../../log.ts'
import { type AssignmentReporter, assignedPartitions } from './bus-assignment.ts'
import type { CommitQueue } from './bus-commits.ts'
import type { ReplayTracker } from './bus-replay.ts'
import type { ConsumerSession } from './bus-session.ts'
import { PartitionWorker } from './bus-worker.ts'
import type { WorkerHost } from './bus-worker.ts'

/** What partition ownership needs from its subscription besides the workers' host. */
export interface OwnershipDeps {
  readonly topics: readonly string[]
  readonly log: Logger
  readonly commits: CommitQueue
  readonly replay: ReplayTracker
  readonly reporter: AssignmentReporter
  /** A join completed: the group confirmed this member. */
  confirmed(): void
}

export class PartitionOwnership {
  readonly #host: WorkerHost
  readonly #deps: OwnershipDeps
  /** Owned partitions → worker. */
  readonly #workers = new Map<string, PartitionWorker>()
  /** Latest worker per partition (owned or not), so a returning partition waits for it. */
  readonly #lastWorker = new Map<string, PartitionWorker>()
  /** Every worker still running (revoked ones included): close waits for them. */
  readonly #running = new Set<PartitionWorker>()

  constructor(host: WorkerHost, deps: OwnershipDeps) {
    this.#host = host
    this.#deps = deps
  }

  /** How many partitions are owned. */
  get size(): number {
    return this.#workers.size
  }

  has(key: string): boolean {
    return this.#workers.has(key)
  }

  /** The worker of an owned partition. */
  get(key: string): PartitionWorker | undefined {
    return this.#workers.get(key)
  }

  workers(): PartitionWorker[] {
    return [...this.#workers.values()]
  }

  /** The owned partitions. */
  positions(): TopicPartition[] {
    return this.workers().map((w) => ({ topic: w.topic, partition: w.partition }))
  }

  /**
   * A rebalance began (this member rejoins now): commits wait for the join, since a commit the
   * group refuses meanwhile makes the library rejoin once more (another rebalance) and, in the
   * cooperative protocol, forget the partitions it owns (they would move without being revoked).
   * In a cooperative revoke round the consumer's assignment already lost partitions: they are
   * revoked (and reported) now, before this member rejoins and another one can get them.
   */
  rebalancing(session: ConsumerSession): void {
    this.#deps.commits.hold()
    const keep = assignedPartitions(session.consumer.assignments ?? [], this.#deps.topics)
    const revoked = [...this.#workers.keys()].filter((key) => !keep.has(key))
    if (revoked.length === 0) return
    for (const key of revoked) this.revoke(key)
    this.#deps.reporter.report(keep, session.consumer.generationId)
    this.#deps.log.debug('bus.kafka.revoked', { generationId: session.consumer.generationId, partitions: [...this.#workers.keys()], revoked })
  }

  /** The member joined with `assignments`: revokes what it lost, starts a worker per gained partition. */
  join(session: ConsumerSession, assignments: GroupAssignment[]): void {
    const want = assignedPartitions(assignments, this.#deps.topics)
    const revoked: string[] = []
    const gained: string[] = []
    for (const key of [...this.#workers.keys()]) {
      if (want.has(key)) continue
      this.revoke(key)
      revoked.push(key)
    }
    for (const [key, { topic, partition }] of want) {
      if (this.#workers.has(key)) continue
      const worker = new PartitionWorker(this.#host, topic, partition, this.#lastWorker.get(key)?.done)
      this.#workers.set(key, worker)
      this.#lastWorker.set(key, worker)
      this.#running.add(worker)
      void worker.done.then(() => {
        this.#running.delete(worker)
        if (this.#lastWorker.get(key) === worker && !this.#workers.has(key)) this.#lastWorker.delete(key)
      })
      // Forget a position the stream kept from an earlier ownership: it restarts the partition
      // from the group's committed offset (or the fallback) instead.
      session.stream?.offsetsToFetch.delete(key)
      gained.push(key)
    }
    this.#deps.replay.onAssigned([...want.values()])
    this.#deps.confirmed()
    this.#deps.reporter.report(want, session.consumer.generationId)
    this.#deps.commits.release()
    this.#deps.log.debug('bus.kafka.assigned', {
      memberId: session.consumer.memberId,
      generationId: session.consumer.generationId,
      partitions: [...this.#workers.keys()],
      revoked,
      gained,
    })
  }

  /** The partition is no longer ours: stop after its in-flight handler, drop its buffer and commits. */
  revoke(key: string): void {
    const worker = this.#workers.get(key)
    if (!worker) return
    this.#workers.delete(key)
    worker.revoked = true
    const dropped = worker.clear()
    if (dropped > 0) this.#host.onDequeued(dropped)
    void worker.stop()
    this.#deps.commits.forget(key)
  }

  /** Gives up every owned partition (the session was replaced). */
  revokeAll(): void {
    for (const key of [...this.#workers.keys()]) this.revoke(key)
  }

  /** Stops every worker still running (revoked ones included), after their in-flight handlers. */
  async stopAll(): Promise<void> {
    await Promise.all([...this.#running].map((w) => w.stop()))
  }

  /** Forgets the owned partitions (at the end of close). */
  clear(): void {
    this.#workers.clear()
  }
}
