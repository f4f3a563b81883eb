/**
 * The processes of one scenario around the shared broker and store: one coordinator, the workers,
 * and the observer. The cluster is also the supervisor: a process that exits without the harness
 * asking is recorded as a crash and started again a second later (as systemd or Kubernetes would),
 * and `heal()` brings everything back (resumes paused processes, starts what is down).
 */
import { join } from 'node:path'
import type { FerretService, KafkaService } from './services.ts'
import { NodeProc } from './nodeproc.ts'
import type { Supervised } from './process.ts'
import type { ChaosSpec, KafkaTuning, ProcSpec } from './spec.ts'

export interface WorkerSlot {
  /** Worker clock offset (ms), e.g. -120_000 for a worker 120 s behind. */
  clockOffsetMs?: number
}

export interface ClusterSpec {
  prefix: string
  dbName: string
  roles: string[]
  workers: WorkerSlot[]
  chaos: ChaosSpec | null
  kafka: KafkaTuning
  coordinatorConfig: Record<string, unknown>
  workerConfig: Record<string, unknown>
}

export interface TimelineEvent {
  t: number
  what: string
}

export type SutKind = 'coordinator' | 'worker' | 'broker' | 'store'

export class Cluster {
  readonly broker: KafkaService
  readonly store: FerretService
  /** The current coordinator (a `zombie` fault replaces it; the former ones are kept for accounting). */
  coordinator: NodeProc
  readonly formerCoordinators: NodeProc[] = []
  readonly workers: NodeProc[]
  readonly observer: NodeProc
  readonly timeline: TimelineEvent[] = []
  readonly dir: string
  readonly t0 = Date.now()
  #closing = false
  readonly #restarting = new Set<Supervised>()

