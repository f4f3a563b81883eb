/**
 * Wrappers that replace some methods of a port (each override gets the original, bound); the
 * other methods pass through. `overrideStore` for a Store, `overrideMethods` for any port (a bus).
 */
import type { AttemptClaim, Store } from 'flowkit'

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

/**
 * A store whose attempt claims (one, or several in one round trip: a worker uses both) go through
 * `around(claims, claim)`: `claim()` makes them as the store would; the answer is one per claim.
 */
export function aroundClaims(inner: Store, around: (claims: readonly AttemptClaim[], claim: () => Promise<boolean[]>) => Promise<boolean[]>): Store {
  return overrideMethods<Store>(inner, {
    claimAttempt: (f) => async (...a: unknown[]) => (await around([a[0] as AttemptClaim], async () => [(await f(...a)) as boolean]))[0],
    claimAttempts: (f) => async (...a: unknown[]) => around(a[0] as AttemptClaim[], async () => (await f(...a)) as boolean[]),
  })
}
