/**
 * Store call latency: a view of a Store port that times every verb (every method returning a
 * promise) into a histogram labelled `op` (the method name) and `outcome` (ok / error). Anything
 * else (properties, getters, synchronous methods) is the store's own, unchanged; `instanceof`
 * still holds.
 */
import { Histogram, type Registry } from 'prom-client'
import type { Store } from '../ports/store.ts'
import { Children, LATENCY_BUCKETS } from './options.ts'

type Observe = { observe(value: number): void }

export function timedStore(store: Store, registry: Registry, name: string): Store {
  const hist = new Histogram({
    name,
    help: 'Store port calls, seconds from the call to its settlement, by method and outcome',
    labelNames: ['op', 'outcome'],
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  })
  const children = new Children<Observe>((op, outcome) => hist.labels(op as string, outcome as string))
  // By function, not by name: a method replaced on the store later (a test's fault) is timed too.
  const wrapped = new WeakMap<object, unknown>()
  const wrap = (op: string, fn: (...args: unknown[]) => unknown) =>
    function timed(...args: unknown[]): unknown {
      const t0 = performance.now()
      const out = fn.apply(store, args)
      if (out === null || typeof out !== 'object' || typeof (out as Promise<unknown>).then !== 'function') return out
      const ok = children.get(op, 'ok')
      const failed = children.get(op, 'error')
      return (out as Promise<unknown>).then(
        (v) => {
          ok.observe((performance.now() - t0) / 1000)
          return v
        },
        (err: unknown) => {
          failed.observe((performance.now() - t0) / 1000)
          throw err
        },
      )
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
