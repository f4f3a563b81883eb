/**
 * flowkit benchmarks: `npm run bench [-- --real] [--quick] [--only a,b] [--compare bullmq]`.
 * What each bench measures and how to read it: docs/benchmarks.md. Every bench goes through the
 * public API only ('flowkit', 'flowkit/kafka', 'flowkit/mongo').
 *
 * stdout: one JSON line per bench. stderr: progress and the human table. The whole run (with the
 * machine, node version, date and git commit) is written to bench/results/latest.json (--out).
 */
import { chain, chainSingle } from './chain.ts'
import { fanout } from './fanout.ts'
import { parseOptions, type BenchName, type Options } from './options.ts'
import { rawBus } from './raw-bus.ts'
import { rawStore } from './raw-store.ts'
import { printTable, writeResults } from './report.ts'
import { log, round, type Result } from './stats.ts'
import { streaming } from './streaming.ts'

let o: Options
try {
  o = parseOptions(process.argv.slice(2))
} catch (err) {
  log(err instanceof Error ? err.message : String(err))
  process.exit(2)
}
// Loaded when asked for: --coordinators brings in the Kafka and MongoDB drivers (bench/proc-common.ts)
// and --observability (--chain-observability sampled|full) the OpenTelemetry SDK. Their code and data in the heap moved the embedded
// chain's first major collection into its timed run (8.4–9.7k node runs/s instead of 10.2–10.6k).
const coordinatorsBench: typeof import('./coordinators.ts').coordinatorsBench = async (...a) => (await import('./coordinators.ts')).coordinatorsBench(...a)
const chainObservability: typeof import('./observability.ts').chainObservability = async (...a) => (await import('./observability.ts')).chainObservability(...a)
const s = o.sizes
const common = { real: o.real, logLevel: o.logLevel }
const runtime = o.real ? 'kafka+mongo' : 'memory'

const benches: Record<BenchName, () => Promise<Result[]>> = {
  chain: async () => {
    if (o.observability) return [await chainObservability({ ...common, tasks: s.chainTasks, concurrency: s.chainConcurrency, rounds: o.rounds })]
    if (o.chainObservability === null) return [await chain({ ...common, tasks: s.chainTasks, concurrency: s.chainConcurrency })]
    const setting = await (await import('./observability.ts')).observabilitySetting(o.chainObservability)
    const r = await chain({ ...common, tasks: s.chainTasks, concurrency: s.chainConcurrency, ...(setting.observability === undefined ? {} : { observability: setting.observability }) })
    const spans = await setting.spans()
    return [{ ...r, observability: o.chainObservability, ...(spans === null ? {} : { spans_exported: spans }) }]
  },
  chain_steady: async () => {
    if (o.real) {
      log('chain_steady: embedded only (it purges ended tasks every second, which a shared test server would pay for)')
      return []
    }
    const { chainSteady } = await import('./chain-steady.ts')
    const steady = { logLevel: o.logLevel, tasks: s.chainTasks, concurrency: s.chainConcurrency, rounds: s.steadyRounds }
    if (o.chainObservability === null) return [await chainSteady(steady)]
    const setting = await (await import('./observability.ts')).observabilitySetting(o.chainObservability)
    const r = await chainSteady({ ...steady, ...(setting.observability === undefined ? {} : { observability: setting.observability }) })
    const spans = await setting.spans()
    return [{ ...r, observability: o.chainObservability, ...(spans === null ? {} : { spans_exported: spans }) }]
  },
  chain_single: async () => [await chainSingle({ ...common, runs: s.singleChains, concurrency: s.chainConcurrency })],
  fanout: async () => [await fanout({ ...common, widths: s.fanoutWidths, concurrency: s.fanoutConcurrency })],
  streaming: async () => [await streaming({ ...common, batches: s.streamBatches, batchSize: s.streamBatchSize })],
  raw: async () => [
    await rawBus({ ...common, roundTrips: s.rawRoundTrips, produceBatches: s.rawProduceBatches }),
    await rawStore({ ...common, ops: s.rawStoreOps, collectionSize: s.rawStoreCollection }),
  ],
}

const results: Result[] = []
const failures: string[] = []
const comparisons: Record<string, unknown> = {}
log(`runtime ${runtime}${o.quick ? ' (quick)' : ''}: ${[...o.only, ...(o.coordinators.length > 0 ? [`coordinators ${o.coordinators.join(',')}`] : [])].join(', ')}${o.compare.length > 0 ? ` + compare ${o.compare.join(', ')}` : ''}`)
for (const name of o.only) {
  const t0 = performance.now()
  log(`${name} …`)
  try {
    results.push(...(await benches[name]()))
  } catch (err) {
    failures.push(`${name}: ${err instanceof Error ? err.message : String(err)}`)
    log(`${name} FAILED: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`)
  }
  log(`${name} done in ${round((performance.now() - t0) / 1000, 1)} s`)
}
if (o.compare.includes('bullmq')) {
  const t0 = performance.now()
  log(`chain vs bullmq, ${o.rounds} rounds of fresh processes …`)
  try {
    const { pairedChainBullmq } = await import('./paired.ts')
    const b = await pairedChainBullmq({ ...common, chains: s.chainTasks, concurrency: s.chainConcurrency, rounds: o.rounds })
    results.push(b)
    comparisons['flowkit_over_bullmq'] = b['paired_ratio_median']
    comparisons['note'] = `flowkit ${runtime} chain node runs/s ÷ BullMQ jobs/s: the median of ${o.rounds} rounds, each a fresh process of each run in turns (same chain count and concurrency)`
  } catch (err) {
    failures.push(`bullmq: ${err instanceof Error ? err.message : String(err)}`)
    log(`bullmq FAILED: ${err instanceof Error ? err.message : String(err)}`)
  }
  log(`chain vs bullmq done in ${round((performance.now() - t0) / 1000, 1)} s`)
}
let coordinators: Result | null = null
if (o.coordinators.length > 0) {
  const t0 = performance.now()
  log(`coordinators ${o.coordinators.join(', ')} …`)
  try {
    coordinators = await coordinatorsBench({ counts: o.coordinators, tasks: s.chainTasks, concurrency: s.chainConcurrency, logLevel: o.logLevel, idleMs: o.quick ? 3000 : 5000 })
  } catch (err) {
    failures.push(`coordinators: ${err instanceof Error ? err.message : String(err)}`)
    log(`coordinators FAILED: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`)
  }
  log(`coordinators done in ${round((performance.now() - t0) / 1000, 1)} s`)
}
printTable(coordinators === null ? results : [...results, coordinators], comparisons, runtime)
if (o.only.length > 0 || o.compare.length > 0 || coordinators !== null) {
  writeResults(o.out, o, results, { ...comparisons, ...(failures.length > 0 ? { failures } : {}) }, coordinators)
  log(`results written to ${o.out}`)
}
if (failures.length > 0) {
  log(`${failures.length} bench(es) failed:\n  ${failures.join('\n  ')}`)
  process.exitCode = 1
}
// Client libraries may keep timers or sockets alive after close: do not hang on them.
setTimeout(() => process.exit(), 2000).unref()
