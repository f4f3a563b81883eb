/**
 * In-memory Bus with Kafka semantics (see src/ports/bus.ts), plus test knobs.
 *
 * Model: a topic has N partitions, each an append-only log. A record's key picks its partition
 * with Java-compatible murmur2 (null key → per-topic round robin). A consumer group has members
 * (subscriptions); each topic's partitions are split among the members subscribed to it with the
 * range assignor, rebalanced whenever a member joins or leaves (bus-group.ts). One partition
 * worker per owned partition (bus-worker.ts) hands records to the handler one at a time, or every
 * available record up to `maxBatch` to a `batchHandler`, in offset order, and commits the last
 * `offset + 1` (Kafka semantics: the committed offset is the next one to read) after the handler
 * resolves. A throwing handler gets the same record (batch) again after a capped exponential
 * backoff. When ownership moves, the new owner starts only after the old owner's in-flight
 * handler has finished, from the group's committed offset, so uncommitted records are delivered
 * again (at-least-once) and a partition is never handled by two members at once.
 *
 * Retention (`retention`, MemoryRetention): a partition keeps its last 1,000 records, and older
 * ones until every group subscribed to the topic consumed them, at most 250,000 in all; so a
 * long-running process does not keep every record it ever carried.
 *
 * The bus shares the event loop fairly: workers and `produce` give the loop a macrotask turn
 * (setImmediate) after every 64 records handled or produced in one turn and after each batch, so
 * timers and I/O of the process keep running during a long backlog.
 *
 * Test knobs (all deterministic for a given seed and produce order; bus-chaos.ts):
 * - `chaos`: per topic prefix, `delayMs` (append later, keeping partition order), `duplicate`
 *   (append twice), `reorder` (hold a record back so the next record of its partition overtakes
 *   it; released after `reorderWindowMs` if no next record comes) and `drop` (never appended,
 *   produce still resolves). The first rule whose `topicPrefix` matches a topic applies. Each rule
 *   draws from its own PRNG seeded from `seed` and the rule's index, four draws per record.
 * - `setInterceptor(fn)`: called for every produced record (in order, before chaos) and decides
 *   pass / drop / duplicate / delay / run. An interceptor `delay` lets later records overtake the
 *   delayed one. If the interceptor (or a `run` side effect) throws, `produce` rejects with that
 *   error; the records before it in the call are already appended, the rest are not.
 * Delays use real timers: the bus is infrastructure, not engine time.
 */
import { type Bus, type BusMessage, type BusRecord, type SubscribeOptions, type Subscription, type TopicSpec, isTextLater } from '../../ports/bus.ts'
import type { Clock } from '../../ports/clock.ts'
import { ErrorCode, FlowkitError } from '../../errors.ts'
import { createPartitioner } from '../../util/murmur2.ts'
import { checkRecord, checkTopicName } from '../../ports/bus-rules.ts'
import { RecordStager } from './bus-chaos.ts'
import { MemorySubscription, assignmentsOf, checkHandlerOptions, rebalance } from './bus-group.ts'
import type { GroupState } from './bus-group.ts'
import type {
  AssignmentInfo,
  ChaosOptions,
  MemoryBusLogger,
  MemoryBusOptions,
  PartitionState,
  Pending,
  ProduceInterceptor,
  TopicInfo,
  TopicState,
} from './bus-types.ts'
import { YieldBudget, copyMessage, endOffset, newPartitionState, partitionKey } from './bus-types.ts'
import type { BusInternals, PartitionWorker } from './bus-worker.ts'
import { type Retention, dropRetained, resolveRetention } from './bus-retention.ts'

export type {
  AssignmentInfo,
  ChaosOptions,
  ChaosRule,
  InterceptDecision,
  InterceptedRecord,
  MemoryBusLogger,
  MemoryBusOptions,
  MemoryRetention,
  ProduceInterceptor,
  TopicInfo,
} from './bus-types.ts'


