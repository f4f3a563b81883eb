/**
 * Fault injection around a real store (memory or MongoDB): a Proxy that counts the writes of the
 * coordinator's flush path (insertBatchMetrics, appendJournal, writeSnapshot) and, at write k,
 * fails it with a retryable error (before or after performing it) or freezes it for ever (the
 * process "dies" in it). Everything else passes through untouched; no driver is mocked.
 */
import { ErrorCode, FlowkitError, type Store } from 'flowkit'

export type FaultMode = 'fail-before' | 'fail-after' | 'freeze-before' | 'freeze-after'

export interface FaultPlan {
  at: number
  mode: FaultMode
}

export interface FaultyStore {
  store: Store
  /** Writes seen so far. */
  readonly writes: number
  /** The fault has happened (for freezes: the call is hanging now). */
  readonly tripped: boolean
  readonly trippedOn: string | null
  /** No fault from now on (a fault not yet tripped never will: the process it stood for is gone). */
  disarm(): void
}

const FLUSH_WRITES = new Set(['insertBatchMetrics', 'appendJournal', 'writeSnapshot'])

export function withFault(inner: Store, plan: FaultPlan): FaultyStore {
  const state = { writes: 0, tripped: false, trippedOn: null as string | null, armed: true }
  const store = new Proxy(inner, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target) as unknown
      if (typeof value !== 'function') return value
      const fn = (value as (...args: unknown[]) => unknown).bind(target)
      if (typeof prop !== 'string' || !FLUSH_WRITES.has(prop)) return fn
      return async (...args: unknown[]) => {
        const k = ++state.writes
        if (k !== plan.at || !state.armed) return fn(...args)
        state.trippedOn = prop
        if (plan.mode === 'fail-after' || plan.mode === 'freeze-after') await fn(...args)
        state.tripped = true
        if (plan.mode.startsWith('freeze')) return new Promise(() => undefined)
        throw new FlowkitError(ErrorCode.StoreUnavailable, `injected: store unavailable (${prop})`, { retryable: true })
      }
    },
  })
  return {
    store,
    get writes() {
      return state.writes
    },
    get tripped() {
      return state.tripped
    },
    get trippedOn() {
      return state.trippedOn
    },
    disarm() {
      state.armed = false
    },
  }
}
