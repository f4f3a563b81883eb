/**
 * Wrappers that replace some methods of a port (each override gets the original, bound); the
 * other methods pass through. `overrideStore` for a Store, `overrideMethods` for any port (a bus).
 */
import type { Store } from 'flowkit'

export type Method = (...args: unknown[]) => unknown

export function overrideMethods<T extends object>(inner: T, overrides: Record<string, (original: Method) => Method>): T {
  return new Proxy(inner, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target) as unknown
      if (typeof value !== 'function') return value
      const fn = (value as Method).bind(target)
      const wrap = typeof prop === 'string' ? overrides[prop] : undefined
      return wrap === undefined ? fn : wrap(fn)
    },
  })
}

export function overrideStore<S extends Store>(inner: S, overrides: Record<string, (original: Method) => Method>): Store {
  return overrideMethods<Store>(inner, overrides)
}
