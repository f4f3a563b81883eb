/**
 * In-memory Bus with Kafka semantics (see src/ports/bus.ts), plus test knobs.
 *
 * Model: a topic has N partitions, each an append-only log. A record's key picks its partition
 * with Java-compatible murmur2 (null key → per-topic round robin). A consumer group has members
 * (subscriptions); each topic's partitions are split among the members subscribed to it with the
 * range assignor, rebalanced whenever a member joins or leaves. One partition worker per owned
 * partition hands records to the handler one at a time, in offset order, and commits
 * `offset + 1` (Kafka semantics: the committed offset is the next one to read) after the handler
 * resolves. A throwing handler gets the same record again after a capped exponential backoff.
 * When ownership moves, the new owner starts only after the old owner's in-flight handler has
 * finished, from the group's committed offset, so uncommitted records are delivered again
 * (at-least-once) and a partition is never handled by two members at once.
 *
 * Test knobs (all deterministic for a given seed and produce order):
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
import type {
  Bus,
  BusHandler,
  BusMessage,
  BusRecord,
  SubscribeOptions,
  Subscription,
  TopicSpec,
} from '../../ports/bus.ts'
import type { Clock } from '../../ports/clock.ts'
import { ErrorCode, FlowkitError, errorMessage } from '../../errors.ts'
import { createPartitioner } from '../../util/murmur2.ts'
import { createRandom } from '../../util/random.ts'
import type { Random } from '../../util/random.ts'
import { Signal } from '../../util/signal.ts'
import { checkRecord, checkTopicName } from '../../ports/bus-rules.ts'

export interface ChaosRule {
  /** Applies to topics whose name starts with this prefix ('' matches every topic). */
  topicPrefix: string
  /** Append each record after a uniform random delay in [min, max] ms; partition order is kept. */
  delayMs?: readonly [number, number]
  /** Probability that a record is appended twice (adjacent copies). */
  duplicate?: number
  /** Probability that a record is swapped with the next record of its partition. */
  reorder?: number
  /** Probability that a record is silently lost (produce still resolves). */
  drop?: number
}

export interface ChaosOptions {
  seed: number
  rules: ChaosRule[]
  /** How long a record held back by `reorder` waits for a successor before it is appended. Default 50. */
  reorderWindowMs?: number
}

/** The record as the interceptor sees it, with the partition the bus chose. */
export interface InterceptedRecord extends BusRecord {
  readonly partition: number
}

export type InterceptDecision =
  | { action: 'pass' }
  | { action: 'drop' }
  /** Appends the record `1 + times` times (default times = 1). */
  | { action: 'duplicate'; times?: number }
  /** Appends the record after `ms`; records produced meanwhile overtake it. */
  | { action: 'delay'; ms: number }
  /** Runs a side effect, then passes the record. */
  | { action: 'run'; fn: () => void | Promise<void> }

export type ProduceInterceptor = (record: InterceptedRecord) => InterceptDecision | Promise<InterceptDecision>

/** Structured logger (pino-compatible subset). */
export interface MemoryBusLogger {
  warn(obj: Record<string, unknown>, msg: string): void
  debug?(obj: Record<string, unknown>, msg: string): void
}

export interface MemoryBusOptions {
  /** Partitions of a topic created implicitly (produce/subscribe) or without a count. Default 3. */
  defaultPartitions?: number
  chaos?: ChaosOptions
  logger?: MemoryBusLogger
  /** Source of record timestamps. Default: the system clock. */
  clock?: Pick<Clock, 'now'>
}

export interface TopicInfo {
  name: string
  partitions: number
}

export interface AssignmentInfo {
  /** Member id: `${name ?? 'member'}-${n}`. */
  member: string
  topic: string
  partitions: number[]
}

const BACKOFF_START_MS = 20
const BACKOFF_MAX_MS = 1000


interface Pending {
  key: string | null
  value: string
  headers: Record<string, string>
  timestamp: number
  reorder: boolean
}

