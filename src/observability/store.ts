/**
 * Store call latency: a view of a Store port that times every verb (every method returning a
 * promise) into a histogram labelled `op` (the method name) and `outcome` (ok / error). Anything
 * else (properties, getters, synchronous methods) is the store's own, unchanged; `instanceof`
 * still holds.
 */
import type { Registry } from 'prom-client'
import type { Store } from '../ports/store.ts'
import { FastHistogram } from './fast.ts'
import { LATENCY_BUCKETS } from './options.ts'

export function timedStore(store: Store, registry: Registry, name: string): Store {
  const hist = new FastHistogram(registry, name, 'Store port calls, seconds from the call to its settlement, by method and outcome', ['op', 'outcome'], LATENCY_BUCKETS)
  // By function, not by name: a method replaced on the store later (a test's fault) is timed too.
  const wrapped = new WeakMap<object, unknown>()
  const wrap = (op: string, fn: (...args: unknown[]) => unknown) => {
    // The child is looked up at each settlement (two Map lookups), not kept: a registry's
    // resetMetrics() drops the children, and one kept here would be counted but never exported.
    // A method never called (or never failing) has no series.
    return function timed(...args: unknown[]): unknown {
      const t0 = performance.now()
      const out = fn.apply(store, args)
      if (out === null || typeof out !== 'object' || typeof (out as Promise<unknown>).then !== 'function') return out
      // Timed beside the caller: the caller gets the store's own promise (no extra hop before its
      // await resumes); this reaction only observes, and never rejects (the caller sees the error).
      ;(out as Promise<unknown>).then(
        () => hist.labels(op, 'ok').observe((performance.now() - t0) / 1000),
        () => hist.labels(op, 'error').observe((performance.now() - t0) / 1000),
      )
      return out
    }
  }
  return new Proxy(store, {
    get(target, prop) {
      const v: unknown = Reflect.get(target, prop, target)
      if (typeof v !== 'function' || typeof prop !== 'string' || prop === 'constructor') return v
      let w = wrapped.get(v)
      if (w === undefined) {
        w = wrap(prop, v as (...args: unknown[]) => unknown)
        wrapped.set(v, w)
      }
      return w
    },
  })
}
