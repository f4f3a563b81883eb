/**
 * Fault injection around a real bus (memory or Kafka): a Proxy that can hold back or drop what a
 * component produces, and delay the batches its subscriptions hand to their handlers. Everything
 * else passes through untouched; no driver is mocked.
 */
import type { Bus, BusMessage, BusRecord, SubscribeOptions } from 'flowkit'

export interface BusFaults {
  /** Called before each produce: return the records to send (filter to drop some), or throw. */
  produce?: (records: BusRecord[]) => BusRecord[] | Promise<BusRecord[]>
  /** Called before a subscription's handler gets a batch (await something to hold it back). */
  beforeHandle?: (topic: string, messages: readonly BusMessage[]) => void | Promise<void>
}

export function withBusFaults(inner: Bus, faults: BusFaults): Bus {
  return new Proxy(inner, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target) as unknown
      if (typeof value !== 'function') return value
      const fn = (value as (...args: unknown[]) => unknown).bind(target)
      if (prop === 'produce' && faults.produce) {
        return async (records: BusRecord[]) => {
          const keep = await faults.produce!(records)
          if (keep.length > 0) await fn(keep)
        }
      }
      if (prop === 'subscribe' && faults.beforeHandle) {
        const before = faults.beforeHandle
        return (options: SubscribeOptions) => {
          const o: SubscribeOptions = { ...options }
          if (options.batchHandler) {
            const h = options.batchHandler
            o.batchHandler = async (msgs) => {
              await before(msgs[0]?.topic ?? '', msgs)
              return h(msgs)
            }
          }
          if (options.handler) {
            const h = options.handler
            o.handler = async (m) => {
              await before(m.topic, [m])
              return h(m)
            }
          }
          return fn(o)
        }
      }
      return fn
    },
  })
}

/** The decoded envelope of a record (null when it is not JSON). */
export function envelopeOf(value: string): Record<string, unknown> | null {
  try {
    return JSON.parse(value) as Record<string, unknown>
  } catch {
    return null
  }
}
