/**
 * coordinators (`--real --coordinators 1,2,3`): the chain bench's workload (T tasks of the 3-node
 * no-op chain, all submitted at once after a warm-up) on N coordinators sharing one deployment
 * (docs/scaling.md), for each N given. Each coordinator runs in its own process
 * (bench/coordinator-proc.ts); one worker of concurrency 32 runs in its own process too
 * (bench/worker-proc.ts), the same for every N, so only the coordinators change. The bench process
 * only submits and times: task i is created through coordinator i mod N over IPC (a load balancer
 * in front of the coordinators; a coordinator that does not own the task hands it over through the
 * owners' topic), and each task's terminal time is the one its owner announced on `flowkit:events`.
 *
 * Reported per N: node runs/s, task latency, and the CPU each part used over the measured window
 * (first createTask to last task terminal), from /proc: the store server (FerretDB), the broker
 * (Kafka's java process), the coordinator processes, the worker process, the bench process, and
 * the rest of the machine. Every N runs on a fresh database and topic prefix, removed afterwards.
 */
import { randomUUID } from 'node:crypto'
import { cpus } from 'node:os'
import { CHAIN_GRAPH } from './chain.ts'
import { BenchProc, stopAll, whenAborted } from './cluster.ts'
import { cpuBetween, sampleCpu, servicePids, type CpuSample } from './cpu.ts'
import type { ProcNotice, ProcSpec } from './proc-common.ts'
import { wallNow } from './proc-common.ts'
import { dropKafkaPrefix, realEnv } from './runtime.ts'
import { emit, latencyFields, log, rate, round, type Result } from './stats.ts'

export interface CoordinatorsOptions {
  counts: number[]
  tasks: number
  concurrency: number
  logLevel: string
  /** Length of the idle window measured before the run (ms). */
  idleMs: number
}

const ROLES = ['a', 'b', 'c']
const START_TIMEOUT_MS = 120_000

type Ownership = { partitions: number[]; of: number; generation: number }

/**
 * Waits until the N coordinators own every partition between them, each at least one, none twice,
 * and nothing changed over two polls 300 ms apart. (Generations are not compared: with the
 * cooperative assignor a member whose partitions did not move may keep reporting an older one.)
 */
async function stableOwnership(coords: BenchProc[], timeoutMs = 90_000): Promise<Ownership[]> {
  const deadline = performance.now() + timeoutMs
  let previous = ''
  for (;;) {
    const owns = await Promise.all(coords.map((c) => c.request<Ownership>('ownership')))
    const of = owns[0]?.of ?? 0
    const all = new Set(owns.flatMap((o) => o.partitions))
    const ok = owns.every((o) => o.partitions.length > 0 && o.of === of) && all.size === of && owns.reduce((n, o) => n + o.partitions.length, 0) === of
    const now = JSON.stringify(owns)
    if (ok && now === previous) return owns
    previous = ok ? now : ''
    if (performance.now() > deadline) throw new Error(`ownership not settled after ${timeoutMs} ms: ${now}`)
    await new Promise((r) => setTimeout(r, 300))
  }
}

/** Task ids → wall-clock time their owner announced them terminal; waits for a set of ids. */
class Terminals {
  readonly at = new Map<string, { at: number; event: string }>()
  polled = 0
  leaseExpiries = new Map<string, number>()
  #wake: (() => void) | null = null

  notice(from: string, n: ProcNotice): void {
    if ('terminal' in n) {
      for (const t of n.terminal) if (!this.at.has(t.task_id)) this.at.set(t.task_id, { at: t.at, event: t.event })
      this.#wake?.()
    } else if ('leaseExpiries' in n) this.leaseExpiries.set(from, n.leaseExpiries)
  }

