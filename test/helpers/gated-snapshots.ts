/** A MemoryStore whose snapshot writes wait for a gate (tests of what does or does not wait for them). */
import { MemoryStore, type Store } from 'flowkit'
import { type Gate, gate } from './gate.ts'
import { overrideStore } from './store-proxy.ts'

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
  const store = overrideStore(inner, {
    writeSnapshot: (fn) => async (...args: unknown[]) => {
      held++
      await snapshots.wait()
      return fn(...args)
    },
  })
  return { store, inner, snapshots, held: () => held }
}
