/**
 * Spins up a coordinator and workers for a test: on the memory runtime by default, or, with
 * FLOWKIT_E2E_RUNTIME=real, on real Kafka + the MongoDB-protocol server (FLOWKIT_KAFKA_BROKERS,
 * FLOWKIT_MONGO_URL). In real mode every runtime gets its own topic/group prefix and database, so
 * tests never see each other on the shared servers. A bus or store passed in is used as is (a
 * MemoryBus passed in keeps the default topic names, for tests that inspect its records).
 */
import { randomUUID } from 'node:crypto'
import { Coordinator, MemoryBus, MemoryLogger, MemoryStore, Worker } from 'flowkit'
import type { Bus, Clock, CoordinatorConfig, CoordinatorFn, Logger, RoleHandler, Store, WorkerConfig } from 'flowkit'
import { kafkaBrokers, mongoUrl, topicNames } from './real.ts'
import { WarningsLogger, armExitGuard, trackRuntime } from './exit-guard.ts'
import { type Gate, gate } from './gate.ts'

armExitGuard()

export interface Runtime {
  bus: Bus
  store: Store
  coordinator: Coordinator
  workers: Worker[]
  /** Topic names this runtime uses (prefixed in real mode). */
  statusTopic(type: string): string
  cmdTopic(type: string): string
  /** Config every worker of this runtime gets (topics, group prefix), for workers built by hand. */
  workerBase: Partial<WorkerConfig>
  /** Config of this runtime's coordinator (topics, group), for a second coordinator built by hand. */
  coordinatorBase: Partial<CoordinatorConfig>
  addWorker(handlers: Record<string, RoleHandler>, config?: Partial<WorkerConfig>): Promise<Worker>
  stop(): Promise<void>
}

export interface RuntimeOptions {
  bus?: Bus
  store?: Store
  clock?: Clock
  coordinator?: Partial<CoordinatorConfig>
  handlers?: Record<string, RoleHandler>
  worker?: Partial<WorkerConfig>
  workers?: number
  /** Given to the coordinator and every worker (e.g. a MemoryLogger to assert on log events). */
  logger?: Logger
  /** Wraps the bus the coordinator sees (fault injection on its side only). */
  coordinatorBus?: (bus: Bus) => Bus
  /** Wraps the bus each worker sees (fault injection on the workers' side only). */
  workerBus?: (bus: Bus) => Bus
  /** Wraps the store each worker sees (fault injection on the workers' side only). */
  workerStore?: (store: Store) => Store
  /** The coordinator's own functions (besides the built-in ones). */
  functions?: Record<string, CoordinatorFn>
}

export const REAL_E2E = process.env['FLOWKIT_E2E_RUNTIME'] === 'real'

async function realAdapters(): Promise<{ bus: Bus; store: Store; drop: () => Promise<void> }> {
  const brokers = kafkaBrokers()
  const url = mongoUrl()
  if (brokers === null || url === null) throw new Error('FLOWKIT_E2E_RUNTIME=real needs FLOWKIT_KAFKA_BROKERS and FLOWKIT_MONGO_URL')
  // The main entry's adapters (driver loaded on first use); runtime.real.test.ts covers the
  // classes of 'flowkit/kafka' and 'flowkit/mongo' themselves.
  const { KafkaBus, MongoStore } = await import('flowkit')
  const { dropMongoDatabase } = await import('flowkit/mongo')
  const dbName = `flowkit_e2e_${randomUUID().slice(0, 8)}`
  return {
    bus: new KafkaBus({ brokers, clientId: 'flowkit-e2e' }),
    store: new MongoStore({ url, dbName }),
    drop: () => dropMongoDatabase(url, dbName),
  }
}

/**
 * Deletes a stopped real runtime's topics (and groups): a broker keeps a file open per partition,
 * and a real pass creates about 4,000 of them, as many as some machines allow a process.
 */
async function dropTopics(prefix: string): Promise<void> {
  const brokers = kafkaBrokers()
  if (brokers === null || prefix === '') return
  const { dropKafkaPrefix } = await import('flowkit/kafka')
  await dropKafkaPrefix(brokers, prefix, 'flowkit-e2e-cleanup').catch((err: unknown) => {
    // Cleanup only: the test's own outcome stands.
    process.stderr.write(`test runtime: could not delete the topics of ${prefix}: ${String(err)}\n`)
  })
}