  /**
   * Waits until every id is terminal. Only when no task became terminal for 10 s (an announce
   * missed) are the ids left read through `poller` (getTask: a store read for a task it does not
   * own, load on the store server that would distort the run), then every 5 s while stalled.
   */
  async waitAll(ids: string[], poller: BenchProc, guard: Promise<never>, timeoutMs: number): Promise<void> {
    const stallMs = 10_000
    const deadline = performance.now() + timeoutMs
    let lastLeft = -1
    let lastProgress = performance.now()
    let lastPoll = 0
    for (;;) {
      const left = ids.filter((id) => !this.at.has(id))
      if (left.length === 0) return
      const now = performance.now()
      if (left.length !== lastLeft) {
        lastLeft = left.length
        lastProgress = now
      }
      if (now > deadline) throw new Error(`${left.length} of ${ids.length} tasks not terminal after ${timeoutMs} ms`)
      const nextPoll = Math.max(lastProgress + stallMs, lastPoll + stallMs / 2)
      if (now >= nextPoll) {
        lastPoll = now
        const st = await Promise.race([poller.request<Record<string, string | null>>('status', left), guard])
        for (const [id, s] of Object.entries(st)) {
          if ((s === 'finished' || s === 'failed' || s === 'cancelled') && !this.at.has(id)) {
            this.at.set(id, { at: wallNow(), event: `task.${s}` })
            this.polled++
          }
        }
        continue
      }
      let timer: ReturnType<typeof setTimeout> | undefined
      await Promise.race([
        new Promise<void>((resolve) => {
          this.#wake = resolve
          timer = setTimeout(resolve, Math.min(nextPoll, deadline) - now)
        }),
        guard,
      ])
      clearTimeout(timer)
      this.#wake = null
    }
  }
}

const cores = (sec: number | null, windowS: number): number | null => (sec === null ? null : round(sec / windowS, 3))
const usPer = (sec: number | null, n: number): number | null => (sec === null ? null : round((sec * 1e6) / n, 0))

/** The CPU of each part over the window: in cores (1 = one core busy all the time) and µs per node run. */
type Parts = { store: number | null; broker: number | null; coordinators: number[]; workers: number[] }

function cpuReport(a: CpuSample, b: CpuSample, parts: Parts, nodeRuns: number | null): Record<string, unknown> {
  const windowS = (b.at - a.at) / 1000
  const of = (pid: number | null): number | null => (pid === null ? null : cpuBetween(a, b, pid))
  const sum = (pids: number[]): number | null => {
    const v = pids.map((p) => cpuBetween(a, b, p))
    return v.some((x) => x === null) ? null : v.reduce<number>((s, x) => s + (x as number), 0)
  }
  const sec = { store: of(parts.store), broker: of(parts.broker), coordinators: sum(parts.coordinators), workers: sum(parts.workers), bench: of(process.pid) }
  const machine = a.machine === null || b.machine === null ? null : b.machine - a.machine
  const tracked = Object.values(sec).reduce<number>((s, x) => s + (x ?? 0), 0)
  return {
    window_s: round(windowS, 3),
    machine_cores: cpus().length,
    machine_busy_cores: cores(machine, windowS),
    store_cores: cores(sec.store, windowS),
    broker_cores: cores(sec.broker, windowS),
    coordinators_cores: cores(sec.coordinators, windowS),
    per_coordinator_cores: parts.coordinators.map((p) => cores(cpuBetween(a, b, p), windowS)),
    workers_cores: cores(sec.workers, windowS),
    bench_cores: cores(sec.bench, windowS),
    // Everything else the machine did meanwhile (other processes, the kernel's own work).
    other_cores: machine === null ? null : round(Math.max(0, machine - tracked) / windowS, 3),
    ...(nodeRuns === null
      ? {}
      : {
          us_per_node_run: {
            store: usPer(sec.store, nodeRuns),
            broker: usPer(sec.broker, nodeRuns),
            coordinators: usPer(sec.coordinators, nodeRuns),
            workers: usPer(sec.workers, nodeRuns),
            bench: usPer(sec.bench, nodeRuns),
          },
        }),
  }
}

const STAT_KEYS = ['events_applied', 'journal_entries', 'flushes', 'produce_calls'] as const