interface PartitionState {
  readonly records: BusMessage[]
  readonly listeners: Set<Signal>
  /** FIFO of records waiting for their chaos delay; later records queue behind (order kept). */
  staged: Array<{ pending: Pending; readyAt: number }>
  stagedTimer: ReturnType<typeof setTimeout> | null
  /** Record held back by `reorder` until the next record of the partition overtakes it. */
  held: Pending | null
  heldTimer: ReturnType<typeof setTimeout> | null
}

interface TopicState {
  readonly name: string
  readonly partitions: PartitionState[]
  /** Every appended record, in append order across partitions. */
  readonly log: BusMessage[]
}

interface GroupState {
  readonly id: string
  readonly members: MemorySubscription[]
  /** `${topic}\0${partition}` → next offset to read. */
  readonly committed: Map<string, number>
  /** Latest worker per partition key; a new owner waits for it to finish. */
  readonly workers: Map<string, PartitionWorker>
}

interface CompiledRule {
  rule: ChaosRule
  random: Random
}

type WorkerState = 'starting' | 'waiting' | 'paused' | 'handling' | 'backoff' | 'stopped'

function partitionKey(topic: string, partition: number): string {
  return `${topic}\u0000${partition}`
}

function copyMessage(m: BusMessage): BusMessage {
  return { ...m, headers: { ...m.headers } }
}

class PartitionWorker {
  readonly topic: string
  readonly partition: number
  readonly key: string
  state: WorkerState = 'starting'
  /** Next offset this worker will hand to the handler. */
  position = 0
  readonly done: Promise<void>
  #stopped = false
  readonly #internals: BusInternals
  readonly #member: MemorySubscription
  readonly #group: GroupState
  readonly #log: PartitionState
  readonly #signal = new Signal()
  #backoff: { timer: ReturnType<typeof setTimeout>; resolve: () => void } | null = null

