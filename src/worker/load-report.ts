/**
 * A worker tells the coordinators when its slots fill up and when one frees again (a WORKER_ONLINE
 * with `load: {running, report: "change"}` on the announce topic, read by every coordinator). A
 * coordinator counts only the runs of its own tasks: without this, one whose tasks share workers
 * with other coordinators' took a full worker for an idle one, counted the STARTs queued behind it
 * as unaccepted (warnings, resends, and past the whole schedule a new attempt) and steered STARTs
 * to it for nothing. At most one report a second: a change within that goes out at its end (the
 * state then, if it is not the one last sent).
 */
import { errorMessage } from '../errors.ts'
import type { WorkerCore } from './core.ts'

/** Shortest time between two load reports of one worker. */
export const LOAD_REPORT_GAP_MS = 1_000

export class LoadReport {
  readonly #core: WorkerCore
  readonly #send: (running: number) => Promise<void>
  readonly #capacity: number
  /** Whether the last report said full (null: none sent). */
  #sentFull: boolean | null = null
  #lastAt = Number.NEGATIVE_INFINITY
  #running = 0
  #timer: AbortController | null = null
  #stopped = false

  constructor(core: WorkerCore, capacity: number, send: (running: number) => Promise<void>) {
    this.#core = core
    this.#capacity = capacity
    this.#send = send
  }

  /** The slots held now (after one was taken or given back). */
  update(running: number): void {
    this.#running = running
    const full = running >= this.#capacity
    // Nothing to tell: the same as the last report (an idle worker's first frees tell nothing either).
    if (full === (this.#sentFull ?? false) || this.#stopped) return
    if (this.#timer !== null) return // a report is due at the end of the gap: it reads the state then
    const wait = this.#lastAt + LOAD_REPORT_GAP_MS - this.#core.clock.now()
    if (wait <= 0) {
      this.#report()
      return
    }
    const timer = new AbortController()
    this.#timer = timer
    this.#core.clock.sleep(wait, timer.signal).then(
      () => {
        this.#timer = null
        if (!this.#stopped && this.#running >= this.#capacity !== (this.#sentFull ?? false)) this.#report()
      },
      () => undefined,
    )
  }

  #report(): void {
    this.#lastAt = this.#core.clock.now()
    this.#sentFull = this.#running >= this.#capacity
    this.#send(this.#running).catch((err: unknown) => {
      if (!this.#stopped) this.#core.log.debug('worker.load_report_failed', { error: errorMessage(err) })
    })
  }

  stop(): void {
    this.#stopped = true
    this.#timer?.abort()
    this.#timer = null
  }
}
