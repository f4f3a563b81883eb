/** Spins up a coordinator and workers on the memory runtime (or given adapters) for a test. */
import { Coordinator, MemoryBus, MemoryStore, Worker } from 'flowkit'
import type { Bus, Clock, CoordinatorConfig, RoleHandler, Store, WorkerConfig } from 'flowkit'

export interface Runtime {
  bus: Bus
  store: Store
  coordinator: Coordinator
  workers: Worker[]
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
}

export async function startRuntime(options: RuntimeOptions = {}): Promise<Runtime> {
  const bus = options.bus ?? new MemoryBus()
  const store = options.store ?? new MemoryStore()
  const clockOpt = options.clock ? { clock: options.clock } : {}
  const coordinator = new Coordinator({ bus, store, ...clockOpt, config: { schedulerTickSec: 0.2, ...options.coordinator } })
  await coordinator.start()
  const workers: Worker[] = []
  const addWorker = async (handlers: Record<string, RoleHandler>, config: Partial<WorkerConfig> = {}): Promise<Worker> => {
    const w = new Worker({ bus, store, handlers, ...clockOpt, config: { ...options.worker, ...config } })
    await w.start()
    workers.push(w)
    return w
  }
  if (options.handlers) for (let i = 0; i < (options.workers ?? 1); i++) await addWorker(options.handlers)
  return {
    bus,
    store,
    coordinator,
    workers,
    addWorker,
    async stop() {
      for (const w of workers) await w.stop()
      await coordinator.stop()
      await bus.close()
      await store.close()
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
