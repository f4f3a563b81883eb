/**
 * The heartbeats of a worker's runs on one timer. A run is registered once TASK_ACCEPTED went out;
 * every `hbIntervalSec` after that (counted from its previous heartbeat) it sends TASK_HEARTBEAT
 * with a fresh lease deadline, until it ends, its slot is given back, or the worker is killed
 * (then the lease must be allowed to lapse).
 *
 * All runs share one interval, so a FIFO ordered by due time is enough (a run is always due after
 * every run registered or beaten before it): the timer sleeps until the head is due. A run that
 * ends leaves the list at once (a linked list: nothing of it is kept until its due time). The
 * timer is cancelled when no run is left (checked a turn later), so a stopped worker holds no timer.
 */
import { errorMessage } from '../errors.ts'
import { QUIET_ABORT } from '../util/abort.ts'
import type { ActiveRun, WorkerCore } from './core.ts'
import { emitStatus } from './status.ts'

interface Entry {
  readonly run: ActiveRun
  at: number
  n: number
  live: boolean
  /** The heartbeat being sent, if any. */
  sending: Promise<void> | null
  prev: Entry | null
  next: Entry | null
}

export class HeartbeatTicker {
  readonly #coreOf: () => WorkerCore
  /** Live entries by due time (all share one interval: appending keeps the order), a linked list. */
  #head: Entry | null = null
  #tail: Entry | null = null
  #live = 0
  /** Cancels the current timer loop's sleep; null when no loop runs. */
  #loop: AbortController | null = null
  /** A check for "no run left" is scheduled (#retire). */
  #idleCheck = false

  /** `core` is read when needed (the ticker is part of the core it serves). */
  constructor(core: () => WorkerCore) {
    this.#coreOf = core
  }

  get #core(): WorkerCore {
    return this.#coreOf()
  }

  /** Number of runs sending heartbeats. */
  get size(): number {
    return this.#live
  }

  /**
   * Starts the heartbeats of an accepted run. The returned function stops them (the run is let go
   * at once); it returns a promise that settles once a heartbeat being sent at that moment went
   * out (or failed), null when none is.
   */
  add(run: ActiveRun): () => Promise<void> | null {
    const entry: Entry = { run, at: this.#core.clock.now() + this.#every(), n: 0, live: true, sending: null, prev: null, next: null }
    this.#append(entry)
    this.#live++
    if (this.#loop === null) {
      const loop = new AbortController()
      this.#loop = loop
      void this.#tick(loop.signal)
    }
    // Null when no heartbeat is being sent (nothing to wait for: the caller need not await).
    return () => {
      this.#retire(entry)
      return entry.sending
    }
  }

  #every(): number {
    return this.#core.config.hbIntervalSec * 1000
  }

  #append(e: Entry): void {
    e.prev = this.#tail
    e.next = null
    if (this.#tail === null) this.#head = e
    else this.#tail.next = e
    this.#tail = e
  }

  #unlink(e: Entry): void {
    if (e.prev === null) this.#head = e.next
    else e.prev.next = e.next
    if (e.next === null) this.#tail = e.prev
    else e.next.prev = e.prev
    e.prev = null
    e.next = null
  }

  #retire(entry: Entry): void {
    if (!entry.live) return
    entry.live = false
    this.#unlink(entry)
    this.#live--
    if (this.#live === 0 && this.#loop !== null && !this.#idleCheck) {
      // The timer goes once no run is left after this turn: a busy worker's run count touches 0
      // between one run's end and the next one's start, and stopping and starting the loop (an
      // abort, a new timer) each time cost about a microsecond per run.
      this.#idleCheck = true
      setImmediate(() => {
        this.#idleCheck = false
        if (this.#live === 0 && this.#loop !== null) {
          this.#loop.abort(QUIET_ABORT)
          this.#loop = null
        }
      })
    }
  }

  async #tick(signal: AbortSignal): Promise<void> {
    const core = this.#core
    for (;;) {
      const head = this.#head
      if (head === null || signal.aborted) return
      const wait = head.at - core.clock.now()
      if (wait > 0) {
        try {
          await core.clock.sleep(wait, signal)
        } catch {
          return
        }
        continue // the head may have ended meanwhile
      }
      const run = head.run
      if (core.killed || run.released) {
        this.#retire(head)
        continue
      }
      head.n++
      const now = core.clock.now()
      head.at = now + this.#every()
      this.#unlink(head)
      this.#append(head)
      head.sending = emitStatus(
        core,
        run.info,
        { kind: 'TASK_HEARTBEAT', lease_id: run.info.leaseId, lease_deadline_ts_ms: Math.ceil(now + core.config.leaseTtlSec * 1000) },
        { kind: 'TASK_HEARTBEAT', n: head.n },
        now,
      )
        .catch((err: unknown) => core.log.warn('worker.heartbeat_failed', { task_id: run.info.taskId, node_id: run.info.nodeId, error: errorMessage(err) }))
        .finally(() => {
          head.sending = null
        })
    }
  }
}
