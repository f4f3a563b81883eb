/** A MemoryStore whose upsertArtifacts calls go through `hook` first (to hold, fail or record them). */
import { MemoryStore, type ArtifactWrite, type Store } from 'flowkit'

export function storeWithArtifactHook(hook: (list: readonly ArtifactWrite[]) => Promise<void>, inner: MemoryStore = new MemoryStore()): Store {
  return new Proxy(inner, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target) as unknown
      if (typeof value !== 'function') return value
      const fn = (value as (...args: unknown[]) => unknown).bind(target)
      if (prop !== 'upsertArtifacts') return fn
      return async (list: readonly ArtifactWrite[], now: number) => {
        await hook(list)
        return fn(list, now)
      }
    },
  })
}
