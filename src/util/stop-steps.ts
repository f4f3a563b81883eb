/**
 * Says what a stop is waiting for when it takes long: every `everyMs` of wall time until `end()`,
 * one warning `event` with the current step and the seconds waited. A stop that hangs (a broker
 * that does not answer a leave, a handler that ignores its abort past the grace) then names its
 * step in the logs instead of going quiet. Wall time on purpose, not the injectable clock: this
 * watches the process, and a test clock that is not advanced must not silence it.
 */
import type { Logger } from '../log.ts'

export class StopSteps {
  readonly #log: Logger
  readonly #event: string
  readonly #t0 = performance.now()
  readonly #timer: ReturnType<typeof setInterval>
  #step = 'starting'

  constructor(log: Logger, event: string, everyMs = 10_000) {
    this.#log = log
    this.#event = event
    this.#timer = setInterval(() => this.#warn(), everyMs)
    this.#timer.unref()
  }

  step(name: string): void {
    this.#step = name
  }

  end(): void {
    clearInterval(this.#timer)
  }

  #warn(): void {
    this.#log.warn(this.#event, { step: this.#step, waited_sec: Math.round((performance.now() - this.#t0) / 1000) })
  }
}
