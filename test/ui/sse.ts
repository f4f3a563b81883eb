/** Reads a server-sent events stream over fetch, for the dashboard's HTTP tests. */

export interface SseEvent {
  event: string
  data: unknown
}

export interface SseReader {
  /** The next event (rejects after `timeoutMs` or when the stream ends first). */
  next(timeoutMs?: number): Promise<SseEvent>
  /** Events until one satisfies `until` (that one included). */
  collect(until: (e: SseEvent) => boolean, timeoutMs?: number): Promise<SseEvent[]>
  close(): void
  status: number
  headers: Headers
}

export async function openSse(url: string, init: RequestInit = {}): Promise<SseReader> {
  const ac = new AbortController()
  const res = await fetch(url, { ...init, signal: ac.signal, headers: { accept: 'text/event-stream', ...(init.headers ?? {}) } })
  const queue: SseEvent[] = []
  const waiters: (() => void)[] = []
  let ended = false
  const wake = (): void => {
    for (const w of waiters.splice(0)) w()
  }
  void (async () => {
    const decoder = new TextDecoder()
    let buf = ''
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buf += decoder.decode(chunk, { stream: true })
        let i = buf.indexOf('\n\n')
        while (i >= 0) {
          const block = buf.slice(0, i)
          buf = buf.slice(i + 2)
          let event = 'message'
          const data: string[] = []
          for (const line of block.split('\n')) {
            if (line.startsWith('event: ')) event = line.slice(7)
            else if (line.startsWith('data: ')) data.push(line.slice(6))
          }
          if (data.length > 0) queue.push({ event, data: JSON.parse(data.join('\n')) })
          i = buf.indexOf('\n\n')
        }
        wake()
      }
    } catch {
      // aborted
    } finally {
      ended = true
      wake()
    }
  })()
  const next = async (timeoutMs = 10_000): Promise<SseEvent> => {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const e = queue.shift()
      if (e !== undefined) return e
      if (ended) throw new Error('event stream ended')
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`no event within ${timeoutMs} ms`)
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left)
        waiters.push(() => {
          clearTimeout(t)
          resolve()
        })
      })
    }
  }
  return {
    status: res.status,
    headers: res.headers,
    next,
    async collect(until, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs
      const out: SseEvent[] = []
      for (;;) {
        const e = await next(Math.max(1, deadline - Date.now()))
        out.push(e)
        if (until(e)) return out
      }
    },
    close() {
      ac.abort()
    },
  }
}