export class MemoryBus implements Bus {
  readonly #defaultPartitions: number
  readonly #logger: MemoryBusLogger | undefined
  readonly #clock: Pick<Clock, 'now'>
  readonly #topics = new Map<string, TopicState>()
  readonly #groups = new Map<string, GroupState>()
  readonly #partitioner = createPartitioner()
  readonly #delayTimers = new Set<ReturnType<typeof setTimeout>>()
  readonly #idleWaiters = new Set<() => void>()
  readonly #internals: BusInternals
  readonly #stager: RecordStager
  #interceptor: ProduceInterceptor | null = null
  #producing = 0
  #memberSeq = 0
  #closed = false
  #closing: Promise<void> | null = null
  readonly #retention: Retention

  constructor(options: MemoryBusOptions = {}) {
    const partitions = options.defaultPartitions ?? 3
    if (!Number.isInteger(partitions) || partitions < 1) {
      throw new FlowkitError(ErrorCode.Config, `defaultPartitions must be a positive integer, got ${partitions}`)
    }
    this.#defaultPartitions = partitions
    this.#logger = options.logger
    this.#clock = options.clock ?? { now: () => Date.now() }
    this.#stager = new RecordStager(this.#logger, () => this.#checkIdle())
    this.setChaos(options.chaos ?? null)
    this.#internals = {
      workers: new Set<PartitionWorker>(),
      logger: this.#logger,
      budget: new YieldBudget(64),
      checkIdle: () => this.#checkIdle(),
      committed: (topic, partition) => dropRetained(topic, partition, this.#retention, this.#groups.values(), this.#internals.workers),
    }
    this.#retention = resolveRetention(options.retention)
  }

  // ---- Bus port ----------------------------------------------------------------------------

  async ensureTopics(topics: TopicSpec[]): Promise<void> {
    this.#assertOpen()
    for (const spec of topics) {
      if (spec.partitions !== undefined && (!Number.isInteger(spec.partitions) || spec.partitions < 1)) {
        throw new FlowkitError(ErrorCode.Config, `topic ${spec.name}: partitions must be a positive integer`)
      }
      this.#topic(spec.name, spec.partitions)
    }
  }

  async partitionCount(topic: string): Promise<number> {
    this.#assertOpen()
    const t = this.#topics.get(topic)
    if (t === undefined) throw new FlowkitError(ErrorCode.Config, `partitionCount: unknown topic ${topic}`)
    return t.partitions.length
  }

