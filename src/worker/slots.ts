/** A counting semaphore whose waiters are served in order (the worker's run slots). */
export class Slots {
  #free: number
  #waiters: { resolve: () => void; reject: (err: unknown) => void }[] = []
  constructor(n: number) {
    this.#free = n
  }
  get free(): number {
    return this.#free
  }
  /** Takes a free slot at once (true), or returns false: then `acquire` waits for one. */
  tryAcquire(): boolean {
    if (this.#free === 0) return false
    this.#free--
    return true
  }
  async acquire(): Promise<void> {
    if (this.#free > 0) {
      this.#free--
      return
    }
    await new Promise<void>((resolve, reject) => this.#waiters.push({ resolve, reject }))
  }
  release(): void {
    const next = this.#waiters.shift()
    if (next) next.resolve()
    else this.#free++
  }
  /** Fails every waiter (the worker is stopping: their commands are not taken). */
  rejectWaiters(err: unknown): void {
    for (const w of this.#waiters.splice(0)) w.reject(err)
  }
}
