/**
 * Raw bus ceiling: the same bus client the engine uses (MemoryBus, or flowkit's KafkaBus on the
 * real servers) with nothing of the engine in between.
 * - round trip: produce one record, wait until the subscribed handler receives it (p50/p95 ms)
 * - produce:    batches of 100 records, each `produce` awaited → records/s produced, and
 *               records/s until the consumer has received all of them
 */
import { openAdapters } from './runtime.ts'
import { emit, latencyFields, rate, round, type Result } from './stats.ts'

export interface RawBusOptions {
  real: boolean
  roundTrips: number
  produceBatches: number
  logLevel: string
}

const BATCH = 100

export async function rawBus(o: RawBusOptions): Promise<Result> {
  const a = await openAdapters(o.real, o.logLevel)
  const topic = `${a.prefix}raw.v1`
  const waiters = new Map<string, () => void>()
  let received = 0
  let allReceived: (() => void) | null = null
  let expect = Number.POSITIVE_INFINITY
  try {
    await a.bus.ensureTopics([{ name: topic, partitions: 1 }])
    const sub = await a.bus.subscribe({
      groupId: `${a.prefix}raw`,
      topics: [topic],
      name: 'bench-raw',
      handler: async (m) => {
        received++
        waiters.get(m.value)?.()
        if (received >= expect) allReceived?.()
      },
    })
    const roundTrip = async (value: string, timeoutMs: number): Promise<number> => {
      const t0 = performance.now()
      const got = new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`raw bus: no delivery of ${value} in ${timeoutMs} ms`)), timeoutMs)
        waiters.set(value, () => {
          clearTimeout(timer)
          waiters.delete(value)
          resolve()
        })
      })
      await a.bus.produce([{ topic, key: 'k', value }])
      await got
      return performance.now() - t0
    }
    // Warm-up: the consumer group has to join and get the partition first.
    await roundTrip('warm-0', 120_000)
    for (let i = 1; i < 5; i++) await roundTrip(`warm-${i}`, 30_000)
    const rt: number[] = []
    for (let i = 0; i < o.roundTrips; i++) rt.push(await roundTrip(`rt-${i}`, 30_000))

    const total = o.produceBatches * BATCH
    received = 0
    expect = total
    const done = new Promise<void>((resolve) => {
      allReceived = resolve
    })
    const t0 = performance.now()
    for (let b = 0; b < o.produceBatches; b++) {
      await a.bus.produce(Array.from({ length: BATCH }, (_, i) => ({ topic, key: `k${i % 8}`, value: `p-${b}-${i}` })))
    }
    const produceMs = performance.now() - t0
    await Promise.race([done, new Promise((_, reject) => setTimeout(() => reject(new Error(`raw bus: ${received}/${total} consumed after 120 s`)), 120_000))])
    const consumeMs = performance.now() - t0
    await sub.close()
    return emit({
      bench: 'raw_bus',
      runtime: a.kind,
      round_trips: o.roundTrips,
      ...latencyFields('round_trip', rt, 3),
      produce_records: total,
      produce_batch: BATCH,
      produce_records_per_s: rate(total, produceMs),
      produce_to_consumed_records_per_s: rate(total, consumeMs),
      produce_seconds: round(produceMs / 1000, 2),
    })
  } finally {
    await a.cleanup()
  }
}
