/**
 * The scenarios and the two profiles. `short` (CI, `npm test` when enabled) runs seven scenarios,
 * six with a few tasks each and one with three coordinators sharing 200 tasks; `--long` runs the
 * full matrix: SIGKILL and SIGSTOP/SIGCONT of every process kind, broker restart and wipe, store
 * restart, a zombie coordinator, clock skew both ways, bus duplication and reordering, the
 * malformed flood, several coordinators with 500 tasks, and everything at once.
 */
import type { WorkerSlot } from './cluster.ts'
import type { Fault } from './faults.ts'
import type { ChaosSpec, KafkaTuning } from './spec.ts'
import type { WorkloadSpec } from './workload.ts'

export interface Scenario {
  name: string
  description: string
  faults: Fault[]
  /** Worker processes (default: two with the system clock). */
  workers?: WorkerSlot[]
  /** Coordinator config overrides (e.g. `maxRunningNodes`) over COORDINATOR_CONFIG. */
  coordinatorConfig?: Record<string, unknown>
  /** Worker config overrides (e.g. `concurrency`) over WORKER_CONFIG. */
  workerConfig?: Record<string, unknown>
  /** Coordinator processes sharing the deployment at the start (default 1). */
  coordinators?: number
  /** After the faults are over: how long tasks may take to end (default: the profile's). */
  completionMs?: number
  /** Bus duplication/reordering in the coordinator and worker processes. */
  chaos?: Omit<ChaosSpec, 'seed'>
  workload?: Partial<WorkloadSpec>
}

export interface Profile {
  name: 'short' | 'long'
  workload: WorkloadSpec
  /** After the faults are over (healed): how long tasks may take to end. */
  completionMs: number
  scenarios: Scenario[]
}

/** Fast timers so that faults are detected in seconds (same for every scenario). */
export const COORDINATOR_CONFIG: Record<string, unknown> = {
  schedulerTickSec: 0.2,
  acceptTimeoutSec: 3,
  discoveryWindowSec: 2,
  heartbeatSoftSec: 5,
  heartbeatHardSec: 60,
  leaseTtlSec: 10,
  cancelGraceSec: 5,
  outboxDispatchTickSec: 0.1,
  snapshotIntervalSec: 2,
  defaultBackoffSec: 0.3,
}

export const WORKER_CONFIG: Record<string, unknown> = {
  concurrency: 3,
  leaseTtlSec: 6,
  hbIntervalSec: 1,
  announceIntervalSec: 5,
  pullPollMsDefault: 100,
  pullEmptyBackoffMsMax: 500,
  dbCancelPollMs: 300,
  cancelGraceMs: 2000,
}

export const KAFKA_TUNING: KafkaTuning = { sessionTimeoutMs: 6000, heartbeatIntervalMs: 500, rebalanceTimeoutMs: 6000, requestTimeoutMs: 10_000 }

const SKEWED: WorkerSlot[] = [{}, { clockOffsetMs: -120_000 }]

