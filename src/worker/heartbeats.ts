/**
 * The heartbeats of a worker's runs on one timer. A run is registered once TASK_ACCEPTED went out;
 * every `hbIntervalSec` after that (counted from its previous heartbeat) it sends TASK_HEARTBEAT
 * with a fresh lease deadline, until it ends, its slot is given back, or the worker is killed
 * (then the lease must be allowed to lapse).
 *
 * All runs share one interval, so a FIFO ordered by due time is enough (a run is always due after
 * every run registered or beaten before it): the timer sleeps until the head is due. A run that
 * ends is only marked; its entry is dropped when it reaches the head. The timer is cancelled when
 * no run is left, so a stopped worker holds no timer.
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
}

export class HeartbeatTicker {
  readonly #coreOf: () => WorkerCore
  #queue: Entry[] = []
  #head = 0
  #live = 0
  /** Cancels the current timer loop's sleep; null when no loop runs. */
  #loop: AbortController | null = null

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
   * Starts the heartbeats of an accepted run. The returned function stops them; it resolves once
   * a heartbeat being sent at that moment went out (or failed).
   */
  add(run: ActiveRun): () => Promise<void> {
    const entry: Entry = { run, at: this.#core.clock.now() + this.#every(), n: 0, live: true, sending: null }
    this.#queue.push(entry)
    this.#live++
    if (this.#loop === null) {
      const loop = new AbortController()
      this.#loop = loop
      void this.#tick(loop.signal)
    }
    return async () => {
      this.#retire(entry)
      await entry.sending
    }
  }

  #every(): number {
    return this.#core.config.hbIntervalSec * 1000
  }

  #retire(entry: Entry): void {
    if (!entry.live) return
    entry.live = false
    this.#live--
    if (this.#live === 0 && this.#loop !== null) {
      this.#loop.abort(QUIET_ABORT)
      this.#loop = null
    }
  }

  async #tick(signal: AbortSignal): Promise<void> {
    const core = this.#core
    for (;;) {
      const head = this.#next()
      if (head === undefined || signal.aborted) return
      const wait = head.at - core.clock.now()
      if (wait > 0) {
        try {
          await core.clock.sleep(wait, signal)
        } catch {
          return
        }
        continue // the head may have ended meanwhile
      }
      this.#head++
      const run = head.run
      if (core.killed || run.released) {
        this.#retire(head)
        continue
      }
      head.n++
      const now = core.clock.now()
      head.at = now + this.#every()
      this.#queue.push(head)
      head.sending = emitStatus(
        core,
        run.info,
        { kind: 'TASK_HEARTBEAT', lease_id: run.info.leaseId, lease_deadline_ts_ms: now + core.config.leaseTtlSec * 1000 },
        { kind: 'TASK_HEARTBEAT', n: head.n },
        now,
      )
        .catch((err: unknown) => core.log.warn('worker.heartbeat_failed', { task_id: run.info.taskId, node_id: run.info.nodeId, error: errorMessage(err) }))
        .finally(() => {
          head.sending = null
        })
    }
  }

  /** The first live entry (dead ones ahead of it dropped), or undefined. */
  #next(): Entry | undefined {
    const q = this.#queue
    while (this.#head < q.length && !(q[this.#head] as Entry).live) this.#head++
    if (this.#head > 1024 && this.#head * 2 > q.length) {
      this.#queue = q.slice(this.#head)
      this.#head = 0
    }
    return this.#queue[this.#head]
  }
}
