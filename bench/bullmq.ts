/**
 * `--compare bullmq`: the chain bench's shape on BullMQ. C flows of depth 3 (a FlowProducer
 * parent n3 ← child n2 ← grandchild n1, so n1 runs first and n3 last), no-op processors, one
 * Worker with concurrency 32, all flows added at once, on a redis-server started for the run →
 * jobs/s and flow latency (add call to the n3 job's `completed` event).
 */
import { randomUUID } from 'node:crypto'
import { startRedis } from './redis.ts'
import { warmUpCount } from './chain.ts'
import { emit, latencyFields, log, rate, round, type Result } from './stats.ts'

export interface BullOptions {
  chains: number
  concurrency: number
}

export async function bullmqChain(o: BullOptions): Promise<Result> {
  const { FlowProducer, Worker } = await import('bullmq')
  const redis = await startRedis()
  const connection = { host: '127.0.0.1', port: redis.port, maxRetriesPerRequest: null }
  const queueName = `chain${randomUUID().slice(0, 6)}`
  const done = new Map<string, number>()
  let wake: (() => void) | null = null
  let expected = 0
  const worker = new Worker(queueName, async () => ({ count: 1 }), { connection, concurrency: o.concurrency })
  worker.on('completed', (job) => {
    if (job.name !== 'n3') return
    done.set(String((job.data as { flow: string }).flow), performance.now())
    if (done.size >= expected) wake?.()
  })
  const producer = new FlowProducer({ connection })
  const flow = (id: string) => ({
    name: 'n3',
    queueName,
    data: { flow: id },
    children: [{ name: 'n2', queueName, data: { flow: id }, children: [{ name: 'n1', queueName, data: { flow: id } }] }],
  })
  const runFlows = async (ids: string[], timeoutMs: number): Promise<{ ms: number; lat: number[] }> => {
    done.clear()
    expected = ids.length
    const all = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`bullmq: ${done.size}/${ids.length} flows done after ${timeoutMs} ms`)), timeoutMs)
      wake = () => {
        clearTimeout(timer)
        resolve()
      }
    })
    const submitted = new Map<string, number>()
    const t0 = performance.now()
    await Promise.all(
      ids.map(async (id) => {
        submitted.set(id, performance.now())
        await producer.add(flow(id))
      }),
    )
    await all
    const end = Math.max(...ids.map((id) => done.get(id) as number))
    return { ms: end - t0, lat: ids.map((id) => (done.get(id) as number) - (submitted.get(id) as number)) }
  }
  try {
    await worker.waitUntilReady()
    // As flowkit's chain bench: one flow, then warmUpCount(chains) at once (the JIT's warm-up).
    await runFlows(['warm'], 30_000)
    await runFlows(Array.from({ length: warmUpCount(o.chains) }, (_, i) => `warm${i}`), 120_000)
    const ids = Array.from({ length: o.chains }, (_, i) => `f${i}`)
    const { ms, lat } = await runFlows(ids, 300_000)
    const jobs = o.chains * 3
    log(`bullmq: ${o.chains} flows in ${round(ms, 0)} ms`)
    return emit({
      bench: 'bullmq_chain',
      runtime: `bullmq+redis ${redis.version}`,
      chains: o.chains,
      jobs,
      concurrency: o.concurrency,
      seconds: round(ms / 1000, 2),
      jobs_per_s: rate(jobs, ms),
      flows_per_s: rate(o.chains, ms),
      ...latencyFields('flow_latency', lat),
    })
  } finally {
    await worker.close().catch(() => undefined)
    await producer.close().catch(() => undefined)
    await redis.stop()
  }
}
