/** A latch a test opens by hand, to hold a handler at a known point. */
export interface Gate {
  readonly opened: boolean
  wait(signal?: AbortSignal): Promise<void>
  open(): void
}

export function gate(): Gate {
  let opened = false
  let release!: () => void
  const p = new Promise<void>((r) => {
    release = r
  })
  return {
    get opened() {
      return opened
    },
    wait(signal?: AbortSignal) {
      if (!signal) return p
      return new Promise<void>((resolve, reject) => {
        if (signal.aborted) return reject(signal.reason)
        signal.addEventListener('abort', () => reject(signal.reason), { once: true })
        p.then(resolve)
      })
    },
    open() {
      opened = true
      release()
    },
  }
}