async function countOnce(n: number, o: CoordinatorsOptions): Promise<Result> {
  const { brokers, url } = realEnv()
  const services = servicePids()
  const prefix = `bench${randomUUID().slice(0, 8)}.`
  const dbName = `flowkit_bench_${randomUUID().slice(0, 8)}`
  const base: Omit<ProcSpec, 'name'> = { brokers, mongoUrl: url, dbName, prefix, logLevel: o.logLevel, concurrency: o.concurrency, roles: ROLES }
  const terminals = new Terminals()
  const coords: BenchProc[] = []
  let worker: BenchProc | null = null
  const coordinator = (i: number): BenchProc => {
    const name = `coordinator-${i + 1}`
    const p = new BenchProc('coordinator', { ...base, name }, (m) => terminals.notice(name, m))
    coords.push(p)
    return p
  }
  try {
    // The first coordinator creates the topics; the others and the worker then start together.
    await coordinator(0).ready(START_TIMEOUT_MS)
    worker = new BenchProc('worker', { ...base, name: 'worker' })
    const rest = Array.from({ length: n - 1 }, (_, i) => coordinator(i + 1))
    await Promise.all([worker.ready(START_TIMEOUT_MS), ...rest.map((c) => c.ready(START_TIMEOUT_MS))])
    const guard = Promise.race([whenAborted(), worker.crashed, ...coords.map((c) => c.crashed)])
    guard.catch(() => undefined)
    const owned = await Promise.race([stableOwnership(coords), guard])
    log(`coordinators=${n}: started on ${dbName}, topics ${prefix}* (pids ${coords.map((c) => c.pid).join(', ')}, worker ${worker.pid}); partitions ${owned.map((x) => x.partitions.length).join('/')} of ${owned[0]?.of}, generations ${owned.map((x) => x.generation).join('/')}`)

    // Warm-up: two chains through each coordinator (its producer, the adopt path, the status consumers).
    const warm = await Promise.all(coords.flatMap((c) => [c, c]).map((c) => c.request<string>('create', { graph: CHAIN_GRAPH })))
    await terminals.waitAll(warm, coords[0] as BenchProc, guard, 120_000)
    const badWarm = warm.filter((id) => terminals.at.get(id)?.event !== 'task.finished')
    if (badWarm.length > 0) throw new Error(`warm-up: ${badWarm.length} chains not finished`)

    const parts: Parts = { store: services.store, broker: services.broker, coordinators: coords.map((c) => c.pid), workers: [worker.pid] }
    const pids = [...parts.coordinators, ...parts.workers, process.pid, ...[parts.store, parts.broker].filter((p): p is number => p !== null)]
    // The idle cost of this deployment (consumers polling, ticks, sweeps), before the run.
    const idle0 = sampleCpu(pids)
    await Promise.race([new Promise((r) => setTimeout(r, o.idleMs)), guard])
    const idle1 = sampleCpu(pids)
    const statsBefore = await Promise.all(coords.map((c) => c.request<Record<string, number>>('stats')))
    const cpu0 = sampleCpu(pids)
    const submitted = new Map<string, number>()
    const t0 = wallNow()
    const ids = await Promise.race([
      Promise.all(
        Array.from({ length: o.tasks }, async (_, i) => {
          const at = wallNow()
          const id = await (coords[i % n] as BenchProc).request<string>('create', { graph: CHAIN_GRAPH })
          submitted.set(id, at)
          return id
        }),
      ),
      guard,
    ])
    const submitMs = wallNow() - t0
    log(`coordinators=${n}: ${o.tasks} tasks submitted in ${round(submitMs, 0)} ms`)
    await terminals.waitAll(ids, coords[0] as BenchProc, guard, 600_000)
    const cpu1 = sampleCpu(pids)
    const end = Math.max(...ids.map((id) => terminals.at.get(id)?.at as number))
    const bad = ids.filter((id) => terminals.at.get(id)?.event !== 'task.finished')
    if (bad.length > 0) throw new Error(`coordinators=${n}: ${bad.length} tasks not finished (first: ${terminals.at.get(bad[0] as string)?.event})`)
    const statsAfter = await Promise.all(coords.map((c) => c.request<Record<string, number>>('stats')))
    const ownedAfter = await Promise.all(coords.map((c) => c.request<Ownership>('ownership')))
    const nodeRuns = o.tasks * 3
    const ms = end - t0
    const lat = ids.map((id) => (terminals.at.get(id)?.at as number) - (submitted.get(id) as number))
    const perCoord = (k: (typeof STAT_KEYS)[number]): number[] => statsAfter.map((s, i) => (s[k] ?? 0) - (statsBefore[i]?.[k] ?? 0))
    return {
      bench: 'coordinators_run',
      runtime: 'kafka+mongo',
      coordinators: n,
      tasks: o.tasks,
      node_runs: nodeRuns,
      seconds: round(ms / 1000, 3),
      submit_ms: round(submitMs, 0),
      node_runs_per_s: rate(nodeRuns, ms),
      tasks_per_s: rate(o.tasks, ms),
      ...latencyFields('task_latency', lat),
      terminal_seen_by_poll: terminals.polled,
      lease_expiries: [...terminals.leaseExpiries.values()].reduce((a, b) => a + b, 0),
      partitions: owned.map((x) => x.partitions.length),
      rebalanced_during_run: ownedAfter.some((x, i) => x.generation !== owned[i]?.generation || x.partitions.join() !== owned[i]?.partitions.join()),
      ...Object.fromEntries(STAT_KEYS.map((k) => [`${k}_per_coordinator`, perCoord(k)])),
      cpu: cpuReport(cpu0, cpu1, parts, nodeRuns),
      cpu_idle: cpuReport(idle0, idle1, parts, null),
    }
  } finally {
    // The worker first (as the chain bench does), then the coordinators, then the run's data.
    if (worker !== null) await stopAll([worker])
    await stopAll(coords)
    const { dropMongoDatabase } = await import('flowkit/mongo')
    await dropMongoDatabase(url, dbName).catch((err: unknown) => log(`could not drop ${dbName}: ${String(err)}`))
    await dropKafkaPrefix(brokers, prefix)
  }
}

