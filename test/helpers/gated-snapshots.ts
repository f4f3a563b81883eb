/** A MemoryStore whose snapshot writes wait for a gate (tests of what does or does not wait for them). */
import { MemoryStore, type Store } from 'flowkit'
import { type Gate, gate } from './gate.ts'

export interface GatedSnapshots {
  /** The store to run on: `writeSnapshot` waits for `snapshots` to open. */
  store: Store
  /** The store under it (read it without waiting). */
  inner: MemoryStore
  snapshots: Gate
  /** Snapshot writes begun so far. */
  held: () => number
}

export function gatedSnapshots(): GatedSnapshots {
  const snapshots = gate()
  let held = 0
  const inner = new MemoryStore()
  const store = new Proxy(inner, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target) as unknown
      if (typeof value !== 'function') return value
      const fn = (value as (...args: unknown[]) => unknown).bind(target)
      if (prop !== 'writeSnapshot') return fn
      return async (...args: unknown[]) => {
        held++
        await snapshots.wait()
        return fn(...args)
      }
    },
  }) as Store
  return { store, inner, snapshots, held: () => held }
}
