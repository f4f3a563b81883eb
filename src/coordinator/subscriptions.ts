/**
 * The coordinator's bus subscriptions: worker announces, TASK_DISCOVER replies, and one status
 * subscription per worker type (created on first need, once, even when asked concurrently).
 */
import { groupInstanceId } from '../util/ids.ts'
import type { CoordinatorConfig } from '../config.ts'
import { topicFor } from '../config.ts'
import { randomUUID } from 'node:crypto'
import type { Bus, BusHandler, BusMessage, Subscription } from '../ports/bus.ts'

export class Subscriptions {
  readonly #bus: Bus
  readonly #config: CoordinatorConfig
  readonly #statusBatch: (msgs: readonly BusMessage[]) => Promise<void>
  readonly #subs = new Map<string, Subscription>()
  readonly #pending = new Map<string, Promise<void>>()
  /** Per worker type: the status partitions this coordinator owns, and how many there are. */
  readonly #statusShare = new Map<string, { owned: number; total: number }>()

  constructor(bus: Bus, config: CoordinatorConfig, statusBatch: (msgs: readonly BusMessage[]) => Promise<void>) {
    this.#bus = bus
    this.#config = config
    this.#statusBatch = statusBatch
  }

  /**
   * Static group membership (Kafka `group.instance.id`) when the coordinator has a stable
   * `coordinatorId`: a restarted coordinator takes its partitions back at once instead of after
   * its dead predecessor's session times out.
   */
  instance(name: string): { instanceId?: string } {
    const id = this.#config.coordinatorId
    return id ? { instanceId: groupInstanceId(`${id}.${name}`) } : {}
  }

  set(name: string, sub: Subscription): void {
    this.#subs.set(name, sub)
  }

  /**
   * Other members of the group hold some of the status partitions of `type`: reports about this
   * coordinator's tasks may wait in partitions a dead member still holds until its session ends.
   */
  sharesStatus(type: string): boolean {
    const s = this.#statusShare.get(type)
    return s !== undefined && s.owned < s.total
  }

  /** The status subscription of a worker type (undefined before the first task of that type). */
  get(type: string): Subscription | undefined {
    return this.#subs.get(type)
  }

  all(): Subscription[] {
    return [...this.#subs.values()]
  }

  async closeAll(): Promise<void> {
    await Promise.all(this.all().map((s) => s.close()))
    this.#subs.clear()
    this.#statusShare.clear()
  }

  /** The subscriptions every coordinator has from its start: worker announces, replies, control requests. */
  async startFixed(h: { announce: BusHandler; replies: BusHandler; control: BusHandler }): Promise<void> {
    const c = this.#config
    await this.#bus.ensureTopics([
      { name: c.topicQuery, partitions: c.topicPartitions },
      { name: c.topicReply, partitions: c.topicPartitions },
      { name: c.topicWorkerAnnounce, partitions: 1 },
      { name: c.topicControl, partitions: 1 },
    ])
    // Every coordinator reads every announce and every reply (its own group): the coordinators
    // share tasks (ownership.ts), and each needs to know the live workers and hear the replies to
    // the questions it asked. Static members too, with a `coordinatorId`: a restart after a crash
    // waits for none of its dead predecessor's sessions (its start awaits these groups).
    const own = c.coordinatorId ?? randomUUID()
    this.set('__announce__', await this.#bus.subscribe({ groupId: `${c.groupId}.announce.${own}`, topics: [c.topicWorkerAnnounce], fromLatest: true, name: 'coordinator-announce', handler: h.announce, ...this.instance('announce') }))
    this.set('__replies__', await this.#bus.subscribe({ groupId: `${c.groupId}.replies.${own}`, topics: [c.topicReply], fromLatest: true, name: 'coordinator-replies', handler: h.replies, ...this.instance('replies') }))
    // The older control topic: every coordinator reads every request, the owner applies it.
    this.set('__control__', await this.#bus.subscribe({ groupId: `${c.groupId}.control.${own}`, topics: [c.topicControl], fromLatest: true, name: 'coordinator-control', handler: h.control, ...this.instance('control') }))
  }

  /** Whether the status topic of `type` is subscribed already (nothing to wait for). */
  hasStatus(type: string): boolean {
    return this.#subs.has(type)
  }

  /** Subscribes to the status topic of `type` (topics created first) unless already done. */
  async ensureStatus(type: string): Promise<void> {
    if (this.#subs.has(type)) return
    const pending = this.#pending.get(type)
    if (pending) return pending
    const p = (async () => {
      const c = this.#config
      const statusTopic = topicFor(c.topicStatusFmt, type)
      await this.#bus.ensureTopics([
        { name: statusTopic, partitions: c.topicPartitions },
        { name: topicFor(c.topicCmdFmt, type), partitions: c.topicPartitions },
        { name: c.topicSignals, partitions: c.topicPartitions },
      ])
      const total = await this.#bus.partitionCount(statusTopic)
      const sub = await this.#bus.subscribe({
        groupId: `${c.groupId}.status.${type}`,
        topics: [statusTopic],
        name: `coordinator-status-${type}`,
        batchHandler: this.#statusBatch,
        maxBatch: 1000,
        onAssignment: (assigned) => {
          this.#statusShare.set(type, { owned: assigned.filter((p) => p.topic === statusTopic).length, total })
        },
        ...this.instance(`status.${type}`),
      })
      this.#subs.set(type, sub)
    })()
    this.#pending.set(type, p)
    try {
      await p
    } finally {
      this.#pending.delete(type)
    }
  }
}
