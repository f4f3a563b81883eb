#!/usr/bin/env node
/**
 * flowkit command line. `flowkit demo` runs the example sales pipeline on the embedded runtime and
 * prints live per-node progress and the final result.
 */
import { fileURLToPath } from 'node:url'
import { dirname, join } from 'node:path'
import { existsSync } from 'node:fs'
import { Coordinator } from '../coordinator/coordinator.ts'
import { Worker } from '../worker/worker.ts'
import { MemoryBus } from '../adapters/memory/bus.ts'
import { MemoryStore } from '../adapters/memory/store.ts'
import { createLogger } from '../log.ts'
import type { TaskView } from '../coordinator/view.ts'
import * as examples from './demo-pipeline.ts'
import { opsCommand } from './ops.ts'

function findRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (let i = 0; i < 5; i++) {
    if (existsSync(join(dir, 'examples', 'data', 'sales.csv'))) return dir
    dir = dirname(dir)
  }
  throw new Error('examples/data/sales.csv not found')
}

function line(t: TaskView): string {
  return t.nodes
    .map((n) => {
      const rows = n.stats['rows'] ?? n.stats['revenue_sum'] ?? ''
      return `${n.node_id}:${n.status}${rows === '' ? '' : `(${rows})`}`
    })
    .join('  ')
}

async function demo(): Promise<number> {
  const root = findRoot()
  const logger = createLogger({ level: (process.env['FLOWKIT_LOG_LEVEL'] as 'info' | undefined) ?? 'warn' })
  const bus = new MemoryBus()
  const store = new MemoryStore()
  const coordinator = new Coordinator({ bus, store, logger })
  const worker = new Worker({
    bus,
    store,
    logger,
    handlers: { csv_reader: examples.csvReader, enricher: examples.enricher, reporter: examples.reporter() },
    config: { workerId: 'demo-worker', concurrency: 3 },
  })
  await coordinator.start()
  await worker.start()
  const started = Date.now()
  const id = await coordinator.createTask({ params: { source: 'examples/data/sales.csv' }, graph: examples.salesGraph(join(root, 'examples', 'data', 'sales.csv')) })
  console.log(`flowkit demo: task ${id} submitted (embedded runtime: memory bus + memory store)`)
  let last = ''
  const timer = setInterval(() => {
    void coordinator.getTask(id).then((t) => {
      if (t === null) return
      const l = line(t)
      if (l !== last) {
        last = l
        console.log(`  [${String(Date.now() - started).padStart(5)} ms] ${l}`)
      }
    })
  }, 20)
  let task: TaskView
  try {
    task = await coordinator.waitForTask(id, { timeoutMs: 30_000 })
  } finally {
    clearInterval(timer)
  }
  console.log(`  [${String(Date.now() - started).padStart(5)} ms] ${line(task)}`)
  const report = (await coordinator.listArtifacts(id, { nodeId: 'report' })).find((a) => a.status === 'complete')
  const enrichParts = (await coordinator.listArtifacts(id, { nodeId: 'enrich' })).filter((a) => a.status === 'partial')
  console.log(`\ntask ${task.status} in ${Date.now() - started} ms`)
  console.log(`enrich wrote ${enrichParts.length} partial artifacts; revenue total (metrics.aggregate): ${String(task.nodes.find((n) => n.node_id === 'total')?.stats['revenue_sum'])}`)
  console.log('revenue by region:')
  const byRegion = (report?.meta['by_region'] ?? {}) as Record<string, { orders: number; revenue: number }>
  for (const [region, t] of Object.entries(byRegion).sort()) {
    console.log(`  ${region.padEnd(6)} ${String(t.orders).padStart(4)} orders  ${t.revenue.toFixed(2).padStart(10)}`)
  }
  await worker.stop()
  await coordinator.stop()
  await bus.close()
  await store.close()
  return task.status === 'finished' ? 0 : 1
}

const USAGE = `usage:
  flowkit demo                        run the example pipeline on the embedded runtime
  flowkit tasks [--all]               active (or all recent) tasks, from FLOWKIT_MONGO_URL
  flowkit task <task-id>              one task's nodes: status, epoch, worker, last error, stats
  flowkit dead-letters                outbox messages parked after their last send failed
  flowkit retry-dead-letter <id>      send a dead letter again (a running coordinator sends it)
environment: FLOWKIT_MONGO_URL (required by the store commands), FLOWKIT_MONGO_DB (default: the
URL's database, else "flowkit")`

async function main(argv: string[]): Promise<number> {
  const cmd = argv[0] ?? 'demo'
  switch (cmd) {
    case 'demo':
      return demo()
    case 'help':
    case '--help':
    case '-h':
      console.log(USAGE)
      return 0
    case 'tasks':
    case 'task':
    case 'dead-letters':
    case 'retry-dead-letter': {
      const url = process.env['FLOWKIT_MONGO_URL']
      if (!url) {
        console.error('flowkit: set FLOWKIT_MONGO_URL to the store to read')
        return 2
      }
      const { MongoStore } = await import('../adapters/lazy.ts')
      const dbName = process.env['FLOWKIT_MONGO_DB']
      const store = new MongoStore(dbName ? { url, dbName } : { url })
      try {
        await store.init()
        return await opsCommand(store, argv, (l) => console.log(l))
      } finally {
        await store.close()
      }
    }
    default:
      console.error(`flowkit: unknown command ${cmd}\n${USAGE}`)
      return 2
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
  },
  (err: unknown) => {
    console.error(err)
    process.exitCode = 1
  },
)
