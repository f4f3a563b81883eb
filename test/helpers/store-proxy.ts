/** A store whose named methods are replaced (each gets the original, bound); the others pass through. */
import type { Store } from 'flowkit'

type Method = (...args: unknown[]) => unknown

export function overrideStore<S extends Store>(inner: S, overrides: Record<string, (original: Method) => Method>): Store {
  return new Proxy(inner, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target) as unknown
      if (typeof value !== 'function') return value
      const fn = (value as Method).bind(target)
      const wrap = typeof prop === 'string' ? overrides[prop] : undefined
      return wrap === undefined ? fn : wrap(fn)
    },
  }) as Store
}
