/**
 * One scenario, end to end: start its processes, submit the workload while the faults run, heal,
 * wait for every task to end, wait for leases to be given back, stop, then check every invariant
 * (lib/check-*.ts) and summarise.
 */
import { randomBytes } from 'node:crypto'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import type { Store } from 'flowkit'
import { MongoStore } from 'flowkit/mongo'
import { checkEffects, readEffects } from './check-effects.ts'
import { checkObserved, readObserved } from './check-observed.ts'
import { checkOwners } from './check-owners.ts'
import { TERMINAL, checkStore } from './check-store.ts'
import { Cluster, type SutKind, type TimelineEvent } from './cluster.ts'
import { FaultRunner, describeFault } from './faults.ts'
import { scanLogs } from './logscan.ts'
import { COORDINATOR_CONFIG, KAFKA_TUNING, type Profile, type Scenario, WORKER_CONFIG } from './scenarios.ts'
import type { FerretService, KafkaService } from './services.ts'
import { readArtifacts } from './store-read.ts'
import { ROLES, expected, planTasks, submitAll, workerNodes } from './workload.ts'

export interface ScenarioResult {
  name: string
  description: string
  faults: string[]
  pass: boolean
  /** The harness could not carry out the scenario (not a verdict on flowkit). */
  error: string | null
  durationMs: number
  tasks: { planned: number; submitted: number; finished: number; failed: number; cancelled: number; lost: number; stuck: number; wrong: number; unsubmitted: number }
  effects: { lines: number; retried: number; duplicated: number; foreign: number }
  stale: { changes: number; deliveredOnBus: number }
  /**
   * Ownership of tasks by the coordinators, from the journal: claim entries, hand-overs (a claim by
   * another writer than the entry before), tasks written by several writers, distinct writers, and
   * entries written by another writer after a claim (violations: a fenced owner's write landed).
   */
  owners: { claims: number; handovers: number; movedTasks: number; writers: number; fencedWrites: number }
  liveLeases: number
  crashes: Record<SutKind, number> & { total: number }
  observed: { records: number; malformed: number; starts: number } | null
  /** Every violation found (the list below keeps the first 25). */
  violationCount: number
  violations: string[]
  notes: string[]
  logEvents: Record<string, number>
  evidence: string[]
  timeline: TimelineEvent[]
  dir: string
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

const cap = (xs: string[], n = 25): string[] => (xs.length > n ? [...xs.slice(0, n), `… and ${xs.length - n} more`] : xs)

/**
 * Polls the store until no acknowledged task is active (queued, running, cancelling) or `deadline`
 * passes. Each round reads the ids of the tasks whose snapshot is active (one projected query:
 * cheap, it does not load the store the run is using); a snapshot may lag its journal, so once few
 * are left they are read in full (getTask: snapshot + journal). A task missing from the store is
 * judged `lost` by the checks.
 *
 * The deadline is one of progress, not of speed: while tasks keep ending (fewer active than at the
 * last look), it moves PROGRESS_GRACE_MS past that moment, up to `hardDeadline`. A slow machine
 * finishes late; a stuck task still fails the run, `PROGRESS_GRACE_MS` after the last task ended.
 */
const PROGRESS_GRACE_MS = 30_000

async function waitTerminal(store: Store, ids: string[], deadline: number, hardDeadline = deadline): Promise<void> {
  const ours = new Set(ids)
  let fewest = Number.POSITIVE_INFINITY
  let until = deadline
  while (Date.now() < until) {
    try {
      const active = (await store.listTaskIds(['queued', 'running', 'cancelling'])).filter((id) => ours.has(id))
      if (active.length === 0) return
      if (active.length < fewest) {
        if (fewest !== Number.POSITIVE_INFINITY) until = Math.min(hardDeadline, Math.max(until, Date.now() + PROGRESS_GRACE_MS))
        fewest = active.length
      }
      if (active.length <= 20) {
        const docs = await Promise.all(active.map((id) => store.getTask(id)))
        if (docs.every((t) => t === null || TERMINAL.has(t.status))) return
      }
    } catch {
      // store unavailable right now: try again
    }
    await sleep(1000)
  }
}

interface RunInfo {
  taskId: string
  nodeId: string
  attemptEpoch: number
  workerId: string
}

/** Runs still held by live workers whose task is over or whose epoch is not the node's current one. */
async function liveLeases(cluster: Cluster, store: Store, settleMs: number): Promise<string[]> {
  const deadline = Date.now() + settleMs
  for (;;) {
    const held: string[] = []
    for (const w of cluster.workers) {
      let runs: RunInfo[] = []
      try {
        runs = (await w.request('runs', {}, 5000)) as RunInfo[]
      } catch {
        continue
      }
      for (const r of runs) {
        const t = await store.getTask(r.taskId).catch(() => null)
        const node = t?.nodes[r.nodeId]
        if (t === null || node === undefined) continue
        if (TERMINAL.has(t.status) || node.attempt_epoch !== r.attemptEpoch || node.status !== 'running') {
          held.push(`${w.name} (${r.workerId}) still runs ${r.taskId}/${r.nodeId}@${r.attemptEpoch}; in the store the task is ${t.status}, the node ${node.status}@${node.attempt_epoch}`)
        }
      }
    }
    if (held.length === 0 || Date.now() > deadline) return held
    await sleep(1000)
  }
}

export async function runScenario(
  sc: Scenario,
  profile: Profile,
  services: { broker: KafkaService; store: FerretService },
  repo: string,
  root: string,
  index: number,
  onCluster: (c: Cluster) => void = () => undefined,
): Promise<ScenarioResult> {
  const started = Date.now()
  const tag = randomBytes(3).toString('hex')
  const dir = join(root, `${String(index + 1).padStart(2, '0')}-${sc.name}`)
  mkdirSync(join(dir, 'logs'), { recursive: true })
  mkdirSync(join(dir, 'effects'), { recursive: true })
  const prefix = `rel.${tag}.`
  const dbName = `rel_${tag}`
  const workload = { ...profile.workload, ...sc.workload }
  const cluster = new Cluster(
    {
      prefix,
      dbName,
      roles: ROLES,
      workers: sc.workers ?? [{}, {}],
      coordinators: sc.coordinators ?? 1,
      chaos: sc.chaos ? { ...sc.chaos, seed: index * 1000 + 7 } : null,
      kafka: KAFKA_TUNING,
      coordinatorConfig: { ...COORDINATOR_CONFIG, ...sc.coordinatorConfig },
      workerConfig: { ...WORKER_CONFIG, ...sc.workerConfig },
    },
    services,
    repo,
    dir,
  )
  onCluster(cluster)
  const result: ScenarioResult = {
    name: sc.name,
    description: sc.description,
    faults: sc.faults.map(describeFault),
    pass: false,
    error: null,
    durationMs: 0,
    tasks: { planned: 0, submitted: 0, finished: 0, failed: 0, cancelled: 0, lost: 0, stuck: 0, wrong: 0, unsubmitted: 0 },
    effects: { lines: 0, retried: 0, duplicated: 0, foreign: 0 },
    stale: { changes: 0, deliveredOnBus: 0 },
    owners: { claims: 0, handovers: 0, movedTasks: 0, writers: 0, fencedWrites: 0 },
    liveLeases: 0,
    crashes: { coordinator: 0, worker: 0, broker: 0, store: 0, total: 0 },
    observed: null,
    violationCount: 0,
    violations: [],
    notes: [],
    logEvents: {},
    evidence: [],
    timeline: cluster.timeline,
    dir,
  }
  const store = new MongoStore({ url: services.store.url, dbName, clientOptions: { serverSelectionTimeoutMS: 5000, socketTimeoutMS: 20_000 } })
  const tasks = planTasks(workload, `${sc.name}-${tag}`)
  result.tasks.planned = tasks.length
  try {
    await cluster.start()
    const t0 = Date.now()
    cluster.note('workload starts (fault times count from here)')
    const faults = new FaultRunner(cluster)
    const submitting = submitAll(tasks, workload, cluster, t0 + 120_000)
    await faults.run(sc.faults, t0)
    await cluster.heal()
    await submitting
    const completionMs = sc.completionMs ?? profile.completionMs
    await waitTerminal(
      store,
      tasks.filter((t) => t.acked).map((t) => t.id),
      Date.now() + completionMs,
      Date.now() + 6 * completionMs,
    )
    cluster.note('tasks ended (or completion deadline)')
    const held = await liveLeases(cluster, store, 15_000)
    const stopped = await cluster.stop()
    cluster.note('processes stopped')
    for (const h of stopped.hung) result.notes.push(`did not stop cleanly: ${h}`)
    for (const e of faults.errors) result.notes.push(`fault not carried out: ${e}`)
    result.notes.push(...faults.unsettled)

    const exp = expected(workload)
    const sc1 = await checkStore(store, tasks, exp, (ids) => readArtifacts(services.store.url, dbName, ids))
    cluster.note('checks: store read')
    const count = (s: string) => sc1.verdicts.filter((v) => v.status === s).length
    result.tasks = {
      planned: tasks.length,
      submitted: tasks.filter((t) => t.acked).length,
      finished: count('finished'),
      failed: count('failed'),
      cancelled: count('cancelled'),
      lost: sc1.verdicts.filter((v) => v.verdict === 'lost').length,
      stuck: sc1.verdicts.filter((v) => v.verdict === 'stuck').length,
      wrong: sc1.verdicts.filter((v) => v.verdict === 'wrong').length,
      unsubmitted: sc1.verdicts.filter((v) => v.verdict === 'unsubmitted').length,
    }
    const violations: string[] = []
    for (const v of sc1.verdicts) for (const p of v.problems) violations.push(`[${v.verdict}] ${v.id}: ${p}`)

    const effects = checkEffects(readEffects(join(dir, 'effects')), new Set(tasks.map((t) => t.id)))
    violations.push(...effects.foreign.map((f) => `[foreign] ${f}`))
    const observed = checkObserved(readObserved(join(dir, 'observed.jsonl')), sc1.docs, sc1.journal, sc1.artifacts, workerNodes(workload.shape))
    result.observed = { records: observed.records, malformed: observed.malformed, starts: observed.starts }
    if (stopped.observed === null) result.notes.push('the observer did not confirm it read the topics to the end')
    if (sc.faults.some((f) => f.do === 'wipe')) result.notes.push('broker wiped: the observer may have missed records produced just before the wipe')
    const dup = [...effects.violations, ...observed.dualAccepted.map((d) => `observer: ${d}`)]
    violations.push(...dup.map((d) => `[effect] ${d}`))
    result.effects = { lines: effects.lines, retried: effects.retried, duplicated: dup.length, foreign: effects.foreign.length }

    const stale = [...sc1.verdicts.flatMap((v) => v.stale.map((s) => `${v.id}: ${s}`)), ...observed.staleApplied.map((s) => `observer: ${s}`), ...observed.finishedEarly.map((s) => `observer: ${s}`)]
    violations.push(...stale.map((s) => `[stale] ${s}`))
    result.stale = { changes: stale.length, deliveredOnBus: observed.staleDelivered }
    if (sc1.journalLinesUnderstood === 0 && result.tasks.submitted > 0) result.notes.push('no journal line was understood: the journal stale-epoch scan checked nothing')

    const owners = checkOwners(sc1.journal)
    violations.push(...owners.violations.map((v) => `[fenced] ${v}`))
    result.owners = { claims: owners.claims, handovers: owners.handovers, movedTasks: owners.movedTasks, writers: owners.writers, fencedWrites: owners.violations.length }

    const leases = [...held, ...sc1.verdicts.flatMap((v) => v.liveLeases)]
    violations.push(...leases.map((l) => `[lease] ${l}`))
    result.liveLeases = leases.length

    const crashes = cluster.crashes()
    result.crashes = { ...crashes, total: crashes.coordinator + crashes.worker + crashes.broker + crashes.store }
    for (const e of cluster.timeline.filter((e) => e.what.startsWith('CRASH'))) violations.push(`[crash] at ${(e.t / 1000).toFixed(1)}s: ${e.what}`)
    cluster.note('checks done')
    result.violationCount = violations.length
    result.violations = cap(violations)
  } catch (err) {
    result.error = err instanceof Error ? err.message : String(err)
    cluster.note(`harness error: ${result.error}`)
    await cluster.killAll()
  } finally {
    await store.close().catch(() => undefined)
  }
  const logs = scanLogs(join(dir, 'logs'))
  result.logEvents = logs.events
  result.evidence = logs.evidence
  result.durationMs = Date.now() - started
  result.pass = result.error === null && result.violationCount === 0
  return result
}