const SHORT: Scenario[] = [
  {
    name: 'coordinator-kill-loop',
    description: 'the coordinator is SIGKILLed three times, 7 s apart, and started again 1 s later',
    faults: [{ do: 'kill', target: 'coordinator', at: 3000, every: 7000, times: 3, downMs: 1000 }],
  },
  {
    name: 'worker-kill',
    description: 'each worker is SIGKILLed once while it runs nodes, started again 2 s later (same worker id)',
    faults: [
      { do: 'kill', target: 'worker', worker: 0, at: 4000, downMs: 2000 },
      { do: 'kill', target: 'worker', worker: 1, at: 11_000, downMs: 2000 },
    ],
  },
  {
    name: 'broker-restart',
    description: 'the Kafka broker is stopped (SIGTERM) and started again 3 s later on the same port and data',
    faults: [{ do: 'restart', target: 'broker', at: 5000, downMs: 3000 }],
  },
  {
    name: 'store-pause',
    description: 'FerretDB is frozen (SIGSTOP) for 8 s, then continued',
    faults: [{ do: 'pause', target: 'store', at: 4000, forMs: 8000 }],
  },
  {
    name: 'malformed-flood',
    description: '2,000 malformed records on the status and command topics while tasks run',
    faults: [{ do: 'flood', at: 3000, count: 2000 }],
  },
  {
    name: 'clock-skew',
    description: 'worker 2 runs with its clock 120 s behind (leases, events and artifacts stamped in the past)',
    workers: SKEWED,
    faults: [],
  },
  {
    name: 'coordinators-3',
    description: 'three coordinator processes share 200 five-node tasks submitted through all of them; one is SIGKILLed for good mid-run, then a fourth process joins',
    coordinators: 3,
    // Each coordinator starts at most 15 worker nodes at once: three coordinators fill 45 of the 60
    // worker slots, four (after the join) all of them, so starts do not queue at the workers past
    // the 3 s accept timeout. Periodic snapshots are rare: on FerretDB 1.x every snapshot write
    // scans the tasks collection.
    coordinatorConfig: { maxRunningNodes: 15, snapshotIntervalSec: 60 },
    workers: [{}, {}, {}],
    // Leases of 15 s, longer than the consumer session (6 s) plus a rebalance, as in a deployment
    // (60 s against 10 s by default): the status partitions a killed coordinator held are given to
    // another one, which delivers what the killed one read but did not forward, before the owner
    // judges the leases of those nodes. With leases no longer than the session the owner finishes
    // such a node from its complete artifact first and its metrics are lost: the long profile's
    // `coordinators-short-lease` runs it that way (docs/reliability.md).
    workerConfig: { concurrency: 20, leaseTtlSec: 15 },
    workload: { ok: 190, fail: 5, cancel: 5, shape: 'diamond', batches: 1, items: 4, rechunk: 4, delayMs: 0, submitEveryMs: 40, inFlight: 4 },
    faults: [
      { do: 'retire', coordinator: 1, at: 4000 },
      { do: 'add', at: 14_000 },
    ],
  },
]

