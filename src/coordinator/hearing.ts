/**
 * Whether this coordinator can hear its workers. It cannot while its bus membership is not
 * confirmed (the broker is unreachable: neither its status records nor its writes get through)
 * or while its flush's store calls fail or hang (a store outage, a frozen server: the status events
 * it read wait behind that flush, and the ones after it are not read). A lease that runs out then says nothing about
 * its holder: the workers' heartbeats are what the coordinator does not get. So every second this
 * is looked at, and while the coordinator is cut off the engine's `hearingEnd` is kept one lease
 * length ahead: no accepted running node is judged lost (lease expiry, heartbeat limits) until its
 * worker has had a whole lease of hearing to renew it. A worker that died meanwhile is found one
 * lease after the outage. (Timeouts, cancel deadlines and unaccepted starts go on as before.)
 */
import type { Logger } from '../log.ts'
import type { Clock } from '../ports/clock.ts'

export interface HearingDeps {
  clock: Clock
  log: Logger
  /** The lease length hearing must last before a lease is judged again (ms). */
  graceMs: number
  /** Whether the bus confirmed this coordinator's membership recently (ownership.ts). */
  confirmed(): boolean
  /** Since when the flush's store calls fail (null: they do not). */
  storeFailingSince(): number | null
  /** When the flush's store call in flight began (null: none). */
  storeCallSince(): number | null
  /** Where the end of the grace goes (the engine's `hearingEnd`). */
  setEnd(at: number): void
}

const LOOK_EVERY_MS = 1000
/** A flush failing this long is an outage (one failed call retried at once is not). */
const STORE_FAILING_MS = 1000
/** A store call in flight this long is a hung server (a slow one answers sooner); at most half a lease. */
const STORE_HUNG_MS = 5000

export class Hearing {
  readonly #d: HearingDeps
  #deafSince: number | null = null
  #timer: ReturnType<typeof setInterval> | null = null

  constructor(deps: HearingDeps) {
    this.#d = deps
  }

  /** Looks every second until `signal` aborts. */
  start(signal: AbortSignal): void {
    this.stop()
    this.#deafSince = null
    const timer = setInterval(() => this.look(), LOOK_EVERY_MS)
    timer.unref?.()
    this.#timer = timer
    signal.addEventListener('abort', () => this.stop(), { once: true })
  }

  stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer)
    this.#timer = null
  }

  /** Why the coordinator cannot hear now (null: it can). */
  #cutOff(now: number): string | null {
    if (!this.#d.confirmed()) return 'bus membership not confirmed'
    const failing = this.#d.storeFailingSince()
    if (failing !== null && now - failing >= STORE_FAILING_MS) return 'store writes failing'
    const call = this.#d.storeCallSince()
    if (call !== null && now - call >= Math.min(STORE_HUNG_MS, this.#d.graceMs / 2)) return 'store not answering'
    return null
  }

  /** One look (every second; also called by tests). */
  look(): void {
    const now = this.#d.clock.now()
    const why = this.#cutOff(now)
    if (why !== null) {
      if (this.#deafSince === null) {
        this.#deafSince = now
        this.#d.log.warn('coordinator.deaf', { why, leases_wait_ms: this.#d.graceMs })
      }
      this.#d.setEnd(now + this.#d.graceMs)
    } else if (this.#deafSince !== null) {
      this.#d.log.info('coordinator.hearing_again', { cut_off_ms: now - this.#deafSince, leases_judged_from_ms: now + this.#d.graceMs })
      this.#deafSince = null
      this.#d.setEnd(now + this.#d.graceMs)
    }
  }
}
