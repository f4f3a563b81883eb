/**
 * Outbox dispatcher. Commands are written to the store inside the journal entry of the flush that
 * decided them (with the state change, atomically), and handed here only once that entry is
 * durable; a crash before they are sent is repaired from the state (see recovery.ts). So the
 * dispatcher sends from memory: everything queued goes out in one `produce(records[])` per round,
 * in order. A failed send is retried with capped exponential backoff and jitter; after the
 * maximum attempts the message is parked in the store as a dead letter (visible, and requeueable
 * by an operator), and its owner is told (a START nobody can receive fails that attempt).
 * Dead letters an operator requeued are picked up from the store by a slow poll.
 */
import { type Logger, redactText } from '../log.ts'
import { type Bus, type BusRecord, encodedLater } from '../ports/bus.ts'
import type { Clock } from '../ports/clock.ts'
import type { OutboxEnqueue, Store } from '../ports/store.ts'
import { FlowkitError, errorMessage, failureLevel } from '../errors.ts'
import { QUIET_ABORT, unlessAborted } from '../util/abort.ts'
import { RecentSet } from '../util/recent.ts'

export interface OutboxOptions {
  maxAttempts: number
  backoffMinMs: number
  backoffMaxMs: number
  tickMs: number
  /** A claimed (requeued) row is invisible to other dispatchers this long. */
  claimMs?: number
  batchSize?: number
  /** Random source in [0, 1) for jitter (injectable for tests). */
  random?: () => number
  /** Headers of a message's record (observability: its trace context), or undefined for none. */
  headers?: (msg: OutgoingMessage) => Record<string, string> | undefined
}

/** Backoff before attempt `attempts + 1`: min * 2^(attempts-1), capped, with ±20% jitter under the cap. */
export function outboxBackoffMs(attempts: number, min: number, max: number, random: () => number): number {
  const base = Math.min(max, min * 2 ** Math.max(0, attempts - 1))
  const jittered = base * (0.8 + 0.4 * random())
  return Math.round(Math.min(max, jittered))
}

/** A message to send; `onDead` is called when it is parked as a dead letter. */
/** A message to send: its text (`value`), or its object (`decoded`), whose text is made if needed. */
export interface OutgoingMessage extends Omit<OutboxEnqueue, 'value' | 'task_id'> {
  value?: string
  /** The attempt it concerns (read by the `headers` option; never stored). */
  epoch?: number
  /** The task it concerns (read by the `headers` option; stored with it when it is parked). */
  task_id?: string
  /** Its node's message key when `key` is another (read by the `headers` option; never stored). */
  node_key?: string
  /** The object `value` is the text of (BusRecord.decoded: a bus in memory delivers it; never stored). */
  decoded?: object
  onDead?: (error: string) => void
  /** Called once the message is sent, or parked, or dropped as a duplicate (it needs no more sending). */
  onDone?: () => void
}

interface Queued {
  msg: OutgoingMessage
  id: string
  attempts: number
  dueAt: number
}

const RECENT_MAX = 20_000
/** A failure the bus says may pass (broker or network down): no use splitting the round. */
function transient(err: unknown): boolean {
  return err instanceof FlowkitError && err.retryable
}

/** Longest wait for the last send when the dispatcher stops (real time). */
const STOP_SEND_MS = 5_000

/** What identifies one logical message (the store derives the dead letter's id from the same three). */
function recentKey(m: Pick<OutboxEnqueue, 'topic' | 'key' | 'dedup_id'>): string {
  return `${m.topic}\u0000${m.key ?? '\u0001'}\u0000${m.dedup_id}`
}

export class OutboxDispatcher {
  readonly #store: Store
  readonly #bus: Bus
  readonly #clock: Clock
  readonly #log: Logger
  readonly #opts: Required<OutboxOptions>
  #queue: Queued[] = []
  /** Ids sent (or queued) recently, so the same logical message is not sent twice. */
  readonly #recent = new RecentSet<string>(RECENT_MAX)
  #running = false
  #loop: Promise<void> | null = null
  #wake: (() => void) | null = null
  #stop = new AbortController()
  #lastPoll = 0
  /** Produce calls and records sent (for benchmarks and diagnostics). */
  sends = 0
  sentRecords = 0

  constructor(store: Store, bus: Bus, clock: Clock, log: Logger, options: OutboxOptions) {
    this.#store = store
    this.#bus = bus
    this.#clock = clock
    this.#log = log
    this.#opts = { claimMs: 30_000, batchSize: 500, random: Math.random, headers: () => undefined, ...options }
  }

  /** Messages waiting to be sent (in memory). */
  get backlog(): number {
    return this.#queue.length
  }

  /** Queues messages (in order); a message whose (topic, key, dedup_id) was queued recently is dropped. */
  send(msgs: readonly OutgoingMessage[]): void {
    const now = this.#clock.now()
    for (const msg of msgs) {
      const id = recentKey(msg)
      if (this.#recent.has(id)) {
        this.#log.debug('outbox.duplicate', { topic: msg.topic, key: msg.key, dedup_id: msg.dedup_id })
        msg.onDone?.()
        continue
      }
      this.#remember(id)
      this.#queue.push({ msg, id, attempts: 0, dueAt: now })
    }
    this.kick()
  }

