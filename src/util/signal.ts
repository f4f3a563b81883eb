/** One-slot wake-up: a `notify()` before `wait()` is remembered, so no wake-up is lost. */
export class Signal {
  #resolve: (() => void) | null = null
  #pending = false

  wait(): Promise<void> {
    if (this.#pending) {
      this.#pending = false
      return Promise.resolve()
    }
    return new Promise((resolve) => {
      this.#resolve = resolve
    })
  }

  notify(): void {
    const resolve = this.#resolve
    if (resolve) {
      this.#resolve = null
      resolve()
    } else {
      this.#pending = true
    }
  }
}