  async produce(records: BusRecord[]): Promise<void> {
    this.#assertOpen()
    for (const record of records) checkRecord(record)
    this.#producing++
    try {
      // Without an interceptor nothing here waits: records are staged in one synchronous pass.
      for (const record of records) {
        if (this.#interceptor) await this.#produceOne(record)
        else {
          const topic = this.#topic(record.topic)
          this.#stageRecord(topic, this.#partitioner(topic.name, record.key, topic.partitions.length), record, { ...(record.headers ?? {}) }, 1, 0)
        }
      }
    } finally {
      this.#producing--
      this.#checkIdle()
    }
    // Records are appended; resolving a turn later keeps a tight produce loop from starving I/O.
    await this.#internals.budget.spend(records.length)
  }

  async subscribe(options: SubscribeOptions): Promise<Subscription> {
    this.#assertOpen()
    if (typeof options.groupId !== 'string' || options.groupId === '') {
      throw new FlowkitError(ErrorCode.Config, 'subscribe: groupId must be a non-empty string')
    }
    if (!Array.isArray(options.topics) || options.topics.length === 0) {
      throw new FlowkitError(ErrorCode.Config, 'subscribe: topics must be a non-empty array')
    }
    checkHandlerOptions(options)
    const topics = options.topics.map((name) => this.#topic(name))
    let group = this.#groups.get(options.groupId)
    if (!group) {
      group = { id: options.groupId, members: [], committed: new Map(), workers: new Map(), generation: 0 }
      this.#groups.set(group.id, group)
    }
    if (options.fromLatest) {
      // A group without a position on a partition starts at its end (auto.offset.reset=latest).
      // The position is committed now so that a later owner resumes there too.
      for (const topic of topics) {
        topic.partitions.forEach((log, p) => {
          const key = partitionKey(topic.name, p)
          if (!group.committed.has(key) && !group.workers.has(key)) group.committed.set(key, endOffset(log))
        })
      }
    }
    const member = new MemorySubscription(group, options, `${options.name ?? 'member'}-${++this.#memberSeq}`, (m) => this.#leave(m))
    group.members.push(member)
    this.#rebalance(group)
    return member
  }

  close(): Promise<void> {
    this.#closing ??= this.#close()
    return this.#closing
  }

  // ---- Test controls -----------------------------------------------------------------------

  /** Sets (or clears with null) the produce interceptor. */
  setInterceptor(interceptor: ProduceInterceptor | null): void {
    this.#interceptor = interceptor
  }

  /** Replaces (or clears with null) the chaos rules; PRNGs restart from the seed. */
  setChaos(chaos: ChaosOptions | null): void {
    this.#stager.setChaos(chaos)
  }

  // ---- Introspection -----------------------------------------------------------------------

  /** Topics that exist, sorted by name. */
  topics(): TopicInfo[] {
    return [...this.#topics.values()]
      .map((t) => ({ name: t.name, partitions: t.partitions.length }))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  }

  /** Every record appended to `topic` (copies), in append order across partitions. */
  records(topic: string): BusMessage[] {
    const t = this.#topics.get(topic)
    if (t === undefined) return []
    return t.log.filter((m) => m.offset >= (t.partitions[m.partition] as PartitionState).base).map(copyMessage)
  }

  /** The group's committed offset (next offset to read) for a partition; undefined if none. */
  committed(groupId: string, topic: string, partition: number): number | undefined {
    return this.#groups.get(groupId)?.committed.get(partitionKey(topic, partition))
  }

  /** Current partition assignment of a group, one entry per (member, topic). */
  assignments(groupId: string): AssignmentInfo[] {
    const group = this.#groups.get(groupId)
    return group ? assignmentsOf(group) : []
  }

  /**
   * Resolves when nothing is pending: no produce in progress, no delayed/staged/held record, and
   * every partition worker is either caught up (waiting for new records) or paused (a paused
   * subscription's undelivered records do not count). A handler that keeps failing keeps the
   * bus busy. Rejects with FlowkitError TIMEOUT after `timeoutMs` (default 10000).
   */
  waitForIdle(options: { timeoutMs?: number } = {}): Promise<void> {
    if (this.#closed || this.#isIdle()) return Promise.resolve()
    const timeoutMs = options.timeoutMs ?? 10_000
    return new Promise<void>((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer)
        this.#idleWaiters.delete(done)
        resolve()
      }
      const timer = setTimeout(() => {
        this.#idleWaiters.delete(done)
        reject(new FlowkitError(ErrorCode.Timeout, `memory bus not idle after ${timeoutMs}ms`, { retryable: true }))
      }, timeoutMs)
      this.#idleWaiters.add(done)
    })
  }

  // ---- Internals ---------------------------------------------------------------------------

  #assertOpen(): void {
    if (this.#closed) throw new FlowkitError(ErrorCode.Closed, 'memory bus is closed')
  }

  /** Returns the topic, creating it if missing (an existing topic keeps its partition count). */
  #topic(name: string, partitions?: number): TopicState {
    const existing = this.#topics.get(name)
    if (existing) return existing
    checkTopicName(name)
    const count = partitions ?? this.#defaultPartitions
    const topic: TopicState = { name, log: [], dropped: 0, partitions: Array.from({ length: count }, newPartitionState) }
    this.#topics.set(name, topic)
    return topic
  }

  async #produceOne(record: BusRecord): Promise<void> {
    this.#assertOpen()
    const topic = this.#topic(record.topic)
    const partition = this.#partitioner(topic.name, record.key, topic.partitions.length)
    const headers = { ...(record.headers ?? {}) }
    let copies = 1
    let delayMs = 0
    const interceptor = this.#interceptor
    if (interceptor) {
      const decision = await interceptor({ topic: topic.name, key: record.key, value: record.value, headers: { ...headers }, partition })
      switch (decision.action) {
        case 'pass':
          break
        case 'drop':
          copies = 0
          break
        case 'duplicate':
          copies = 1 + Math.max(0, Math.floor(decision.times ?? 1))
          break
        case 'delay':
          delayMs = Math.max(0, decision.ms)
          break
        case 'run':
          await decision.fn()
          break
        default:
          throw new FlowkitError(ErrorCode.Config, `unknown interceptor decision ${JSON.stringify(decision)}`)
      }
      this.#assertOpen()
    }
    this.#stageRecord(topic, partition, record, headers, copies, delayMs)
  }

  /**
   * Stages `copies` of a record on `partition` (after `delayMs`, if any), stamped now. Its text is
   * copied, or, for a record that makes it on first read (encodedLater), left unmade.
   */
  #stageRecord(topic: TopicState, partition: number, record: BusRecord, headers: Record<string, string>, copies: number, delayMs: number): void {
    const timestamp = this.#clock.now()
    const later = isTextLater(record) ? record : undefined
    const value = later === undefined ? record.value : ''
    for (let i = 0; i < copies; i++) {
      const pending: Pending = { key: record.key, value, later, decoded: record.decoded, headers: i === 0 ? headers : { ...headers }, timestamp, reorder: false }
      if (delayMs > 0) {
        const timer = setTimeout(() => {
          this.#delayTimers.delete(timer)
          this.#stager.stage(topic, partition, pending)
          this.#checkIdle()
        }, delayMs)
        this.#delayTimers.add(timer)
      } else {
        this.#stager.stage(topic, partition, pending)
      }
    }
  }

