/**
 * flowkit benchmarks: `npm run bench` (memory runtime), and with FLOWKIT_KAFKA_BROKERS and
 * FLOWKIT_MONGO_URL set, `npm run bench -- --real` (Kafka + MongoDB protocol).
 *
 * - chain:     T tasks of a 3-node chain with no-op handlers, submitted at once → tasks/s
 * - fanout:    one task of N independent nodes → nodes/s (scheduling and dispatch overhead)
 * - streaming: a source of B batches → rechunking consumer → pulling sink → batches/s end to end
 *
 * Each prints one JSON line; numbers are wall-clock on this machine, so compare runs on one host.
 */
import { randomUUID } from 'node:crypto'
import { Coordinator, MemoryBus, MemoryStore, Worker, type Bus, type RoleHandler, type Store } from 'flowkit'

const real = process.argv.includes('--real')
const quick = process.argv.includes('--quick')

async function adapters(): Promise<{ bus: Bus; store: Store; cleanup: () => Promise<void> }> {
  if (!real) {
    const bus = new MemoryBus()
    const store = new MemoryStore()
    return { bus, store, cleanup: async () => { await bus.close(); await store.close() } }
  }
  const { KafkaBus } = await import('flowkit/kafka')
  const { MongoStore, dropMongoDatabase } = await import('flowkit/mongo')
  const brokers = (process.env['FLOWKIT_KAFKA_BROKERS'] ?? '').split(',').filter(Boolean)
  const url = process.env['FLOWKIT_MONGO_URL'] ?? ''
  if (brokers.length === 0 || url === '') throw new Error('--real needs FLOWKIT_KAFKA_BROKERS and FLOWKIT_MONGO_URL')
  const dbName = `flowkit_bench_${randomUUID().slice(0, 8)}`
  const bus = new KafkaBus({ brokers, clientId: 'flowkit-bench' })
  const store = new MongoStore({ url, dbName })
  return { bus, store, cleanup: async () => { await bus.close(); await store.close(); await dropMongoDatabase(url, dbName) } }
}

async function withRuntime<T>(handlers: Record<string, RoleHandler>, concurrency: number, fn: (c: Coordinator) => Promise<T>): Promise<T> {
  const { bus, store, cleanup } = await adapters()
  const prefix = `b${randomUUID().slice(0, 6)}.`
  const topics = { topicCmdFmt: `${prefix}cmd.{type}.v1`, topicStatusFmt: `${prefix}status.{type}.v1`, topicQuery: `${prefix}query.v1`, topicReply: `${prefix}reply.v1`, topicSignals: `${prefix}signals.v1`, topicWorkerAnnounce: `${prefix}announce.v1` }
  const coordinator = new Coordinator({ bus, store, config: { ...topics, groupId: `${prefix}coord` } })
  const worker = new Worker({ bus, store, handlers, config: { ...topics, groupPrefix: prefix, concurrency } })
  await coordinator.start()
  await worker.start()
  try {
    return await fn(coordinator)
  } finally {
    await worker.stop()
    await coordinator.stop()
    await cleanup()
  }
}

const noop: RoleHandler = { async processBatch() { return { metrics: { count: 1 } } } }

function report(name: string, fields: Record<string, number | string>): void {
  console.log(JSON.stringify({ bench: name, runtime: real ? 'kafka+mongo' : 'memory', ...fields }))
}

async function chain(tasks: number): Promise<void> {
  await withRuntime({ a: noop, b: noop, c: noop }, 8, async (c) => {
    const t0 = performance.now()
    const ids = await Promise.all(
      Array.from({ length: tasks }, () =>
        c.createTask({ graph: { nodes: [{ node_id: 'n1', type: 'a' }, { node_id: 'n2', type: 'b', depends_on: ['n1'] }, { node_id: 'n3', type: 'c', depends_on: ['n2'] }] } }),
      ),
    )
    for (const id of ids) {
      const t = await c.waitForTask(id, { timeoutMs: 600_000 })
      if (t.status !== 'finished') throw new Error(`task ${id} ${t.status}`)
    }
    const s = (performance.now() - t0) / 1000
    report('chain', { tasks, nodes: tasks * 3, seconds: +s.toFixed(2), tasks_per_s: +(tasks / s).toFixed(1), nodes_per_s: +((tasks * 3) / s).toFixed(1) })
  })
}

async function fanout(nodes: number): Promise<void> {
  await withRuntime({ a: noop }, 16, async (c) => {
    const t0 = performance.now()
    const id = await c.createTask({ graph: { nodes: Array.from({ length: nodes }, (_, i) => ({ node_id: `n${i}`, type: 'a' })) } })
    const t = await c.waitForTask(id, { timeoutMs: 600_000 })
    if (t.status !== 'finished') throw new Error(`fanout ${t.status}`)
    const s = (performance.now() - t0) / 1000
    report('fanout', { nodes, seconds: +s.toFixed(2), nodes_per_s: +(nodes / s).toFixed(1) })
  })
}

async function streaming(batches: number, batchSize: number): Promise<void> {
  const source: RoleHandler = {
    async *iterBatches() {
      for (let b = 0; b < batches; b++) yield { batch_uid: `s${b}`, payload: { items: Array.from({ length: batchSize }, (_, i) => b * batchSize + i) } }
    },
    async processBatch(batch) {
      const items = batch.payload['items'] as number[]
      return { meta: { items }, metrics: { count: items.length } }
    },
  }
  const counter: RoleHandler = {
    async processBatch(batch) {
      const items = (batch.payload['items'] as number[] | undefined) ?? ((batch.payload['meta'] as { items: number[] }).items ?? [])
      return { meta: { items }, metrics: { count: items.length } }
    },
  }
  await withRuntime({ src: source, mid: counter, sink: counter }, 4, async (c) => {
    const t0 = performance.now()
    const id = await c.createTask({
      graph: {
        nodes: [
          { node_id: 'source', type: 'src' },
          { node_id: 'mid', type: 'mid', depends_on: ['source'], io: { start_when: 'first_batch', input_inline: { input_adapter: 'pull.from_artifacts.rechunk:size', input_args: { from_nodes: ['source'], size: batchSize * 2, meta_list_key: 'items', poll_ms: 5 } } } },
          { node_id: 'sink', type: 'sink', depends_on: ['mid'], io: { start_when: 'first_batch', input_inline: { input_adapter: 'pull.from_artifacts', input_args: { from_nodes: ['mid'], poll_ms: 5 } } } },
        ],
      },
    })
    const t = await c.waitForTask(id, { timeoutMs: 600_000 })
    const s = (performance.now() - t0) / 1000
    const sink = t.nodes.find((n) => n.node_id === 'sink')?.stats['count']
    if (t.status !== 'finished' || sink !== batches * batchSize) throw new Error(`streaming ${t.status} sink=${String(sink)}`)
    const total = batches + Math.ceil(batches / 2) * 2
    report('streaming', { source_batches: batches, items: batches * batchSize, seconds: +s.toFixed(2), batches_per_s: +(total / s).toFixed(1), items_per_s: +((batches * batchSize) / s).toFixed(0) })
  })
}

const scale = real ? 0.1 : 1
const q = quick ? 0.2 : 1
await chain(Math.max(5, Math.round(300 * scale * q)))
await fanout(Math.max(10, Math.round(500 * scale * q)))
await streaming(Math.max(10, Math.round(1000 * scale * q)), 10)
