/**
 * Ownership of tasks by partition (several coordinators sharing the load; docs/scaling.md).
 *
 * Every coordinator of a deployment joins one consumer group on `topicTasks`, a topic keyed by
 * task id. Kafka assigns its partitions among the live coordinators; a task belongs to the
 * coordinator that owns the partition of its id (murmur2 of the id, as the producer picks it), and
 * only that coordinator holds the task in memory and writes its journal. What reaches another
 * coordinator is sent on to the owner through the same topic:
 *   - status events a coordinator reads for a task it does not own (status topics are shared by
 *     the coordinators' group and keyed by `task:node`, so any coordinator may read them);
 *   - submissions (`createTask` on any coordinator writes the task, then asks the owner to adopt it);
 *   - cancel and adopt requests (from `cancelTask` on any coordinator and from the CLI).
 *
 * A record of the topic: `{ "op": "status", "task_id", "topic", "value" }` (a forwarded status
 * record, its original topic and value) or a control request (`{ "op": "cancel" | "adopt", … }`,
 * see control.ts).
 *
 * Assignment changes are applied one at a time, in order: partitions lost are flushed and their
 * tasks dropped; partitions gained have their active tasks loaded from the store (snapshot +
 * journal), claimed (see handover.ts) and resumed after the status topics are replayed.
 */
import { ErrorCode, FlowkitError } from '../errors.ts'
import type { Logger } from '../log.ts'
import type { Bus, BusMessage, BusRecord, Subscription, TopicPartition } from '../ports/bus.ts'
import { TASK_ID_PATTERN } from '../graph/types.ts'
import { partitionForKey } from '../util/murmur2.ts'
import { type ControlRequest, jsonObject, requestFrom } from './control.ts'

export interface OwnershipHooks {
  /** Partitions assigned to this coordinator: load, claim and resume their tasks. */
  acquire(partitions: ReadonlySet<number>): Promise<void>
  /** Partitions taken away: write what is pending for their tasks, then drop them from memory. */
  release(partitions: ReadonlySet<number>): Promise<void>
  /** Forwarded status records (original topic and value), in order; resolves once durable. */
  status(messages: BusMessage[]): Promise<void>
  /** A control request for a task of an owned partition. */
  control(req: ControlRequest): Promise<void>
}

export interface OwnershipOptions {
  bus: Bus
  topic: string
  partitions: number
  groupId: string
  instanceId?: string
  /** How long without a confirmation from the group before writes are held (ms). */
  confirmMs: number
  /**
   * Wall-clock ms, to compare with the bus's `confirmedAt` (itself wall-clock): a test clock must
   * not make a live member look unconfirmed. Default `Date.now`.
   */
  wallClock?: () => number
  log: Logger
  hooks: OwnershipHooks
}

/** `key`: the status record's own key (`task:node`: the coordinator's tracing finds the attempt by it). */
export type Forward = { op: 'status'; task_id: string; topic: string; value: string; key?: string; headers?: Record<string, string> }

/** A record of the owners' topic: a forwarded status record or a control request, or why it is neither (one JSON parse). */
export function parseOwnerRecord(value: string): { forward: Forward } | { request: ControlRequest } | string {
  const r = jsonObject(value)
  if (typeof r === 'string') return r
  if (r['op'] !== 'status') {
    const request = requestFrom(r)
    return typeof request === 'string' ? request : { request }
  }
  if (typeof r['task_id'] !== 'string' || !TASK_ID_PATTERN.test(r['task_id'])) return 'bad task_id'
  if (typeof r['topic'] !== 'string' || typeof r['value'] !== 'string') return 'bad topic or value'
  const out: Forward = { op: 'status', task_id: r['task_id'], topic: r['topic'], value: r['value'] }
  if (typeof r['key'] === 'string' && r['key'].length <= 1024) out.key = r['key']
  const h = r['headers']
  if (h !== null && typeof h === 'object' && Object.values(h).every((x) => typeof x === 'string')) out.headers = h as Record<string, string>
  return { forward: out }
}

export class Ownership {
  readonly #o: OwnershipOptions
  #count: number
  #owned = new Set<number>()
  #generation = -1
  #sub: Subscription | null = null
  /** Assignment changes, applied one after the other. */
  #chain: Promise<void> = Promise.resolve()
  #first: { promise: Promise<void>; resolve: () => void }
  #stopped = false
  #stopping = false
  /**
   * Partitions where another coordinator wrote a task this one thought it owned, with when that
   * was seen: until the group confirms this member again after that, it may be the stale owner
   * (a zombie) and loads nothing of them.
   */
  readonly #suspect = new Map<number, number>()
  /** Partitions lost whose tasks are being written and dropped (release in progress). */
  readonly #releasing = new Set<number>()
  /** Records sent on to owners (diagnostics). */
  forwarded = 0

