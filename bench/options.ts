/** Command-line options of `npm run bench` and the sizes they imply. */

export const ALL_BENCHES = ['chain', 'chain_single', 'fanout', 'streaming', 'raw', 'chain_steady'] as const
export type BenchName = (typeof ALL_BENCHES)[number]

export interface Sizes {
  chainTasks: number
  chainConcurrency: number
  /** Rounds of chain_steady (embedded only). */
  steadyRounds: number
  singleChains: number
  fanoutWidths: number[]
  fanoutConcurrency: number
  streamBatches: number
  streamBatchSize: number
  rawRoundTrips: number
  rawProduceBatches: number
  rawStoreOps: number
  rawStoreCollection: number
}

export interface Options {
  real: boolean
  quick: boolean
  only: BenchName[]
  compare: string[]
  logLevel: string
  out: string
  sizes: Sizes
  /** chain: compare observability off / default / traces+metrics (bench/observability.ts). */
  observability: boolean
  /** Rounds of that comparison and of --compare bullmq (each side once per round, each in a fresh process). */
  rounds: number
  /** `--chain-observability S`: the chain bench under one setting of that comparison (what its processes run). */
  chainObservability: 'off' | 'default' | 'sampled' | 'full' | null
  /** `--coordinators 1,2,3`: the chain workload on N coordinator processes, for each N (bench/coordinators.ts). */
  coordinators: number[]
}

const HELP = `npm run bench [-- options]
  --real             Kafka + MongoDB protocol (FLOWKIT_KAFKA_BROKERS, FLOWKIT_MONGO_URL) instead of memory
  --quick            sizes ~5x smaller
  --only a,b         benches to run: ${ALL_BENCHES.join(', ')} (default: all)
  --compare bullmq   also BullMQ 3-job flows on a local redis-server (same chain count), side by side with
                     the chain bench: --rounds rounds, each a fresh process of each in turns (bench/paired.ts)
  --chain-tasks N    chains of the chain bench (and of --compare bullmq): default 2000 (400 with --quick);
                     a longer timed part is steadier (a 2,000-chain run lasts under a second embedded)
  --observability    chain: the overhead of traces + metrics (off vs default vs OTel SDK), in rounds of fresh processes
  --rounds N         rounds of --observability and --compare bullmq (default 5 with --quick, else 7)
  --chain-observability off|default|sampled|full
                     the chain bench under one of those settings (what each --observability process runs)
  --coordinators 1,2,3
                     with --real: the chain workload on N coordinators sharing the load, each in its own
                     process, for each N; CPU of store, broker, coordinators and worker (alone unless --only)
  --log-level L      flowkit log level during the benches (default warn; FLOWKIT_LOG_LEVEL wins)
  --out FILE         results file (default bench/results/latest.json)`

function value(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(name)
  if (i >= 0) return argv[i + 1]
  const eq = argv.find((a) => a.startsWith(`${name}=`))
  return eq?.slice(name.length + 1)
}

function list(s: string | undefined): string[] {
  return (s ?? '').split(',').map((x) => x.trim()).filter(Boolean)
}

export function sizesFor(real: boolean, quick: boolean): Sizes {
  const q = (n: number, min = 1): number => Math.max(min, Math.round(quick ? n / 5 : n))
  return {
    chainTasks: q(2000, 20),
    chainConcurrency: 32,
    steadyRounds: quick ? 4 : 8,
    singleChains: q(20, 5),
    fanoutWidths: quick ? [10, 40, 160, 400] : [50, 200, 800, 2000],
    fanoutConcurrency: 32,
    streamBatches: q(100, 20),
    streamBatchSize: 10,
    rawRoundTrips: q(real ? 100 : 500, 20),
    rawProduceBatches: q(real ? 50 : 200, 10),
    rawStoreOps: q(real ? 500 : 20000, 100),
    rawStoreCollection: q(2000, 400),
  }
}

export function parseOptions(argv: string[]): Options {
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(HELP)
    process.exit(0)
  }
  const real = argv.includes('--real')
  const quick = argv.includes('--quick')
  const coordinators = list(value(argv, '--coordinators')).map(Number)
  for (const n of coordinators) if (!Number.isInteger(n) || n < 1 || n > 12) throw new Error(`--coordinators: counts are integers from 1 to 12 (the owners' topic has 12 partitions), not ${n}`)
  if (coordinators.length > 0 && !real) {
    throw new Error('--coordinators needs --real: each coordinator runs in its own process, and processes cannot share the in-memory bus and store (set -a; . .run/services.env; set +a; npm run bench -- --real --coordinators 1,2,3)')
  }
  const only = list(value(argv, '--only'))
  for (const b of only) if (!(ALL_BENCHES as readonly string[]).includes(b)) throw new Error(`--only: unknown bench ${b} (${ALL_BENCHES.join(', ')})`)
  const sizes = sizesFor(real, quick)
  const chainTasks = value(argv, '--chain-tasks')
  if (chainTasks !== undefined) {
    const n = Number(chainTasks)
    if (!Number.isInteger(n) || n < 1 || n > 1_000_000) throw new Error(`--chain-tasks: a whole number of chains from 1 to 1,000,000, not ${chainTasks}`)
    sizes.chainTasks = n
  }
  const chainObs = value(argv, '--chain-observability') ?? null
  if (chainObs !== null && !['off', 'default', 'sampled', 'full'].includes(chainObs)) throw new Error(`--chain-observability: off, default, sampled or full, not ${chainObs}`)
  const compare = list(value(argv, '--compare'))
  for (const c of compare) if (c !== 'bullmq') throw new Error(`--compare: only bullmq is supported, not ${c}`)
  return {
    real,
    quick,
    // --coordinators alone runs only that bench; with --only, the listed benches run too.
    only: only.length > 0 ? (only as BenchName[]) : coordinators.length > 0 ? [] : [...ALL_BENCHES],
    compare,
    logLevel: process.env['FLOWKIT_LOG_LEVEL'] ?? value(argv, '--log-level') ?? 'warn',
    out: value(argv, '--out') ?? new URL('./results/latest.json', import.meta.url).pathname,
    sizes,
    observability: argv.includes('--observability'),
    rounds: Number(value(argv, '--rounds') ?? (quick ? 5 : 7)),
    chainObservability: chainObs as Options['chainObservability'],
    coordinators,
  }
}