export async function coordinatorsBench(o: CoordinatorsOptions): Promise<Result> {
  const services = servicePids()
  if (services.store === null || services.broker === null) log(`coordinators: ${services.store === null ? 'store server' : 'broker'} process not found on this machine: its CPU is not reported`)
  const runs: Result[] = []
  for (const n of o.counts) {
    const r = await countOnce(n, o)
    const c = r['cpu'] as Record<string, unknown>
    const i = r['cpu_idle'] as Record<string, unknown>
    log(`coordinators=${n}: ${r['node_runs_per_s']} node runs/s, p50 ${r['task_latency_p50_ms']} ms; CPU (cores) store ${c['store_cores']}, broker ${c['broker_cores']}, coordinators ${c['coordinators_cores']}, worker ${c['workers_cores']}, other ${c['other_cores']}; idle before: store ${i['store_cores']}, broker ${i['broker_cores']}, coordinators ${i['coordinators_cores']}, worker ${i['workers_cores']}`)
    runs.push(r)
  }
  const first = runs[0]?.['node_runs_per_s'] as number | undefined
  return emit({
    bench: 'coordinators',
    runtime: 'kafka+mongo',
    tasks: o.tasks,
    concurrency: o.concurrency,
    workers: 'one worker process, concurrency as given, the same for every N',
    submission: 'from the bench process over IPC, task i through coordinator i mod N (createTask)',
    terminal_times: "each task's owner announces it on flowkit:events; forwarded over IPC with its wall-clock time",
    cpu_cores_unit: 'CPU seconds over the measured window ÷ window seconds (1 = one core busy throughout), from /proc/<pid>/stat utime+stime',
    idle_window_ms: o.idleMs,
    service_pids: services,
    runs,
    speedup_over_first: first === undefined ? [] : runs.map((r) => round((r['node_runs_per_s'] as number) / first, 2)),
  })
}