  readonly #wall: () => number

  constructor(o: OwnershipOptions) {
    this.#o = o
    this.#wall = o.wallClock ?? Date.now
    this.#count = o.partitions
    let resolve!: () => void
    const promise = new Promise<void>((r) => {
      resolve = r
    })
    this.#first = { promise, resolve }
  }

  get generation(): number {
    return this.#generation
  }

  /** Partitions owned now (sorted). */
  get owned(): number[] {
    return [...this.#owned].sort((a, b) => a - b)
  }

  get partitionCount(): number {
    return this.#count
  }

  partitionOf(taskId: string): number {
    return partitionForKey(taskId, this.#count)
  }

  owns(taskId: string): boolean {
    return this.#owned.has(this.partitionOf(taskId))
  }

  /**
   * Whether this coordinator may still write the task: it owns it, or its partition was just
   * taken away and what was applied for it is being written before it is dropped (a cooperative
   * rebalance revokes a partition before giving it to another coordinator; should the new owner
   * claim the task first, the write is refused all the same).
   */
  writable(taskId: string): boolean {
    const p = this.partitionOf(taskId)
    return this.#owned.has(p) || this.#releasing.has(p)
  }

  /**
   * Whether the group confirmed this coordinator recently enough that no other one can have
   * taken its partitions (a paused process wakes up unconfirmed and holds its writes).
   */
  confirmed(): boolean {
    const at = this.#sub?.confirmedAt?.()
    return at === undefined || this.#wall() - at <= this.#o.confirmMs
  }

  /** Another coordinator wrote a task of ours: its partition is suspect until confirmed again. */
  suspect(taskId: string): void {
    this.#suspect.set(this.partitionOf(taskId), this.#wall())
  }

  #clear(taskId: string | undefined): boolean {
    if (taskId === undefined) return true
    const p = this.partitionOf(taskId)
    const since = this.#suspect.get(p)
    if (since === undefined) return true
    const at = this.#sub?.confirmedAt?.()
    if (at !== undefined && at <= since) return false
    this.#suspect.delete(p)
    return true
  }

  /**
   * Resolves once confirmed (and, for `taskId`, once its partition is no longer suspect); polls;
   * rejects with CLOSED when stopped.
   */
  async waitConfirmed(taskId?: string): Promise<void> {
    for (let i = 0; !this.confirmed() || !this.#clear(taskId); i++) {
      if (this.#stopped || this.#stopping) throw new FlowkitError(ErrorCode.Closed, 'ownership stopped')
      if (i % 50 === 0) this.#o.log.warn('coordinator.ownership_unconfirmed', { confirm_ms: this.#o.confirmMs })
      await new Promise((r) => setTimeout(r, 100))
    }
  }

  async start(): Promise<void> {
    const o = this.#o
    this.#stopped = false
    this.#stopping = false
    await o.bus.ensureTopics([{ name: o.topic, partitions: o.partitions }])
    this.#count = await o.bus.partitionCount(o.topic)
    if (this.#count !== o.partitions) o.log.info('coordinator.task_partitions', { topic: o.topic, partitions: this.#count, configured: o.partitions })
    this.#sub = await o.bus.subscribe({
      groupId: o.groupId,
      topics: [o.topic],
      name: 'coordinator-owners',
      assignor: 'cooperative',
      ...(o.instanceId === undefined ? {} : { instanceId: o.instanceId }),
      maxBatch: 1000,
      batchHandler: (msgs) => this.#batch(msgs),
      onAssignment: (assigned, generation) => this.#assigned(assigned, generation),
    })
  }

  /** Resolves after the first assignment has been applied (or after `timeoutMs`). */
  async ready(timeoutMs: number): Promise<boolean> {
    let timer: ReturnType<typeof setTimeout> | undefined
    const timeout = new Promise<false>((r) => {
      timer = setTimeout(() => r(false), timeoutMs)
    })
    try {
      return await Promise.race([this.#first.promise.then(() => true), timeout])
    } finally {
      clearTimeout(timer)
    }
  }

  /** Stops reading the owners' topic (a stop begins: what was read is written, then stop()). */
  pause(): void {
    this.#sub?.pause()
    // A stopping coordinator writes what it holds without waiting for a confirmation that may
    // never come (broker down): a write to a task another coordinator claimed is refused anyway.
    this.#stopping = true
  }

  /** Leaves the group (partitions go to the other coordinators); nothing is released here. */
  async stop(options: { wait?: boolean } = {}): Promise<void> {
    this.#stopped = true
    const sub = this.#sub
    this.#sub = null
    await sub?.close()
    if (options.wait !== false) await this.#chain
    this.#owned = new Set()
    this.#generation = -1
  }

  /**
   * Resolves once the records now in this coordinator's partitions of the owners' topic are handled
   * (forwarded reports, requests); at once on a bus that cannot tell.
   */
  drained(): Promise<void> {
    return this.#sub?.drained?.() ?? Promise.resolve()
  }

  /** Sends records to the owners of their tasks. */
  async forward(records: Array<{ taskId: string; value: string; headers?: Record<string, string> }>): Promise<void> {
    if (records.length === 0) return
    this.forwarded += records.length
    const out: BusRecord[] = records.map((r) => ({ topic: this.#o.topic, key: r.taskId, value: r.value, ...(r.headers === undefined ? {} : { headers: r.headers }) }))
    await this.#o.bus.produce(out)
  }

  /** Forwards a status record this coordinator read for a task it does not own. */
  static statusRecord(taskId: string, m: BusMessage): { taskId: string; value: string } {
    const f: Forward = { op: 'status', task_id: taskId, topic: m.topic, value: m.value }
    if (m.key !== null) f.key = m.key
    if (m.headers !== undefined && Object.keys(m.headers).length > 0) f.headers = m.headers
    return { taskId, value: JSON.stringify(f) }
  }

  async #refreshCount(): Promise<void> {
    const n = await this.#o.bus.partitionCount(this.#o.topic)
    if (n !== this.#count) this.#o.log.warn('coordinator.task_partitions_changed', { topic: this.#o.topic, from: this.#count, to: n })
    this.#count = n
  }

  #assigned(assigned: TopicPartition[], generation: number): void {
    const next = new Set(assigned.filter((a) => a.topic === this.#o.topic).map((a) => a.partition))
    const lost = new Set([...this.#owned].filter((p) => !next.has(p)))
    const gained = new Set([...next].filter((p) => !this.#owned.has(p)))
    // At once: from now on events of lost partitions are forwarded, those of gained ones applied.
    this.#owned = next
    this.#generation = generation
    this.#suspect.clear()
    this.#o.log.info('coordinator.assignment', { generation, owned: [...next].sort((a, b) => a - b), lost: [...lost], gained: [...gained] })
    for (const p of lost) this.#releasing.add(p)
    this.#chain = this.#chain.then(async () => {
      if (lost.size > 0) await this.#o.hooks.release(lost).catch((err: unknown) => this.#o.log.error('coordinator.release_failed', { error: String(err) }))
      for (const p of lost) this.#releasing.delete(p)
      if (gained.size > 0) await this.#acquire(gained)
      this.#first.resolve()
    })
  }

  async #acquire(gained: Set<number>): Promise<void> {
    for (let attempt = 1; !this.#stopped; attempt++) {
      const still = new Set([...gained].filter((p) => this.#owned.has(p)))
      if (still.size === 0) return
      try {
        await this.#o.hooks.acquire(still)
        return
      } catch (err) {
        this.#o.log.warn('coordinator.acquire_retry', { attempt, partitions: [...still], error: String(err) })
        await new Promise((r) => setTimeout(r, Math.min(2000, 50 * 2 ** attempt)))
      }
    }
  }

  /** Records of the owners' topic, in order: status runs go to the intake, requests one by one. */
  async #batch(msgs: BusMessage[]): Promise<void> {
    // A record keyed to another partition than ours says the topic's partition count changed.
    if (msgs.some((m) => m.key !== null && this.partitionOf(m.key) !== m.partition)) await this.#refreshCount()
    let run: BusMessage[] = []
    const flushRun = async (): Promise<void> => {
      if (run.length === 0) return
      const r = run
      run = []
      await this.#o.hooks.status(r)
    }
    for (const m of msgs) {
      const rec = parseOwnerRecord(m.value)
      if (typeof rec === 'string') {
        this.#o.log.warn('coordinator.owner_record_malformed', { partition: m.partition, offset: m.offset, error: rec })
        continue
      }
      if ('forward' in rec) {
        const f = rec.forward
        run.push({ ...m, topic: f.topic, key: f.key ?? f.task_id, value: f.value, headers: f.headers ?? {} })
        continue
      }
      await flushRun()
      const req = rec.request
      if (!this.owns(req.task_id)) {
        // Moved on since it was sent: send it on to the current owner.
        await this.forward([{ taskId: req.task_id, value: m.value }])
        continue
      }
      await this.#o.hooks.control(req)
    }
    await flushRun()
  }
}
