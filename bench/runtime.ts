/**
 * The runtime a bench runs on: memory bus + memory store, or (`--real`) KafkaBus + MongoStore on a
 * fresh database and topic prefix, both removed afterwards. Only flowkit's public API is used.
 */
import { randomUUID } from 'node:crypto'
import { Coordinator, MemoryBus, MemoryStore, Worker, createLogger, type Bus, type LogLevel, type ObservabilityOptions, type RoleHandler, type Store } from 'flowkit'
import { counted, newCounters, type PortCounters } from './counting.ts'

export interface Adapters {
  bus: Bus
  store: Store
  /** Topic and group prefix of this runtime (unique per run). */
  prefix: string
  kind: 'memory' | 'kafka+mongo'
  cleanup: () => Promise<void>
}

export function realEnv(): { brokers: string[]; url: string } {
  const brokers = (process.env['FLOWKIT_KAFKA_BROKERS'] ?? '').split(',').filter(Boolean)
  const url = process.env['FLOWKIT_MONGO_URL'] ?? ''
  if (brokers.length === 0 || url === '') {
    throw new Error('--real needs FLOWKIT_KAFKA_BROKERS and FLOWKIT_MONGO_URL (e.g. set -a; . .run/services.env; set +a)')
  }
  return { brokers, url }
}

/** Deletes the topics (and consumer groups) whose name starts with `prefix`. Best effort. */
export async function dropKafkaPrefix(brokers: string[], prefix: string): Promise<void> {
  const kafka = await import('flowkit/kafka')
  await kafka.dropKafkaPrefix(brokers, prefix, 'flowkit-bench-cleanup').catch((err: unknown) => {
    console.error(`bench: could not delete topics with prefix ${prefix}: ${String(err)}`)
  })
}

export async function openAdapters(real: boolean, logLevel = 'warn'): Promise<Adapters> {
  const prefix = `bench${randomUUID().slice(0, 8)}.`
  if (!real) {
    const bus = new MemoryBus()
    const store = new MemoryStore()
    return { bus, store, prefix, kind: 'memory', cleanup: async () => { await bus.close(); await store.close() } }
  }
  const { brokers, url } = realEnv()
  const { KafkaBus } = await import('flowkit/kafka')
  const { MongoStore, dropMongoDatabase } = await import('flowkit/mongo')
  const dbName = `flowkit_bench_${randomUUID().slice(0, 8)}`
  const bus = new KafkaBus({ brokers, clientId: 'flowkit-bench', logger: createLogger({ level: logLevel as LogLevel }) })
  const store = new MongoStore({ url, dbName })
  return {
    bus,
    store,
    prefix,
    kind: 'kafka+mongo',
    cleanup: async () => {
      await bus.close().catch(() => undefined)
      await store.close().catch(() => undefined)
      await dropMongoDatabase(url, dbName).catch((err: unknown) => console.error(`bench: could not drop ${dbName}: ${String(err)}`))
      await dropKafkaPrefix(brokers, prefix)
    },
  }
}

/**
 * Every topic of a run under its prefix, the owners' topic and the control topic included, so
 * runs never share a topic and `dropKafkaPrefix` removes them all.
 */
export function benchTopics(p: string): Record<string, string> {
  return {
    topicCmdFmt: `${p}cmd.{type}.v1`,
    topicStatusFmt: `${p}status.{type}.v1`,
    topicQuery: `${p}query.v1`,
    topicReply: `${p}reply.v1`,
    topicSignals: `${p}signals.v1`,
    topicWorkerAnnounce: `${p}announce.v1`,
    topicControl: `${p}control.v1`,
    topicTasks: `${p}coord.tasks.v1`,
  }
}

export interface Runtime {
  coordinator: Coordinator
  counters: PortCounters
  kind: Adapters['kind']
}

export interface RuntimeOptions {
  real: boolean
  logLevel: string
  handlers: Record<string, RoleHandler>
  concurrency: number
  /** Sees every call the coordinator makes on its store (method name and arguments). */
  spyCoordinatorStore?: (method: string, args: unknown[]) => void
  /** Traces and metrics of the coordinator and the worker (default: the flowkit default). */
  observability?: ObservabilityOptions | false
  /** More coordinator config (e.g. taskRetentionSec for a long run). */
  coordinatorConfig?: Record<string, unknown>
}

/**
 * Starts one coordinator and one worker (each given its own counting proxy of the same bus and
 * store), runs `fn`, then stops everything and removes the run's database and topics.
 */
export async function withRuntime<T>(o: RuntimeOptions, fn: (rt: Runtime) => Promise<T>): Promise<T> {
  const a = await openAdapters(o.real, o.logLevel)
  const p = a.prefix
  const topics = benchTopics(p)
  const counters = newCounters()
  const logger = createLogger({ level: o.logLevel as LogLevel })
  const coordinator = new Coordinator({
    bus: counted(a.bus, counters.coordBus),
    store: counted(a.store, counters.coordStore, o.spyCoordinatorStore),
    logger,
    config: { ...o.coordinatorConfig, ...topics, groupId: `${p}coord` },
    ...(o.observability === undefined ? {} : { observability: o.observability }),
  })
  const worker = new Worker({
    bus: counted(a.bus, counters.workerBus),
    store: counted(a.store, counters.workerStore),
    logger,
    handlers: o.handlers,
    config: { ...topics, groupPrefix: p, concurrency: o.concurrency },
    ...(o.observability === undefined ? {} : { observability: o.observability }),
  })
  try {
    await coordinator.start()
    await worker.start()
    return await fn({ coordinator, counters, kind: a.kind })
  } finally {
    await worker.stop().catch((err: unknown) => console.error(`bench: worker.stop: ${String(err)}`))
    await coordinator.stop().catch((err: unknown) => console.error(`bench: coordinator.stop: ${String(err)}`))
    await a.cleanup()
  }
}

/** The no-op handler of the chain and fan-out benches. */
export const noop: RoleHandler = {
  async processBatch() {
    return { metrics: { count: 1 } }
  },
}
