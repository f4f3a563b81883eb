/**
 * Counting the calls an engine makes on its ports: the Store and the Bus given to a Coordinator
 * or a Worker are wrapped in a Proxy that counts every method call (and, for `produce`, the
 * records). Methods are bound to the real object, so adapters with private fields work, and
 * calls an adapter makes on itself are not counted (only what the engine asks for).
 *
 * Calls made inside `asObserver()` (the bench's own reads: polling for terminal tasks, checking
 * stats) go to a separate `observer` bucket and are left out of the per-node-run figures.
 */
import { AsyncLocalStorage } from 'node:async_hooks'

const observing = new AsyncLocalStorage<boolean>()

/** Runs `fn` as the bench's own observation: its port calls are not charged to the engine. */
export function asObserver<T>(fn: () => Promise<T>): Promise<T> {
  return observing.run(true, fn)
}

/**
 * Store methods counted as "document updates": names that suggest an update of an existing
 * document. Explicit on purpose; the per-method table printed by the bench lets a reader check
 * which calls were counted. Inserts (createTask, recordEventOnce, outboxEnqueue,
 * claimStreamBatch) and reads are not updates. outboxClaimDue moves the claimed rows'
 * next-attempt time, so it is an update when it claims something (counted per call).
 */
export const UPDATE_METHODS = /^(update|transition|write|save|upsert|replace|outboxMark|outboxRequeue|outboxClaimDue)/

export function isUpdateMethod(name: string): boolean {
  return UPDATE_METHODS.test(name)
}

/** Store methods that only read; every other store call counts as a write (insert, update, append, delete). */
export const READ_METHODS = /^(get|list|has|find|count|read|load|outboxList|outboxCount|init|close)/

export function isWriteMethod(name: string): boolean {
  return !READ_METHODS.test(name)
}

export class CallCounter {
  readonly label: string
  readonly calls = new Map<string, number>()
  readonly observer = new Map<string, number>()
  /** Wall ms spent in each method's calls (until the promise settles), engine calls only. */
  readonly ms = new Map<string, number>()
  /** Records given to `produce` (bus counters only). */
  records = 0

  constructor(label: string) {
    this.label = label
  }

  /** Counts a call; returns whether it is the engine's (its time is then to be added with `took`). */
  hit(method: string, records: number): boolean {
    const m = observing.getStore() === true ? this.observer : this.calls
    m.set(method, (m.get(method) ?? 0) + 1)
    if (m !== this.calls) return false
    this.records += records
    return true
  }

  took(method: string, ms: number): void {
    this.ms.set(method, (this.ms.get(method) ?? 0) + ms)
  }

  /** Mean wall ms per call, by method. */
  meanMs(): Record<string, number> {
    return Object.fromEntries([...this.ms].map(([k, v]) => [k, Math.round((v / Math.max(1, this.calls.get(k) ?? 0)) * 100) / 100]))
  }

  total(filter: (method: string) => boolean = () => true): number {
    let n = 0
    for (const [k, v] of this.calls) if (filter(k)) n += v
    return n
  }

  get(method: string): number {
    return this.calls.get(method) ?? 0
  }

  reset(): void {
    this.calls.clear()
    this.observer.clear()
    this.ms.clear()
    this.records = 0
  }

  snapshot(): Record<string, number> {
    return Object.fromEntries([...this.calls].sort((a, b) => b[1] - a[1]))
  }
}

/** A Proxy of `target` whose method calls are counted in `counter`. */
export function counted<T extends object>(target: T, counter: CallCounter, spy?: (method: string, args: unknown[]) => void): T {
  const cache = new Map<PropertyKey, unknown>()
  return new Proxy(target, {
    get(t, prop) {
      const v = Reflect.get(t, prop, t) as unknown
      if (typeof v !== 'function' || prop === 'constructor') return v
      const hit = cache.get(prop)
      if (hit !== undefined && (hit as { orig: unknown }).orig === v) return (hit as { fn: unknown }).fn
      const name = String(prop)
      const fn = function (this: unknown, ...args: unknown[]): unknown {
        const records = name === 'produce' && Array.isArray(args[0]) ? args[0].length : 0
        const mine = counter.hit(name, records)
        spy?.(name, args)
        const t0 = performance.now()
        const out = (v as (...a: unknown[]) => unknown).apply(t, args)
        if (mine && out instanceof Promise) {
          const done = (): void => counter.took(name, performance.now() - t0)
          out.then(done, done)
        }
        return out
      }
      cache.set(prop, { orig: v, fn })
      return fn
    },
  })
}

export interface PortCounters {
  coordStore: CallCounter
  coordBus: CallCounter
  workerStore: CallCounter
  workerBus: CallCounter
}

export function newCounters(): PortCounters {
  return {
    coordStore: new CallCounter('coordinator store'),
    coordBus: new CallCounter('coordinator bus'),
    workerStore: new CallCounter('worker store'),
    workerBus: new CallCounter('worker bus'),
  }
}

export function resetCounters(c: PortCounters): void {
  for (const k of Object.values(c)) k.reset()
}

const r2 = (n: number): number => Math.round(n * 100) / 100

/** The per-node-run figures of one bench. */
export function perNodeRun(c: PortCounters, nodeRuns: number): Record<string, number> {
  const d = Math.max(1, nodeRuns)
  return {
    coord_store_calls_per_node: r2(c.coordStore.total() / d),
    coord_doc_updates_per_node: r2(c.coordStore.total(isUpdateMethod) / d),
    coord_store_writes_per_node: r2(c.coordStore.total(isWriteMethod) / d),
    worker_store_calls_per_node: r2(c.workerStore.total() / d),
    coord_produce_calls_per_node: r2(c.coordBus.get('produce') / d),
    worker_produce_calls_per_node: r2(c.workerBus.get('produce') / d),
    coord_records_per_node: r2(c.coordBus.records / d),
    worker_records_per_node: r2(c.workerBus.records / d),
  }
}

/** Per-method counts, for the JSON output and the table. */
export function methodTable(c: PortCounters): Record<string, Record<string, number>> {
  return {
    coordinator_store: c.coordStore.snapshot(),
    coordinator_bus: c.coordBus.snapshot(),
    worker_store: c.workerStore.snapshot(),
    worker_bus: c.workerBus.snapshot(),
    observer_store: Object.fromEntries(c.coordStore.observer),
  }
}

/** Mean wall ms per store call, by method (on a real server: where the write path waits). */
export function methodMs(c: PortCounters): Record<string, Record<string, number>> {
  return { coordinator_store: c.coordStore.meanMs(), worker_store: c.workerStore.meanMs() }
}
