/**
 * The processes of one scenario around the shared broker and store: the coordinators (one, or
 * several sharing the tasks by partition of the owners' topic), the workers, and the observer. The
 * cluster is also the supervisor: a process that exits without the harness asking is recorded as
 * a crash and started again a second later (as systemd or Kubernetes would), and `heal()` brings
 * everything back (resumes paused processes, starts what is down). Coordinators can be added and
 * retired while the scenario runs (faults `add`, `retire`, `zombie`).
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
  /** Coordinator processes at the start (default 1). */
  coordinators?: number
  coordinatorConfig: Record<string, unknown>
  workerConfig: Record<string, unknown>
}

export interface TimelineEvent {
  t: number
  what: string
}

/** Partitions of the owners' topic owned by each coordinator process (null: it did not answer), of `of`. */
export interface OwnershipView {
  by: Map<string, number[] | null>
  of: number
}

/** Every coordinator answered and owns some partitions, and every partition is owned exactly once. */
export function ownershipSettled(o: OwnershipView): boolean {
  const lists = [...o.by.values()]
  if (lists.length === 0 || lists.some((ps) => ps === null || ps.length === 0)) return false
  const all = lists.flatMap((ps) => ps ?? [])
  return o.of > 0 && all.length === o.of && new Set(all).size === o.of
}

export function describeOwnership(o: OwnershipView): string {
  return [...o.by].map(([name, ps]) => `${name} ${ps === null ? '?' : ps.length}`).join(', ') + ` (of ${o.of})`
}

export type SutKind = 'coordinator' | 'worker' | 'broker' | 'store'

export class Cluster {
  readonly broker: KafkaService
  readonly store: FerretService
  /** The coordinator processes of the deployment now (supervised: restarted when they crash). */
  readonly coordinators: NodeProc[] = []
  /** Coordinators taken out for good (`retire`, the end of a `zombie`), kept for accounting. */
  readonly formerCoordinators: NodeProc[] = []
  readonly workers: NodeProc[]
  readonly observer: NodeProc
  readonly timeline: TimelineEvent[] = []
  readonly dir: string
  readonly t0 = Date.now()
  #closing = false
  readonly #restarting = new Set<Supervised>()
  readonly #coordSpec: ProcSpec
  readonly #repo: string
  readonly #logs: string

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
    this.#repo = repo
    this.#logs = logs
    this.#coordSpec = { ...base, kind: 'coordinator', name: 'coordinator', chaos: spec.chaos, config: spec.coordinatorConfig }
    const n = spec.coordinators ?? 1
    // One coordinator keeps the name `coordinator`; several are `coordinator-1` … `coordinator-N`.
    for (let i = 1; i <= n; i++) this.#newCoordinator(n === 1 ? 'coordinator' : `coordinator-${i}`)
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
    for (const p of [...this.workers, this.observer]) p.onCrash = (info) => this.#crashed(p, `exit code ${info.code} signal ${info.signal}`)
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

  /** Coordinators and workers (the system under test) plus the observer. */
  #flowkitProcs(): NodeProc[] {
    return [...this.coordinators, ...this.workers, this.observer]
  }

  #newCoordinator(name: string): NodeProc {
    const p = new NodeProc({ ...this.#coordSpec, name }, this.#repo, this.#logs)
    p.onCrash = (info) => this.#crashed(p, `exit code ${info.code} signal ${info.signal}`)
    this.coordinators.push(p)
    return p
  }

  /** The first coordinator of the deployment now (for what any coordinator can answer). */
  get coordinator(): NodeProc {
    const c = this.coordinators[0]
    if (c === undefined) throw new Error('no coordinator left in the cluster')
    return c
  }

  /**
   * The coordinator to send the k-th request to: requests are spread round robin over the
   * coordinators that can answer now (ready, not paused); when none can, the k-th of all (the
   * request fails and the caller retries).
   */
  pickCoordinator(k: number): NodeProc {
    const up = this.coordinators.filter((c) => c.ready && !c.stopped)
    const from = up.length > 0 ? up : this.coordinators
    const c = from[((k % from.length) + from.length) % from.length]
    if (c === undefined) throw new Error('no coordinator left in the cluster')
    return c
  }

  /** A new coordinator process joins the deployment (it shares the tasks once the group gives it partitions). */
  addCoordinator(): NodeProc {
    const all = this.coordinators.length + this.formerCoordinators.length
    const p = this.#newCoordinator(`coordinator-${all + 1}`)
    p.start()
    return p
  }

  /** SIGKILL, and the process is not started again: its partitions go to the other coordinators. */
  async retireCoordinator(p: NodeProc): Promise<void> {
    const i = this.coordinators.indexOf(p)
    if (i >= 0) this.coordinators.splice(i, 1)
    this.formerCoordinators.push(p)
    p.onCrash = (info) => this.note(`CRASH ${p.name} (exit code ${info.code} signal ${info.signal}); not restarted (retired)`)
    this.#restarting.delete(p)
    await p.kill()
  }

  /**
   * The partitions each coordinator owns now (`Coordinator.ownership`), by process name; null for a
   * coordinator that does not answer (down, paused, starting).
   */
  async ownership(): Promise<OwnershipView> {
    const by = new Map<string, number[] | null>()
    let of = 0
    await Promise.all(
      this.coordinators.map(async (c) => {
        try {
          const o = (await c.request('ownership', {}, 5000)) as { partitions: number[]; of: number }
          by.set(c.name, o.partitions)
          of = Math.max(of, o.of)
        } catch {
          by.set(c.name, null)
        }
      }),
    )
    return { by, of }
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
      const retired = p.spec.kind === 'coordinator' && !this.coordinators.includes(p)
      if (!this.#closing && !p.alive && !retired) p.start()
    }, 1000)
  }

  /** Starts the coordinators, the workers and the observer; resolves once all said ready. */
  async start(readyMs = 90_000): Promise<void> {
    for (const c of this.coordinators) c.start()
    for (const w of this.workers) w.start()
    const all = [...this.coordinators, ...this.workers]
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
      coordinator: [...this.coordinators, ...this.formerCoordinators].reduce((n, c) => n + c.crashes.length, 0),
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
      [...this.coordinators, ...this.workers].map(async (p) => {
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