  constructor(spec: ClusterSpec, services: { broker: KafkaService; store: FerretService }, repo: string, dir: string) {
    this.broker = services.broker
    this.store = services.store
    this.dir = dir
    const logs = join(dir, 'logs')
    const base = {
      brokers: services.broker.brokers,
      mongoUrl: services.store.url,
      dbName: spec.dbName,
      prefix: spec.prefix,
      roles: spec.roles,
      kafka: spec.kafka,
    }
    const coord: ProcSpec = { ...base, kind: 'coordinator', name: 'coordinator', chaos: spec.chaos, config: spec.coordinatorConfig }
    this.coordinator = new NodeProc(coord, repo, logs)
    this.workers = spec.workers.map((slot, i) => {
      const w: ProcSpec = {
        ...base,
        kind: 'worker',
        name: `worker-${i + 1}`,
        chaos: spec.chaos === null ? null : { ...spec.chaos, seed: spec.chaos.seed + i + 1 },
        config: spec.workerConfig,
        workerId: `${spec.prefix}w${i + 1}`,
        clockOffsetMs: slot.clockOffsetMs ?? 0,
        outFile: join(dir, 'effects', `worker-${i + 1}.jsonl`),
      }
      return new NodeProc(w, repo, logs)
    })
    const obs: ProcSpec = { ...base, kind: 'observer', name: 'observer', chaos: null, config: {}, outFile: join(dir, 'observed.jsonl') }
    this.observer = new NodeProc(obs, repo, logs)
    for (const p of this.#flowkitProcs()) p.onCrash = (info) => this.#crashed(p, `exit code ${info.code} signal ${info.signal}`)
    this.#serviceCrashesBefore = { broker: this.broker.crashes.length, store: this.store.crashes.length }
    for (const s of [this.broker, this.store]) {
      s.onCrash = (info) => {
        this.note(`CRASH ${s.name} (exit code ${info.code} signal ${info.signal}); restarting in 1 s`)
        if (this.#closing) return
        setTimeout(() => {
          if (!s.alive) s.start().catch((err: unknown) => this.note(`${s.name} restart failed: ${String(err)}`))
        }, 1000)
      }
    }
  }

  readonly #serviceCrashesBefore: { broker: number; store: number }

  /** Coordinator and workers (the system under test) plus the observer. */
  #flowkitProcs(): NodeProc[] {
    return [this.coordinator, ...this.workers, this.observer]
  }

  /** A second coordinator process on the same deployment; it becomes the current one. */
  spawnReplacementCoordinator(): NodeProc {
    const old = this.coordinator
    const spec: ProcSpec = { ...old.spec, name: `coordinator-r${this.formerCoordinators.length + 1}` }
    const next = new NodeProc(spec, old.repo, old.logDir)
    next.onCrash = (info) => this.#crashed(next, `exit code ${info.code} signal ${info.signal}`)
    old.onCrash = (info) => this.note(`CRASH ${old.name} (exit code ${info.code} signal ${info.signal}); not restarted (replaced)`)
    this.formerCoordinators.push(old)
    this.coordinator = next
    next.start()
    return next
  }

  async retireCoordinator(old: NodeProc): Promise<void> {
    await old.kill()
  }

  note(what: string): void {
    this.timeline.push({ t: Date.now() - this.t0, what })
  }

  #crashed(p: NodeProc, how: string): void {
    this.note(`CRASH ${p.name} (${how}); restarting in 1 s`)
    if (this.#closing) return
    this.#restarting.add(p)
    setTimeout(() => {
      this.#restarting.delete(p)
      if (!this.#closing && !p.alive) p.start()
    }, 1000)
  }

  /** Starts the coordinator, the workers and the observer; resolves once all said ready. */
  async start(readyMs = 90_000): Promise<void> {
    this.coordinator.start()
    for (const w of this.workers) w.start()
    const all = [this.coordinator, ...this.workers]
    const ok = await Promise.all(all.map((p) => p.waitReady(readyMs)))
    const late = all.filter((_, i) => !ok[i]).map((p) => p.name)
    if (late.length > 0) throw new Error(`not ready after ${readyMs / 1000} s: ${late.join(', ')} (logs in ${join(this.dir, 'logs')})`)
    this.observer.start()
    await this.observer.waitReady(30_000)
    this.note('cluster ready')
  }

  /** SUT crashes (unexpected exits) by kind. */
  crashes(): Record<SutKind, number> {
    return {
      coordinator: [this.coordinator, ...this.formerCoordinators].reduce((n, c) => n + c.crashes.length, 0),
      worker: this.workers.reduce((n, w) => n + w.crashes.length, 0),
      broker: this.broker.crashes.length - this.#serviceCrashesBefore.broker,
      store: this.store.crashes.length - this.#serviceCrashesBefore.store,
    }
  }

  /** Resumes what is paused and starts what is down (services first); waits for readiness. */
  async heal(): Promise<void> {
    for (const s of [this.broker, this.store]) if (s.stopped) s.resume()
    for (const p of [...this.#flowkitProcs(), ...this.formerCoordinators]) if (p.stopped) p.resume()
    if (!this.broker.alive) {
      this.note('heal: broker down, starting it')
      await this.broker.start()
      await this.observerReconnect()
    }
    if (!this.store.alive) {
      this.note('heal: store down, starting it')
      await this.store.start()
    }
    for (const p of this.#flowkitProcs()) if (!p.alive && !this.#restarting.has(p)) p.start()
    await Promise.all(this.#flowkitProcs().map((p) => p.waitReady(60_000)))
    this.note('healed')
  }

  async observerReconnect(): Promise<void> {
    await this.observer.request('reconnect', {}, 5000).catch(() => undefined)
  }

  /** Reads the topics to the end (observer), then stops every flowkit process cleanly. */
  async stop(): Promise<{ hung: string[]; observed: number | null }> {
    let observed: number | null = null
    try {
      observed = (await this.observer.request('sync', {}, 40_000)) as number
    } catch {
      observed = null
    }
    this.#closing = true
    const hung: string[] = []
    await Promise.all(
      [this.coordinator, ...this.workers].map(async (p) => {
        const info = await p.terminate(20_000)
        if (info !== null && (info.signal === 'SIGKILL' || (info.code !== 0 && info.code !== null))) hung.push(`${p.name} (${info.signal ?? `exit ${info.code}`})`)
      }),
    )
    await this.observer.terminate(5000)
    for (const old of this.formerCoordinators) await old.kill()
    this.broker.onCrash = null
    this.store.onCrash = null
    return { hung, observed }
  }

  /** Last resort on harness errors: every flowkit process of the scenario killed. */
  async killAll(): Promise<void> {
    this.#closing = true
    await Promise.all([...this.#flowkitProcs(), ...this.formerCoordinators].map((p) => p.kill()))
  }
}
