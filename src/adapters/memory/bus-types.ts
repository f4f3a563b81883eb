/**
 * Types of the in-memory Bus (see bus.ts): its public options and test-knob types, and the
 * internal state shared by its modules (topics, partitions, groups).
 */
import { type BusMessage, type BusRecord, TextLater } from '../../ports/bus.ts'
import type { Clock } from '../../ports/clock.ts'
import type { Signal } from '../../util/signal.ts'

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

/**
 * How many records a partition keeps (Kafka's retention, by count). A record goes once it is older
 * than the partition's last `records`, and every group subscribed to its topic has consumed it; or
 * regardless, once the partition holds more than `maxRecords` (a group behind then resumes at the
 * oldest record kept, as Kafka's `auto.offset.reset=earliest` does).
 */
export interface MemoryRetention {
  /** Records kept in any case (for groups that subscribe later, and `records()`). Default 1,000. */
  records?: number
  /** Most records a partition holds, consumed or not. Default 250,000. */
  maxRecords?: number
}

export interface MemoryBusOptions {
  /** Partitions of a topic created implicitly (produce/subscribe) or without a count. Default 3. */
  defaultPartitions?: number
  /** Records kept per partition (see MemoryRetention); the log is not kept whole for ever. */
  retention?: MemoryRetention
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

// ---- Internal state ---------------------------------------------------------------------------

/** A record on its way to the log (after the interceptor, before chaos staging). */
export interface Pending {
  key: string | null
  /** The record's text, or (`later`) the record that makes it on first read (ports/bus.ts encodedLater). */
  value: string
  later: (BusRecord & TextLater) | undefined
  decoded: object | undefined
  headers: Record<string, string>
  timestamp: number
  reorder: boolean
}

export interface PartitionState {
  /** The records kept: `records[i]` has offset `base + i`. */
  records: BusMessage[]
  /** Offset of `records[0]` (records before it were dropped by retention). */
  base: number
  /** Workers to wake when a record is appended. */
  readonly listeners: Set<{ notify(): void }>
  /** FIFO of records waiting for their chaos delay; later records queue behind (order kept). */
  staged: Array<{ pending: Pending; readyAt: number }>
  stagedTimer: ReturnType<typeof setTimeout> | null
  /** Record held back by `reorder` until the next record of the partition overtakes it. */
  held: Pending | null
  heldTimer: ReturnType<typeof setTimeout> | null
}

export interface TopicState {
  readonly name: string
  readonly partitions: PartitionState[]
  /** The records kept, in append order across partitions (some may have been dropped since: see `dropped`). */
  log: BusMessage[]
  /** Records of `log` dropped by retention since it was last rebuilt. */
  dropped: number
}

/** The offset the next record of the partition gets. */
export function endOffset(p: PartitionState): number {
  return p.base + p.records.length
}

export function newPartitionState(): PartitionState {
  return { records: [], base: 0, listeners: new Set<Signal>(), staged: [], stagedTimer: null, held: null, heldTimer: null }
}

export function partitionKey(topic: string, partition: number): string {
  return `${topic}\u0000${partition}`
}

export function copyMessage(m: BusMessage): BusMessage {
  // A message whose text is made on first read is copied by its class (a spread has no `value`).
  return m instanceof LaterMessage ? m.copy() : { ...m, headers: { ...m.headers } }
}

/** A message whose `value` is read from `source` (a record made by encodedLater) when it is read. */
class LaterMessage extends TextLater implements BusMessage {
  readonly #source: BusRecord
  readonly topic: string
  readonly key: string | null
  readonly headers: Record<string, string>
  readonly partition: number
  readonly offset: number
  readonly timestamp: number
  readonly decoded: object
  readonly lengthBound: number | undefined

  constructor(source: BusRecord & TextLater, topic: string, key: string | null, headers: Record<string, string>, partition: number, offset: number, timestamp: number) {
    super()
    this.#source = source
    this.topic = topic
    this.key = key
    this.headers = headers
    this.partition = partition
    this.offset = offset
    this.timestamp = timestamp
    this.decoded = source.decoded
    this.lengthBound = source.lengthBound
  }

  get value(): string {
    return this.#source.value
  }

  /** A copy with its own headers, its text still unmade. */
  copy(): LaterMessage {
    return new LaterMessage(this.#source as BusRecord & TextLater, this.topic, this.key, { ...this.headers }, this.partition, this.offset, this.timestamp)
  }
}

export function textLaterMessage(source: BusRecord & TextLater, topic: string, key: string | null, headers: Record<string, string>, partition: number, offset: number, timestamp: number): BusMessage {
  return new LaterMessage(source, topic, key, headers, partition, offset, timestamp)
}

/**
 * Counts work done without giving the event loop a turn. Once `limit` units were spent in one
 * macrotask, `spend` returns a promise that resolves on a later turn (setImmediate), so timers and
 * I/O of the process run between bursts of bus work. The count restarts at every macrotask.
 */
export class YieldBudget {
  readonly #limit: number
  #spent = 0
  #resetScheduled = false

  constructor(limit = 64) {
    this.#limit = limit
  }

  /** Units of work per macrotask turn. */
  get limit(): number {
    return this.#limit
  }

  /** Counts `units` of work; returns a promise to await when the budget is spent, else null. */
  spend(units = 1): Promise<void> | null {
    this.#spent += units
    if (!this.#resetScheduled) {
      this.#resetScheduled = true
      setImmediate(() => {
        this.#spent = 0
        this.#resetScheduled = false
      })
    }
    if (this.#spent < this.#limit) return null
    return new Promise<void>((resolve) => setImmediate(resolve))
  }
}