  /** One message; false when the same (topic, key, dedup_id) was queued recently. */
  async enqueue(row: OutboxEnqueue): Promise<boolean> {
    const id = recentKey(row)
    if (this.#recent.has(id)) return false
    const { task_id, ...rest } = row
    this.send([task_id == null ? rest : { ...rest, task_id }])
    return true
  }

  #remember(id: string): void {
    this.#recent.add(id)
  }

  kick(): void {
    this.#wake?.()
  }

  start(): void {
    if (this.#running) return
    this.#running = true
    this.#stop = new AbortController()
    this.#loop = this.#run()
  }

  /** Stops after one last attempt to send what is queued (or dropping it: `discard`, a simulated crash). */
  async stop(options: { discard?: boolean } = {}): Promise<void> {
    if (options.discard) this.#queue = []
    if (!this.#running) return
    this.#running = false
    this.#stop.abort(QUIET_ABORT)
    this.#wake?.()
    await this.#loop
    this.#loop = null
    if (this.#queue.length > 0 && !options.discard) {
      // One last attempt, bounded: a broken broker or topic does not hold a shutdown. What is not
      // sent is re-issued from the state by the next coordinator (see recovery.ts).
      let timer: ReturnType<typeof setTimeout> | undefined
      await Promise.race([this.#sendDue(true).catch(() => undefined), new Promise((r) => (timer = setTimeout(r, STOP_SEND_MS)))])
      clearTimeout(timer)
    }
  }

  /** Sends every due message in one produce; failures go back to the queue with a backoff. */
  async #sendDue(force = false): Promise<number> {
    const now = this.#clock.now()
    const due: Queued[] = []
    const later: Queued[] = []
    for (const q of this.#queue) (force || q.dueAt <= now) && due.length < this.#opts.batchSize ? due.push(q) : later.push(q)
    if (due.length === 0) return 0
    this.#queue = later
    try {
      this.sends++
      await this.#produce(due)
      this.#sent(due)
      return due.length
    } catch (err) {
      return this.#isolate(due, err, 0)
    }
  }

  /**
   * A failed round is split so that one bad part does not hold the rest back: by topic first (a
   * broken topic), then, for a refusal that is not transient (a record the broker will never
   * take), record by record. Order per key is kept: a key lives in one topic, and a split sends
   * the records of one topic in order of the queue. Only what fails again backs off.
   */
  async #isolate(due: Queued[], err: unknown, depth: number): Promise<number> {
    const topics = new Set(due.map((q) => q.msg.topic))
    let groups: Queued[][] = []
    if (topics.size > 1) groups = [...topics].map((t) => due.filter((q) => q.msg.topic === t))
    else if (due.length > 1 && !transient(err)) groups = due.map((q) => [q])
    if (groups.length <= 1 || depth > 1 || this.#stop.signal.aborted) {
      await this.#failed(due, errorMessage(err))
      return 0
    }
    let sent = 0
    if (groups.every((g) => g.length === 1)) {
      // One record at a time, in order (a key's records stay in order).
      for (const g of groups) sent += await this.#sendGroup(g, depth)
      return sent
    }
    const counts = await Promise.all(groups.map((g) => this.#sendGroup(g, depth)))
    for (const n of counts) sent += n
    return sent
  }

  async #sendGroup(g: Queued[], depth: number): Promise<number> {
    try {
      this.sends++
      await this.#produce(g)
      this.#sent(g)
      return g.length
    } catch (err) {
      return this.#isolate(g, err, depth + 1)
    }
  }

  /** One produce; while running, a stop does not wait for it (a hung broker call). */
  #produce(qs: readonly Queued[]): Promise<void> {
    return this.#untilStop(
      this.#bus.produce(
        qs.map((q) => {
          const m = q.msg
          const headers = this.#opts.headers(m)
          // With its object, its text is made only if the bus reads it (a memory bus does not).
          const r: BusRecord = m.decoded !== undefined ? encodedLater(m.topic, m.key, m.decoded) : { topic: m.topic, key: m.key, value: textOf(m) }
          if (headers !== undefined) r.headers = headers
          return r
        }),
      ),
    )
  }

  #untilStop(p: Promise<void>): Promise<void> {
    const signal = this.#stop.signal
    if (!this.#running || signal.aborted) return p
    return unlessAborted(p, signal, () => new Error('outbox stopping'))
  }

  #sent(qs: readonly Queued[]): void {
    this.sentRecords += qs.length
    this.#log.debug('outbox.sent', { records: qs.length })
    for (const q of qs) q.msg.onDone?.()
  }

