/**
 * Diagnostics for a process of the suite: wraps its store and bus so that every call still
 * pending after STUCK_MS is reported on stderr (`rel.pending`, method, age, count), every
 * REPORT_MS. A run that hangs then shows which port call it waits for.
 */
import { say } from './common.ts'
import type { ProcSpec } from '../lib/spec.ts'

const STUCK_MS = 8000
const REPORT_MS = 5000

interface Call {
  what: string
  since: number
}

const pending = new Set<Call>()
let timer: ReturnType<typeof setInterval> | null = null

function describeArg(a: unknown): string {
  if (typeof a === 'string') return a.length > 60 ? `${a.slice(0, 60)}…` : a
  if (Array.isArray(a)) return `[${a.length}]`
  if (a !== null && typeof a === 'object') return '{…}'
  return String(a)
}

/** `target` with each async method call tracked while it is pending. */
export function tracked<T extends object>(spec: ProcSpec, label: string, target: T): T {
  if (timer === null) {
    timer = setInterval(() => {
      const now = Date.now()
      const old = [...pending].filter((c) => now - c.since >= STUCK_MS)
      if (old.length === 0) return
      const byWhat = new Map<string, { n: number; oldest: number }>()
      for (const c of old) {
        const e = byWhat.get(c.what) ?? { n: 0, oldest: 0 }
        e.n++
        e.oldest = Math.max(e.oldest, now - c.since)
        byWhat.set(c.what, e)
      }
      say(spec, 'rel.pending', { calls: [...byWhat].map(([what, e]) => ({ what, n: e.n, oldest_ms: e.oldest })) })
    }, REPORT_MS)
    timer.unref()
  }
  return new Proxy(target, {
    get(t, prop) {
      // (The target as receiver: a getter that reads a private field — KafkaBus.sessionTimeoutMs —
      // threw through the proxy, so the coordinators of the suite never waited the hand-over grace.)
      const v: unknown = Reflect.get(t, prop, t)
      if (typeof v !== 'function' || typeof prop !== 'string') return v
      return (...args: unknown[]) => {
        const what = `${label}.${prop}(${args.slice(0, 2).map(describeArg).join(', ')})`
        // Callbacks handed to the port (a consumer's handler) are tracked too.
        const wrapped = args.map((a) => (typeof a === 'function' ? trackFn(`${what}→callback`, a as (...x: unknown[]) => unknown) : a))
        return track(what, (v as (...a: unknown[]) => unknown).apply(t, wrapped))
      }
    },
  })
}

function track(what: string, out: unknown): unknown {
  if (out !== null && typeof out === 'object' && typeof (out as { then?: unknown }).then === 'function') {
    const call: Call = { what, since: Date.now() }
    pending.add(call)
    const done = (): void => {
      pending.delete(call)
    }
    ;(out as Promise<unknown>).then(done, done)
  }
  return out
}

function trackFn(what: string, fn: (...x: unknown[]) => unknown): (...x: unknown[]) => unknown {
  return function (this: unknown, ...x: unknown[]) {
    return track(what, fn.apply(this, x))
  }
}