  constructor(
    internals: BusInternals,
    member: MemorySubscription,
    group: GroupState,
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

  async #run(previous: Promise<void> | undefined): Promise<void> {
    this.#internals.workers.add(this)
    try {
      // Always yields first: the handler is never called synchronously by subscribe or produce.
      await previous
      if (this.#stopped) return
      this.#log.listeners.add(this.#signal)
      this.position = this.#group.committed.get(this.key) ?? 0
      while (!this.#stopped) {
        if (this.#member.paused) {
          await this.#park('paused')
          continue
        }
        const record = this.#log.records[this.position]
        if (record === undefined) {
          await this.#park('waiting')
          continue
        }
        if (!(await this.#handle(record))) break
        this.position = record.offset + 1
        this.#group.committed.set(this.key, this.position)
      }
    } catch (err) {
      // Only a bug in the bus itself lands here; handler errors are retried in #handle.
      this.#internals.logger?.warn(
        { event: 'bus.worker_crashed', groupId: this.#group.id, topic: this.topic, partition: this.partition, err: errorMessage(err) },
        'memory bus partition worker crashed',
      )
    } finally {
      this.state = 'stopped'
      this.#log.listeners.delete(this.#signal)
      this.#internals.workers.delete(this)
      if (this.#group.workers.get(this.key) === this) this.#group.workers.delete(this.key)
      this.#internals.checkIdle()
    }
  }

  async #park(state: 'paused' | 'waiting'): Promise<void> {
    this.state = state
    this.#internals.checkIdle()
    await this.#signal.wait()
  }

  /** Calls the handler until it succeeds; false when stopped before it did. */
  async #handle(record: BusMessage): Promise<boolean> {
    for (let attempt = 1; ; attempt++) {
      this.state = 'handling'
      try {
        await this.#member.handler(copyMessage(record))
        return true
      } catch (err) {
        const delayMs = Math.min(BACKOFF_START_MS * 2 ** (attempt - 1), BACKOFF_MAX_MS)
        this.#internals.logger?.warn(
          {
            event: 'bus.handler_failed',
            groupId: this.#group.id,
            member: this.#member.memberId,
            topic: this.topic,
            partition: this.partition,
            offset: record.offset,
            attempt,
            retryInMs: delayMs,
            err: errorMessage(err),
          },
          'bus handler failed; the record will be delivered again',
        )
        if (this.#stopped) return false
        this.state = 'backoff'
        await new Promise<void>((resolve) => {
          this.#backoff = { timer: setTimeout(resolve, delayMs), resolve }
        })
        this.#backoff = null
        while (this.#member.paused && !this.#stopped) await this.#park('paused')
        if (this.#stopped) return false
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
        return this.#member.paused || this.position >= this.#log.records.length
      default:
        return false
    }
  }
}

/** Internal surface shared between the bus, its subscriptions and their workers. */
interface BusInternals {
  readonly workers: Set<PartitionWorker>
  readonly logger: MemoryBusLogger | undefined
  checkIdle(): void
  leave(member: MemorySubscription): Promise<void>
}

class MemorySubscription implements Subscription {
  readonly groupId: string
  readonly memberId: string
  readonly topics: readonly string[]
  readonly handler: BusHandler
  /** Owned partitions: partition key → worker. */
  readonly workers = new Map<string, PartitionWorker>()
  #paused = false
  #closing: Promise<void> | null = null
  readonly #internals: BusInternals

  constructor(internals: BusInternals, options: SubscribeOptions, memberId: string) {
    this.#internals = internals
    this.groupId = options.groupId
    this.memberId = memberId
    this.topics = [...new Set(options.topics)]
    this.handler = options.handler
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

  close(): Promise<void> {
    this.#closing ??= this.#internals.leave(this)
    return this.#closing
  }
}

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
  #chaos: { rules: CompiledRule[]; reorderWindowMs: number } | null = null
  #interceptor: ProduceInterceptor | null = null
  #producing = 0
  #memberSeq = 0
  #closed = false
  #closing: Promise<void> | null = null

  constructor(options: MemoryBusOptions = {}) {
    const partitions = options.defaultPartitions ?? 3
    if (!Number.isInteger(partitions) || partitions < 1) {
      throw new FlowkitError(ErrorCode.Config, `defaultPartitions must be a positive integer, got ${partitions}`)
    }
    this.#defaultPartitions = partitions
    this.#logger = options.logger
    this.#clock = options.clock ?? { now: () => Date.now() }
    this.setChaos(options.chaos ?? null)
    const workers = new Set<PartitionWorker>()
    this.#internals = {
      workers,
      logger: this.#logger,
      checkIdle: () => this.#checkIdle(),
      leave: (member) => this.#leave(member),
    }
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

  async produce(records: BusRecord[]): Promise<void> {
    this.#assertOpen()
    for (const record of records) checkRecord(record)
    this.#producing++
    try {
      for (const record of records) {
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
        const timestamp = this.#clock.now()
        for (let i = 0; i < copies; i++) {
          const pending: Pending = { key: record.key, value: record.value, headers: { ...headers }, timestamp, reorder: false }
          if (delayMs > 0) {
            const timer = setTimeout(() => {
              this.#delayTimers.delete(timer)
              this.#stageWithChaos(topic, partition, pending)
              this.#checkIdle()
            }, delayMs)
            this.#delayTimers.add(timer)
          } else {
            this.#stageWithChaos(topic, partition, pending)
          }
        }
      }
    } finally {
      this.#producing--
      this.#checkIdle()
    }
  }

  async subscribe(options: SubscribeOptions): Promise<Subscription> {
    this.#assertOpen()
    if (typeof options.groupId !== 'string' || options.groupId === '') {
      throw new FlowkitError(ErrorCode.Config, 'subscribe: groupId must be a non-empty string')
    }
    if (!Array.isArray(options.topics) || options.topics.length === 0) {
      throw new FlowkitError(ErrorCode.Config, 'subscribe: topics must be a non-empty array')
    }
    if (typeof options.handler !== 'function') {
      throw new FlowkitError(ErrorCode.Config, 'subscribe: handler must be a function')
    }
    const topics = options.topics.map((name) => this.#topic(name))
    let group = this.#groups.get(options.groupId)
    if (!group) {
      group = { id: options.groupId, members: [], committed: new Map(), workers: new Map() }
      this.#groups.set(group.id, group)
    }
    if (options.fromLatest) {
      // A group without a position on a partition starts at its end (auto.offset.reset=latest).
      // The position is committed now so that a later owner resumes there too.
      for (const topic of topics) {
        topic.partitions.forEach((log, p) => {
          const key = partitionKey(topic.name, p)
          if (!group.committed.has(key) && !group.workers.has(key)) group.committed.set(key, log.records.length)
        })
      }
    }
    const member = new MemorySubscription(this.#internals, options, `${options.name ?? 'member'}-${++this.#memberSeq}`)
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
    if (chaos === null) {
      this.#chaos = null
      return
    }
    const rules = chaos.rules.map((rule, index): CompiledRule => {
      for (const knob of ['duplicate', 'reorder', 'drop'] as const) {
        const p = rule[knob]
        if (p !== undefined && !(p >= 0 && p <= 1)) {
          throw new FlowkitError(ErrorCode.Config, `chaos rule ${index}: ${knob} must be a probability in [0, 1]`)
        }
      }
      if (rule.delayMs !== undefined) {
        const [min, max] = rule.delayMs
        if (!(min >= 0 && max >= min)) {
          throw new FlowkitError(ErrorCode.Config, `chaos rule ${index}: delayMs must be [min, max] with 0 <= min <= max`)
        }
      }
      return { rule, random: createRandom((chaos.seed + Math.imul(index + 1, 0x9e3779b9)) | 0) }
    })
    this.#chaos = { rules, reorderWindowMs: chaos.reorderWindowMs ?? 50 }
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
    return (this.#topics.get(topic)?.log ?? []).map(copyMessage)
  }

  /** The group's committed offset (next offset to read) for a partition; undefined if none. */
  committed(groupId: string, topic: string, partition: number): number | undefined {
    return this.#groups.get(groupId)?.committed.get(partitionKey(topic, partition))
  }

  /** Current partition assignment of a group, one entry per (member, topic). */
  assignments(groupId: string): AssignmentInfo[] {
    const group = this.#groups.get(groupId)
    if (!group) return []
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
    const topic: TopicState = {
      name,
      log: [],
      partitions: Array.from({ length: count }, () => ({
        records: [],
        listeners: new Set<Signal>(),
        staged: [],
        stagedTimer: null,
        held: null,
        heldTimer: null,
      })),
    }
    this.#topics.set(name, topic)
    return topic
  }

  #stageWithChaos(topic: TopicState, partition: number, pending: Pending): void {
    if (this.#closed) return
    const compiled = this.#chaos?.rules.find((r) => topic.name.startsWith(r.rule.topicPrefix))
    if (!compiled) {
      this.#stage(topic, partition, pending, 0)
      return
    }
    const { rule, random } = compiled
    // Always four draws per record, so the sequence depends only on the seed and produce order.
    const drop = random.chance(rule.drop ?? 0)
    const duplicate = random.chance(rule.duplicate ?? 0)
    const reorder = random.chance(rule.reorder ?? 0)
    const delayDraw = random.next()
    if (drop) {
      this.#logger?.debug?.({ event: 'bus.chaos_drop', topic: topic.name, partition }, 'chaos dropped a record')
      return
    }
    const [min, max] = rule.delayMs ?? [0, 0]
    const delayMs = min + Math.floor(delayDraw * (max - min + 1))
    this.#stage(topic, partition, { ...pending, reorder }, delayMs)
    if (duplicate) this.#stage(topic, partition, { ...pending, headers: { ...pending.headers }, reorder: false }, delayMs)
  }

  #stage(topic: TopicState, partition: number, pending: Pending, delayMs: number): void {
    const part = topic.partitions[partition]!
    if (delayMs <= 0 && part.staged.length === 0) {
      this.#admit(topic, partition, pending)
      return
    }
    part.staged.push({ pending, readyAt: performance.now() + delayMs })
    this.#drainStaged(topic, partition)
  }

  #drainStaged(topic: TopicState, partition: number): void {
    const part = topic.partitions[partition]!
    if (part.stagedTimer) {
      clearTimeout(part.stagedTimer)
      part.stagedTimer = null
    }
    const now = performance.now()
    while (part.staged.length > 0) {
      const head = part.staged[0]!
      if (head.readyAt > now) {
        part.stagedTimer = setTimeout(
          () => {
            part.stagedTimer = null
            this.#drainStaged(topic, partition)
          },
          Math.max(1, Math.ceil(head.readyAt - now)),
        )
        return
      }
      part.staged.shift()
      this.#admit(topic, partition, head.pending)
    }
    this.#checkIdle()
  }

  /** Last step before the log: applies a pending reorder swap. */
  #admit(topic: TopicState, partition: number, pending: Pending): void {
    const part = topic.partitions[partition]!
    const held = part.held
    if (held) {
      part.held = null
      if (part.heldTimer) clearTimeout(part.heldTimer)
      part.heldTimer = null
      this.#append(topic, partition, pending)
      this.#append(topic, partition, held)
      return
    }
    if (pending.reorder) {
      part.held = pending
      part.heldTimer = setTimeout(() => {
        part.heldTimer = null
        const late = part.held
        part.held = null
        if (late) this.#append(topic, partition, late)
        this.#checkIdle()
      }, this.#chaos?.reorderWindowMs ?? 50)
      return
    }
    this.#append(topic, partition, pending)
  }

  #append(topic: TopicState, partition: number, pending: Pending): void {
    const part = topic.partitions[partition]!
    const message: BusMessage = {
      topic: topic.name,
      key: pending.key,
      value: pending.value,
      headers: pending.headers,
      partition,
      offset: part.records.length,
      timestamp: pending.timestamp,
    }
    part.records.push(message)
    topic.log.push(message)
    for (const signal of part.listeners) signal.notify()
  }

  /** Range assignor per topic over the members subscribed to it, in join order. */
  #rebalance(group: GroupState): void {
    const desired = new Map<MemorySubscription, Set<string>>()
    for (const member of group.members) desired.set(member, new Set())
    const topicNames = new Set(group.members.flatMap((m) => m.topics))
    for (const name of topicNames) {
      const topic = this.#topics.get(name)
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
        const topic = this.#topics.get(name)!
        const previous = group.workers.get(key)
        const worker = new PartitionWorker(this.#internals, member, group, topic, Number(p), previous?.done)
        member.workers.set(key, worker)
        group.workers.set(key, worker)
      }
    }
    this.#logger?.debug?.({ event: 'bus.rebalanced', groupId: group.id, assignments: this.assignments(group.id) }, 'group rebalanced')
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
    let discarded = 0
    for (const topic of this.#topics.values()) {
      for (const part of topic.partitions) {
        if (part.stagedTimer) clearTimeout(part.stagedTimer)
        if (part.heldTimer) clearTimeout(part.heldTimer)
        discarded += part.staged.length + (part.held ? 1 : 0)
        part.staged = []
        part.stagedTimer = null
        part.held = null
        part.heldTimer = null
      }
    }
    if (discarded > 0) this.#logger?.debug?.({ event: 'bus.closed_discarded', discarded }, 'delayed records discarded at close')
    const members = [...this.#groups.values()].flatMap((g) => [...g.members])
    await Promise.all(members.map((m) => m.close()))
    for (const done of [...this.#idleWaiters]) done()
  }

  #isIdle(): boolean {
    if (this.#producing > 0 || this.#delayTimers.size > 0) return false
    for (const topic of this.#topics.values()) {
      for (const part of topic.partitions) {
        if (part.staged.length > 0 || part.held) return false
      }
    }
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