  /** A failed send: back to the head of the queue with a backoff, or parked after the last attempt. */
  async #failed(due: readonly Queued[], error: string): Promise<void> {
    const back: Queued[] = []
    for (const q of due) {
      q.attempts++
      if (q.attempts >= this.#opts.maxAttempts) {
        await this.#park(q, error)
      } else {
        q.dueAt = this.#clock.now() + outboxBackoffMs(q.attempts, this.#opts.backoffMinMs, this.#opts.backoffMaxMs, this.#opts.random)
        back.push(q)
      }
    }
    const first = back[0]
    if (first) this.#log.warn('outbox.retry', { records: back.length, attempts: first.attempts, delay_ms: first.dueAt - this.#clock.now(), error })
    // Keep the order: what failed goes before what was queued meanwhile.
    this.#queue = [...back, ...this.#queue]
  }

  async #park(q: Queued, error: string): Promise<void> {
    const m = q.msg
    this.#log.error('outbox.failed', { topic: m.topic, key: m.key, dedup_id: m.dedup_id, attempts: q.attempts, error })
    for (let i = 0; ; i++) {
      try {
        await this.#store.outboxEnqueue({ topic: m.topic, key: m.key, value: textOf(m), dedup_id: m.dedup_id, task_id: m.task_id ?? null }, this.#clock.now(), { attempts: q.attempts, error })
        break
      } catch (err) {
        if (i >= 5 || !this.#running) {
          this.#log.error('outbox.park_failed', { topic: m.topic, key: m.key, dedup_id: m.dedup_id, error: errorMessage(err) })
          break
        }
        await this.#clock.sleep(200 * 2 ** i).catch(() => undefined)
      }
    }
    m.onDead?.(error)
    m.onDone?.()
  }

  /** Requeued dead letters in the store: sent again, marked sent, retried or parked again. */
  async #pollStore(): Promise<void> {
    const now = this.#clock.now()
    const rows = await this.#store.outboxClaimDue(now, 100, now + this.#opts.claimMs)
    for (const row of rows) {
      // A stop does not wait for the rest of the claimed rows: their claim expires, they are
      // picked up again by the next dispatcher.
      if (!this.#running) break
      try {
        await this.#untilStop(this.#bus.produce([{ topic: row.topic, key: row.key, value: row.value }]))
        await this.#store.outboxMarkSent(row.id, this.#clock.now())
        this.#log.info('outbox.sent', { topic: row.topic, key: row.key, dedup_id: row.dedup_id, attempts: row.attempts + 1 })
      } catch (err) {
        const attempts = row.attempts + 1
        // Kept in the store and shown by `flowkit dlq ls` and the dashboard: secrets masked.
        const error = redactText(errorMessage(err))
        if (attempts >= this.#opts.maxAttempts) {
          await this.#store.outboxMarkFailed(row.id, attempts, error, this.#clock.now())
          this.#log.error('outbox.failed', { topic: row.topic, key: row.key, dedup_id: row.dedup_id, attempts, error })
        } else {
          const delay = outboxBackoffMs(attempts, this.#opts.backoffMinMs, this.#opts.backoffMaxMs, this.#opts.random)
          await this.#store.outboxMarkRetry(row.id, attempts, this.#clock.now() + delay, error, this.#clock.now())
          // (As a queued command's retry: logged and counted. A requeued dead letter retried silently.)
          this.#log.warn('outbox.retry', { records: 1, topic: row.topic, key: row.key, dedup_id: row.dedup_id, attempts, delay_ms: delay, error })
        }
      }
    }
  }

  /** Polls the store for requeued dead letters now (an operator just requeued one). */
  pollSoon(): void {
    this.#lastPoll = 0
    this.kick()
  }

  async #run(): Promise<void> {
    const pollEvery = Math.max(1000, this.#opts.tickMs * 4)
    while (this.#running) {
      try {
        const n = await this.#sendDue()
        if (n > 0 && this.#queue.length > 0) continue
        const now = this.#clock.now()
        if (now - this.#lastPoll >= pollEvery) {
          this.#lastPoll = now
          await this.#pollStore()
        }
      } catch (err) {
        // Tried again at the next tick: a brief store outage is a warning.
        this.#log[failureLevel(err)]('outbox.dispatch_error', { error: errorMessage(err) })
      }
      if (!this.#running) break
      const now = this.#clock.now()
      const next = this.#queue.reduce((m, q) => Math.min(m, q.dueAt), Number.POSITIVE_INFINITY)
      if (next <= now) continue
      const waitMs = Math.max(1, Math.min(next - now, this.#opts.tickMs, pollEvery))
      const tick = new AbortController()
      const onStop = (): void => tick.abort(QUIET_ABORT)
      this.#stop.signal.addEventListener('abort', onStop, { once: true })
      await new Promise<void>((resolve) => {
        this.#wake = resolve
        this.#clock.sleep(waitMs, tick.signal).then(resolve, resolve)
      })
      tick.abort(QUIET_ABORT)
      this.#stop.signal.removeEventListener('abort', onStop)
      this.#wake = null
    }
  }
}

/** The text of a message: its `value`, else the JSON of its object. */
function textOf(m: OutgoingMessage): string {
  return m.value ?? JSON.stringify(m.decoded ?? null)
}