  #rebalance(group: GroupState): void {
    rebalance(this.#internals, group, this.#topics)
    this.#logger?.debug?.({ event: 'bus.rebalanced', groupId: group.id, assignments: assignmentsOf(group) }, 'group rebalanced')
  }

  async #leave(member: MemorySubscription): Promise<void> {
    const group = this.#groups.get(member.groupId)
    if (group) {
      const index = group.members.indexOf(member)
      if (index >= 0) group.members.splice(index, 1)
    }
    const stopping = [...member.workers.values()].map((w) => w.stop())
    member.workers.clear()
    // When the whole bus closes, nobody takes the partitions over.
    if (group && !this.#closed) this.#rebalance(group)
    await Promise.all(stopping)
  }

  async #close(): Promise<void> {
    this.#closed = true
    for (const timer of this.#delayTimers) clearTimeout(timer)
    this.#delayTimers.clear()
    const discarded = this.#stager.close(this.#topics.values())
    if (discarded > 0) this.#logger?.debug?.({ event: 'bus.closed_discarded', discarded }, 'delayed records discarded at close')
    const members = [...this.#groups.values()].flatMap((g) => [...g.members])
    await Promise.all(members.map((m) => m.close()))
    for (const done of [...this.#idleWaiters]) done()
  }

  #isIdle(): boolean {
    if (this.#producing > 0 || this.#delayTimers.size > 0) return false
    if (this.#stager.hasPending(this.#topics.values())) return false
    for (const worker of this.#internals.workers) {
      if (!worker.isIdle()) return false
    }
    return true
  }

  #checkIdle(): void {
    if (this.#idleWaiters.size === 0 || !this.#isIdle()) return
    for (const done of [...this.#idleWaiters]) done()
  }
}