/** A fresh store for a test: MongoStore on its own database in real mode, else a MemoryStore. */
export async function testStore(): Promise<{ store: Store; drop: () => Promise<void> }> {
  if (!REAL_E2E) return { store: new MemoryStore(), drop: async () => undefined }
  const real = await realAdapters()
  await real.bus.close()
  return { store: real.store, drop: real.drop }
}

export async function startRuntime(options: RuntimeOptions = {}): Promise<Runtime> {
  let drop: (() => Promise<void>) | null = null
  let bus = options.bus
  let store = options.store
  let prefix = ''
  if (REAL_E2E && (bus === undefined || store === undefined)) {
    const real = await realAdapters()
    if (bus === undefined) {
      bus = real.bus
      prefix = `t${randomUUID().slice(0, 8)}.`
    } else await real.bus.close()
    if (store === undefined) {
      store = real.store
      drop = real.drop
    }
  }
  bus ??= new MemoryBus()
  store ??= new MemoryStore()
  const topics = topicNames(prefix)
  // Without a logger of its own, a runtime logs its warnings to one the exit guard can show.
  const logger = options.logger ?? new WarningsLogger()
  const clockOpt = { ...(options.clock ? { clock: options.clock } : {}), logger }
  const coordinatorBase: Partial<CoordinatorConfig> = { schedulerTickSec: 0.2, sweepIntervalSec: 2, ...topics, groupId: `${prefix}flowkit.coordinator`, ...options.coordinator }
  const step = trackRuntime(REAL_E2E ? 'real runtime' : 'memory runtime', logger instanceof MemoryLogger ? logger : new MemoryLogger())
  const coordinator = new Coordinator({ bus: options.coordinatorBus ? options.coordinatorBus(bus) : bus, store, ...clockOpt, ...(options.functions === undefined ? {} : { functions: options.functions }), config: coordinatorBase })
  step('starting: coordinator')
  await coordinator.start()
  const workers: Worker[] = []
  const workerBase: Partial<WorkerConfig> = { ...topics, groupPrefix: prefix }
  const addWorker = async (handlers: Record<string, RoleHandler>, config: Partial<WorkerConfig> = {}): Promise<Worker> => {
    const w = new Worker({ bus: options.workerBus ? options.workerBus(bus as Bus) : (bus as Bus), store: options.workerStore ? options.workerStore(store as Store) : (store as Store), handlers, ...clockOpt, config: { ...workerBase, ...options.worker, ...config } })
    step(`starting: worker ${workers.length + 1} (${w.workerId})`)
    await w.start()
    step('running')
    workers.push(w)
    return w
  }
  if (options.handlers) for (let i = 0; i < (options.workers ?? 1); i++) await addWorker(options.handlers)
  step('running')
  const finalBus = bus
  const finalStore = store
  return {
    bus: finalBus,
    store: finalStore,
    coordinator,
    workers,
    workerBase,
    coordinatorBase,
    statusTopic: (type) => topics.topicStatusFmt.replace('{type}', type),
    cmdTopic: (type) => topics.topicCmdFmt.replace('{type}', type),
    addWorker,
    async stop() {
      for (const [i, w] of workers.entries()) {
        step(`stopping: worker ${i + 1} of ${workers.length} (${w.workerId})`)
        await w.stop()
      }
      step('stopping: coordinator')
      await coordinator.stop()
      step('stopping: bus close')
      await finalBus.close()
      step('stopping: store close')
      await finalStore.close()
      step('stopping: database drop')
      await drop?.()
      step('stopping: topics drop')
      await dropTopics(prefix)
      step(null)
    },
  }
}

/** A handler that yields `count` items in batches of `batchSize` and counts them. */
export function sourceHandler(count: number, batchSize: number): RoleHandler {
  return {
    async *iterBatches() {
      for (let i = 0; i < count; i += batchSize) {
        const items = Array.from({ length: Math.min(batchSize, count - i) }, (_, k) => i + k)
        yield { batch_uid: `s${i / batchSize}`, payload: { items } }
      }
    },
    async processBatch(batch) {
      const items = batch.payload['items'] as number[]
      return { metrics: { count: items.length }, meta: { items } }
    },
  }
}

export function noopHandler(): RoleHandler {
  return {
    async processBatch() {
      return { metrics: { count: 1 } }
    },
  }
}

/** A handler whose run holds (sleeps until cancelled); `started` opens when a run begins. */
export function holdingHandler(): { handler: RoleHandler; started: Gate } {
  const started = gate()
  return {
    started,
    handler: {
      async processBatch(_b, ctx) {
        started.open()
        await ctx.sleep(60_000)
        return {}
      },
    },
  }
}
