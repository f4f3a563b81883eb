/**
 * Partition worker of the Kafka bus: owns one partition for one subscription and hands the
 * records the stream buffered for it to the handler, one at a time (per-record `handler`) or every
 * buffered record up to `maxBatch` (`batchHandler`), in offset order. When the handler resolves,
 * the host marks the last offset + 1 for commit; a throwing handler gets the same record (the same
 * first offset, possibly a grown batch) again after a capped exponential backoff.
 */
import type { BusBatchHandler, BusHandler, BusMessage } from '../../ports/bus.ts'
import type { Logger } from '../../log.ts'
import { Signal } from '../../util/signal.ts'
import { HANDLER_BACKOFF_MAX_MS, HANDLER_BACKOFF_START_MS, backoffMs, partitionKey } from './bus-settings.ts'
import type { StringMessage } from './bus-settings.ts'

export interface Buffered {
  message: BusMessage
  leaderEpoch: number
}

/** Internal surface a partition worker needs from its subscription. */
export interface WorkerHost {
  readonly handler: BusHandler | null
  readonly batchHandler: BusBatchHandler | null
  readonly maxBatch: number
  readonly paused: boolean
  readonly log: Logger
  readonly groupId: string
  onDequeued(count: number): void
  /** `last` (the last record of what was handled) is done: mark its offset + 1 for commit. */
  onHandled(worker: PartitionWorker, last: Buffered): void
}

/** A record as the stream delivered it → what the worker buffers. */
export function toBuffered(message: StringMessage): Buffered {
  const headers: Record<string, string> = {}
  for (const [name, value] of message.headers) headers[name] = value ?? ''
  return {
    message: {
      topic: message.topic,
      key: message.key ?? null,
      value: message.value ?? '',
      headers,
      partition: message.partition,
      offset: Number(message.offset),
      timestamp: Number(message.timestamp),
    },
    leaderEpoch: typeof message.leaderEpoch === 'number' ? message.leaderEpoch : -1,
  }
}

function copyMessage(m: BusMessage): BusMessage {
  return { ...m, headers: { ...m.headers } }
}

export class PartitionWorker {
  readonly topic: string
  readonly partition: number
  readonly key: string
  readonly buffer: Buffered[] = []
  /** Next offset expected from the stream; records below it are re-reads and are dropped. */
  nextOffset: number | null = null
  /** Set when the partition was taken away by a rebalance: nothing more is committed for it. */
  revoked = false
  readonly done: Promise<void>
  #stopped = false
  readonly #host: WorkerHost
  readonly #signal = new Signal()
  #backoff: { timer: ReturnType<typeof setTimeout>; resolve: () => void } | null = null

  constructor(host: WorkerHost, topic: string, partition: number, previous: Promise<void> | undefined) {
    this.#host = host
    this.topic = topic
    this.partition = partition
    this.key = partitionKey(topic, partition)
    this.done = this.#run(previous)
  }

  get stopped(): boolean {
    return this.#stopped
  }

  push(entry: Buffered): void {
    this.buffer.push(entry)
    this.#signal.notify()
  }

  wake(): void {
    this.#signal.notify()
  }

  /** Drops the buffered records (returns how many). */
  clear(): number {
    const n = this.buffer.length
    this.buffer.length = 0
    return n
  }

  /** Stops after the in-flight handler (if any); a backoff wait is cut short. */
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

  async #run(previous: Promise<void> | undefined): Promise<void> {
    // A partition that comes back waits for its previous worker: never two handlers at once.
    await previous
    await Promise.resolve()
    try {
      while (!this.#stopped) {
        if (this.#host.paused || this.buffer.length === 0) {
          await this.#signal.wait()
          continue
        }
        const handled = await this.#deliver()
        if (handled === null) break
        // The buffer is only cleared (never reordered) behind the worker's back: on revocation.
        if (this.buffer[0] === handled[0]) {
          this.buffer.splice(0, handled.length)
          this.#host.onDequeued(handled.length)
        }
        this.#host.onHandled(this, handled[handled.length - 1]!)
        // A macrotask turn after each batch / every record: fetches and timers keep running.
        if (this.#host.batchHandler) await new Promise<void>((resolve) => setImmediate(resolve))
      }
    } catch (err) {
      // Only a bug in this adapter lands here; handler errors are retried in #deliver.
      this.#host.log.error('bus.kafka.worker_crashed', {
        groupId: this.#host.groupId,
        topic: this.topic,
        partition: this.partition,
        err: err instanceof Error ? err.message : String(err),
      })
    } finally {
      this.#stopped = true
      const dropped = this.clear()
      if (dropped > 0) this.#host.onDequeued(dropped)
    }
  }

  /**
   * Delivers the head of the buffer (one record, or a batch taken anew on every attempt) until the
   * handler succeeds; the buffered records it covered, or null when stopped before it did.
   */
  async #deliver(): Promise<Buffered[] | null> {
    const batchHandler = this.#host.batchHandler
    for (let attempt = 1; ; attempt++) {
      const entries = this.buffer.slice(0, batchHandler ? this.#host.maxBatch : 1)
      const first = entries[0]!.message
      try {
        if (batchHandler) await batchHandler(entries.map((b) => copyMessage(b.message)))
        else await this.#host.handler!(copyMessage(first))
        return entries
      } catch (err) {
        if (this.#stopped) return null
        const waitMs = backoffMs(attempt, HANDLER_BACKOFF_START_MS, HANDLER_BACKOFF_MAX_MS)
        this.#host.log.warn('bus.handler_failed', {
          groupId: this.#host.groupId,
          topic: this.topic,
          partition: this.partition,
          offset: first.offset,
          records: entries.length,
          attempt,
          retryInMs: waitMs,
          err: err instanceof Error ? err.message : String(err),
        })
        await new Promise<void>((resolve) => {
          this.#backoff = { timer: setTimeout(resolve, waitMs), resolve }
        })
        this.#backoff = null
        while (this.#host.paused && !this.#stopped) await this.#signal.wait()
        if (this.#stopped || this.buffer.length === 0) return null
      }
    }
  }
}
