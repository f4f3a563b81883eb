/**
 * Partition worker of the in-memory Bus: owns one partition for one group member and hands its
 * records to the member's handler, one at a time (per-record `handler`) or every record available
 * now up to `maxBatch` (`batchHandler`), in offset order. After the handler resolves it commits
 * the last offset + 1 to the group; a throwing handler gets the same record (the same first offset,
 * possibly a grown batch) again after a capped exponential backoff. It yields a macrotask turn
 * regularly (see YieldBudget), so a long backlog does not starve the process's timers and I/O.
 */
import type { BusBatchHandler, BusHandler } from '../../ports/bus.ts'
import { errorMessage } from '../../errors.ts'
import { Signal } from '../../util/signal.ts'
import type { MemoryBusLogger, PartitionState, TopicState, YieldBudget } from './bus-types.ts'
import { copyMessage, endOffset, partitionKey } from './bus-types.ts'

const BACKOFF_START_MS = 20
const BACKOFF_MAX_MS = 1000

/** What a worker needs from the member that owns its partition. */
export interface WorkerMember {
  readonly memberId: string
  readonly paused: boolean
  readonly handler: BusHandler | null
  readonly batchHandler: BusBatchHandler | null
  readonly maxBatch: number
  /** The group's committed offset of a partition moved (caughtUp bookkeeping). */
  onCommitted(): void
}

export interface WorkerGroup {
  readonly id: string
  /** `${topic}\0${partition}` → next offset to read. */
  readonly committed: Map<string, number>
  /** Latest worker per partition key; a new owner waits for it to finish. */
  readonly workers: Map<string, PartitionWorker>
}

/** Internal surface shared between the bus, its subscriptions and their workers. */
export interface BusInternals {
  readonly workers: Set<PartitionWorker>
  readonly logger: MemoryBusLogger | undefined
  readonly budget: YieldBudget
  checkIdle(): void
  /** A group committed on the partition: records every group consumed may go (retention). */
  committed(topic: TopicState, partition: number): void
}

type WorkerState = 'starting' | 'waiting' | 'paused' | 'handling' | 'backoff' | 'yielding' | 'stopped'