const LONG: Scenario[] = [
  { name: 'baseline', description: 'no fault: the control run (every other scenario is this plus faults)', faults: [] },
  { ...(SHORT[0] as Scenario), faults: [{ do: 'kill', target: 'coordinator', at: 3000, every: 6000, times: 5, downMs: 1000 }], description: 'the coordinator is SIGKILLed five times, 6 s apart' },
  {
    name: 'coordinator-pause',
    description: 'the coordinator is frozen (SIGSTOP) twice for 12 s, longer than its consumer session and the leases',
    workload: { submitEveryMs: 2000 },
    faults: [{ do: 'pause', target: 'coordinator', at: 4000, forMs: 12_000, every: 18_000, times: 2 }],
  },
  {
    name: 'coordinator-zombie',
    description: 'the coordinator is frozen, a second coordinator process joins and claims its tasks, the old one is continued for 6 s (two coordinators, one stale), then killed',
    faults: [{ do: 'zombie', at: 5000, forMs: 8000, overlapMs: 6000 }],
  },
  {
    name: 'worker-kill',
    description: 'each worker is SIGKILLed twice while it runs nodes, started again 2 s later',
    faults: [
      { do: 'kill', target: 'worker', worker: 0, at: 4000, every: 12_000, times: 2, downMs: 2000 },
      { do: 'kill', target: 'worker', worker: 1, at: 9000, every: 12_000, times: 2, downMs: 2000 },
    ],
  },
  {
    name: 'worker-pause',
    description: 'the workers are frozen in turn, three times for 10 s (beyond their lease), and continued: their old runs come back at a stale epoch',
    workload: { submitEveryMs: 2000 },
    faults: [
      { do: 'pause', target: 'worker', worker: 0, at: 3000, forMs: 10_000, every: 24_000, times: 2 },
      { do: 'pause', target: 'worker', worker: 1, at: 15_000, forMs: 10_000 },
    ],
  },
  { name: 'broker-kill', description: 'the broker is SIGKILLed and started again 3 s later', faults: [{ do: 'kill', target: 'broker', at: 5000, downMs: 3000 }] },
  { name: 'broker-pause', description: 'the broker is frozen for 10 s', faults: [{ do: 'pause', target: 'broker', at: 5000, forMs: 10_000 }] },
  SHORT[2] as Scenario,
  {
    name: 'broker-wipe',
    description: 'the broker loses its disk: killed, data dir removed, re-formatted and started on the same port 2 s later',
    faults: [{ do: 'wipe', target: 'broker', at: 6000, downMs: 2000 }],
  },
  { name: 'store-kill', description: 'FerretDB is SIGKILLed and started again 3 s later (same data)', faults: [{ do: 'kill', target: 'store', at: 5000, downMs: 3000 }] },
  { ...(SHORT[3] as Scenario), faults: [{ do: 'pause', target: 'store', at: 4000, forMs: 10_000 }], description: 'FerretDB is frozen for 10 s' },
  { name: 'store-restart', description: 'FerretDB is stopped (SIGTERM) and started again 3 s later', faults: [{ do: 'restart', target: 'store', at: 5000, downMs: 3000 }] },
  { ...(SHORT[5] as Scenario), name: 'clock-skew-behind' },
  { name: 'clock-skew-ahead', description: 'worker 2 runs with its clock 120 s ahead', workers: [{}, { clockOffsetMs: 120_000 }], faults: [] },
  {
    name: 'bus-dup-reorder',
    description: 'every process duplicates 20% and holds back 20% of what it produces (0-300 ms): duplicated and reordered commands and events',
    chaos: { duplicate: 0.2, delay: 0.2, delayMs: [0, 300], topics: ['status.', 'cmd.'] },
    faults: [],
  },
  { ...(SHORT[4] as Scenario), faults: [{ do: 'flood', at: 3000, every: 8000, times: 2, count: 2000 }], description: '2 × 2,000 malformed records while tasks run' },
  {
    ...(SHORT[6] as Scenario),
    name: 'coordinators-short-lease',
    description: 'coordinators-3 with worker leases of 6 s, no longer than the consumer session: what the killed coordinator read but did not forward may come back after its nodes were finished from their artifacts',
    workerConfig: { ...SHORT[6]?.workerConfig, leaseTtlSec: 6 },
  },
  {
    ...(SHORT[6] as Scenario),
    description: 'three coordinator processes share 500 five-node tasks submitted through all of them; one is SIGKILLed for good mid-run, then a fourth process joins',
    workload: { ...SHORT[6]?.workload, ok: 490, fail: 5, cancel: 5, submitEveryMs: 30 },
    // FerretDB 1.x scans a collection for every lookup and update: 500 tasks take about five
    // minutes on two cores (the store server is the bottleneck).
    completionMs: 480_000,
    faults: [
      { do: 'retire', coordinator: 1, at: 8000 },
      { do: 'add', at: 25_000 },
    ],
  },
  {
    name: 'everything',
    description: 'all at once: duplication/reordering, a skewed worker, coordinator and worker kills, a broker restart, a store pause, a flood',
    workers: [{}, {}, { clockOffsetMs: -120_000 }],
    chaos: { duplicate: 0.1, delay: 0.1, delayMs: [0, 200], topics: ['status.', 'cmd.'] },
    faults: [
      { do: 'kill', target: 'coordinator', at: 4000, every: 15_000, times: 2, downMs: 1000 },
      { do: 'kill', target: 'worker', at: 7000, every: 10_000, times: 2, downMs: 2000 },
      { do: 'restart', target: 'broker', at: 12_000, downMs: 3000 },
      { do: 'pause', target: 'store', at: 22_000, forMs: 6000 },
      { do: 'flood', at: 9000, count: 2000 },
    ],
  },
]

export const PROFILES: Record<'short' | 'long', Profile> = {
  short: {
    name: 'short',
    workload: { ok: 4, fail: 1, cancel: 1, batches: 6, items: 4, rechunk: 5, delayMs: 250, submitEveryMs: 1500 },
    completionMs: 60_000,
    scenarios: SHORT,
  },
  long: {
    name: 'long',
    workload: { ok: 10, fail: 2, cancel: 2, batches: 8, items: 5, rechunk: 7, delayMs: 250, submitEveryMs: 1000 },
    completionMs: 120_000,
    scenarios: LONG,
  },
}