export class PartitionWorker {
  readonly topic: string
  readonly partition: number
  readonly key: string
  state: WorkerState = 'starting'
  /** Next offset this worker will hand to the handler. */
  position = 0
  readonly done: Promise<void>
  #stopped = false
  readonly #internals: BusInternals
  readonly #member: WorkerMember
  readonly #group: WorkerGroup
  readonly #log: PartitionState
  readonly #topicState: TopicState
  readonly #signal = new Signal()
  #backoff: { timer: ReturnType<typeof setTimeout>; resolve: () => void } | null = null
  /** End of the partition's log now (the next offset to be appended). */
  get end(): number {
    return endOffset(this.#log)
  }

  constructor(
    internals: BusInternals,
    member: WorkerMember,
    group: WorkerGroup,
    topic: TopicState,
    partition: number,
    previous: Promise<void> | undefined,
  ) {
    this.#internals = internals
    this.#member = member
    this.#group = group
    this.topic = topic.name
    this.partition = partition
    this.key = partitionKey(topic.name, partition)
    this.#log = topic.partitions[partition]!
    this.#topicState = topic
    this.done = this.#run(previous)
  }

  /** Stops after the in-flight handler (if any); its commit is kept. */
  stop(): Promise<void> {
    this.#stopped = true
    this.#signal.notify()
    const backoff = this.#backoff
    if (backoff) {
      clearTimeout(backoff.timer)
      this.#backoff = null
      backoff.resolve()
    }
    return this.done
  }

  wake(): void {
    this.#signal.notify()
  }

  notify(): void {
    this.#signal.notify()
  }

  async #run(previous: Promise<void> | undefined): Promise<void> {
    this.#internals.workers.add(this)
    try {
      // Always yields first: the handler is never called synchronously by subscribe or produce.
      await previous
      if (this.#stopped) return
      this.#log.listeners.add(this)
      // A group without a position starts at the oldest record kept.
      this.position = this.#group.committed.get(this.key) ?? this.#log.base
      while (!this.#stopped) {
        if (this.#member.paused) {
          await this.#park('paused')
          continue
        }
        if (this.position < this.#log.base) this.#skipDropped()
        if (this.position >= endOffset(this.#log)) {
          await this.#park('waiting')
          continue
        }
        const next = this.#member.batchHandler ? await this.#handleBatch() : await this.#handleOne()
        if (next === null) break
        this.position = next
        this.#group.committed.set(this.key, next)
        this.#member.onCommitted()
        this.#internals.committed(this.#topicState, this.partition)
        const turn = this.#internals.budget.spend(this.#member.batchHandler ? this.#internals.budget.limit : 1)
        if (turn) {
          this.state = 'yielding'
          await turn
        }
      }
    } catch (err) {
      // Only a bug in the bus itself lands here; handler errors are retried.
      this.#internals.logger?.warn(
        { event: 'bus.worker_crashed', groupId: this.#group.id, topic: this.topic, partition: this.partition, err: errorMessage(err) },
        'memory bus partition worker crashed',
      )
    } finally {
      this.state = 'stopped'
      this.#log.listeners.delete(this)
      this.#internals.workers.delete(this)
      if (this.#group.workers.get(this.key) === this) this.#group.workers.delete(this.key)
      this.#internals.checkIdle()
    }
  }

  /** The records from the position on were dropped (the partition outgrew its retention): resume at the oldest kept. */
  #skipDropped(): void {
    const skipped = this.#log.base - this.position
    this.#internals.logger?.warn(
      { event: 'bus.records_dropped', groupId: this.#group.id, topic: this.topic, partition: this.partition, from: this.position, skipped },
      'memory bus: records this group had not consumed were dropped by retention; it resumes at the oldest record kept',
    )
    this.position = this.#log.base
  }

  async #park(state: 'paused' | 'waiting'): Promise<void> {
    this.state = state
    this.#internals.checkIdle()
    await this.#signal.wait()
  }

  /** Handles the record at the position; the next position, or null when stopped first. */
  #handleOne(): Promise<number | null> {
    const handler = this.#member.handler!
    return this.#attempt(() => {
      const record = this.#log.records[this.position - this.#log.base]!
      return { first: record.offset, next: record.offset + 1, call: () => handler(copyMessage(record)) }
    })
  }

  /** Handles every available record from the position (up to maxBatch) as one batch. */
  #handleBatch(): Promise<number | null> {
    const handler = this.#member.batchHandler!
    return this.#attempt(() => {
      // Taken again on every attempt: a retried batch may include records that arrived meanwhile.
      const from = this.position - this.#log.base
      const batch = this.#log.records.slice(from, from + this.#member.maxBatch)
      return { first: this.position, next: batch[batch.length - 1]!.offset + 1, call: () => handler(batch.map(copyMessage)) }
    })
  }

  /** Runs the delivery until it succeeds; the next position, or null when stopped before. */
  async #attempt(take: () => { first: number; next: number; call: () => Promise<void> }): Promise<number | null> {
    for (let attempt = 1; ; attempt++) {
      this.state = 'handling'
      const delivery = take()
      try {
        await delivery.call()
        return delivery.next
      } catch (err) {
        const delayMs = Math.min(BACKOFF_START_MS * 2 ** (attempt - 1), BACKOFF_MAX_MS)
        this.#internals.logger?.warn(
          {
            event: 'bus.handler_failed',
            groupId: this.#group.id,
            member: this.#member.memberId,
            topic: this.topic,
            partition: this.partition,
            offset: delivery.first,
            records: delivery.next - delivery.first,
            attempt,
            retryInMs: delayMs,
            err: errorMessage(err),
          },
          'bus handler failed; the record will be delivered again',
        )
        if (this.#stopped) return null
        this.state = 'backoff'
        await new Promise<void>((resolve) => {
          this.#backoff = { timer: setTimeout(resolve, delayMs), resolve }
        })
        this.#backoff = null
        while (this.#member.paused && !this.#stopped) await this.#park('paused')
        if (this.#stopped) return null
      }
    }
  }

  /** True when this worker has nothing to do now. */
  isIdle(): boolean {
    switch (this.state) {
      case 'stopped':
        return true
      case 'paused':
        return this.#member.paused
      case 'waiting':
        return this.#member.paused || this.position >= endOffset(this.#log)
      default:
        return false
    }
  }
}
