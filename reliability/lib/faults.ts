/**
 * Fault programs and their execution against a cluster. Every program starts `at` ms after the
 * workload starts and may repeat (`times`, `every`); each action is written to the cluster's
 * timeline. Kills and pauses are signals to one pid; broker and store restarts keep their ports
 * (and, except for a wipe, their data).
 */
import { type Cluster, describeOwnership, ownershipSettled } from './cluster.ts'
import { flood } from './flood.ts'
import type { NodeProc } from './nodeproc.ts'
import type { FerretService, KafkaService } from './services.ts'

export type Target = 'coordinator' | 'worker' | 'broker' | 'store'

interface Repeat {
  /** Start, ms after the workload starts. */
  at: number
  times?: number
  every?: number
}

/** Which process of its kind: `worker` picks a worker (index, else round robin), `coordinator` a coordinator (index, else the first). */
interface Pick {
  worker?: number
  coordinator?: number
}

export type Fault =
  /** SIGKILL; started again `downMs` later. */
  | (Repeat & Pick & { do: 'kill'; target: Target; downMs: number })
  /** SIGSTOP for `forMs`, then SIGCONT. */
  | (Repeat & Pick & { do: 'pause'; target: Target; forMs: number })
  /** SIGTERM (clean stop), started again `downMs` later. */
  | (Repeat & Pick & { do: 'restart'; target: Target; downMs: number })
  /** A coordinator (index `coordinator`, else the first) is SIGKILLed and not started again: the others take its tasks. */
  | (Repeat & { do: 'retire'; coordinator?: number })
  /** A new coordinator process joins the deployment; waits (up to 60 s) until the group gave it partitions. */
  | (Repeat & { do: 'add' })
  /** Broker: killed, its data dir removed, started again (re-formatted, same port) `downMs` later. */
  | (Repeat & { do: 'wipe'; target: 'broker'; downMs: number })
  /** `count` malformed records onto the status and command topics. */
  | (Repeat & { do: 'flood'; count: number })
  /**
   * The coordinator is paused, a replacement coordinator is started while it is frozen, and the
   * old one is resumed `forMs` later: two coordinators, one of them stale, for a while; the old one
   * is killed `overlapMs` after it resumes.
   */
  | (Repeat & { do: 'zombie'; forMs: number; overlapMs: number })

function which(f: Pick & { target: Target }): string {
  const i = f.target === 'worker' ? f.worker : f.target === 'coordinator' ? f.coordinator : undefined
  return i !== undefined ? `#${i + 1}` : ''
}

export function describeFault(f: Fault): string {
  const rep = f.times !== undefined && f.times > 1 ? ` ×${f.times} every ${(f.every ?? 0) / 1000}s` : ''
  switch (f.do) {
    case 'kill':
    case 'restart':
      return `${f.do} ${f.target}${which(f)} at ${f.at / 1000}s, down ${f.downMs / 1000}s${rep}`
    case 'pause':
      return `pause ${f.target}${which(f)} at ${f.at / 1000}s for ${f.forMs / 1000}s${rep}`
    case 'retire':
      return `SIGKILL coordinator${f.coordinator !== undefined ? `#${f.coordinator + 1}` : ''} for good at ${f.at / 1000}s${rep}`
    case 'add':
      return `a new coordinator process joins at ${f.at / 1000}s${rep}`
    case 'wipe':
      return `wipe broker at ${f.at / 1000}s, down ${f.downMs / 1000}s${rep}`
    case 'flood':
      return `${f.count} malformed records at ${f.at / 1000}s${rep}`
    case 'zombie':
      return `coordinator zombie at ${f.at / 1000}s (frozen ${f.forMs / 1000}s, overlap ${f.overlapMs / 1000}s)`
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)))
}

export class FaultRunner {
  readonly #cluster: Cluster
  #nextWorker = 0
  /** Faults that could not be carried out (a harness problem, reported with the scenario). */
  errors: string[] = []
  /** Ownership that had not settled in time after a coordinator joined or left (reported as notes). */
  unsettled: string[] = []

  constructor(cluster: Cluster) {
    this.#cluster = cluster
  }

  /** Runs every program; resolves when all are over (everything they took down is back). */
  async run(faults: readonly Fault[], t0: number): Promise<void> {
    await Promise.all(
      faults.map(async (f) => {
        const times = f.times ?? 1
        for (let k = 0; k < times; k++) {
          await sleep(t0 + f.at + k * (f.every ?? 0) - Date.now())
          try {
            await this.#one(f)
          } catch (err) {
            const msg = `${describeFault(f)}: ${err instanceof Error ? err.message : String(err)}`
            this.errors.push(msg)
            this.#cluster.note(`fault error: ${msg}`)
          }
        }
      }),
    )
  }

  #worker(index: number | undefined): NodeProc {
    const ws = this.#cluster.workers
    const i = index ?? this.#nextWorker++ % ws.length
    return ws[i % ws.length] as NodeProc
  }

  #coordinator(index: number | undefined): NodeProc {
    const cs = this.#cluster.coordinators
    const c = cs[(index ?? 0) % Math.max(1, cs.length)]
    if (c === undefined) throw new Error('no coordinator left to act on')
    return c
  }

  #proc(f: Pick & { target: 'coordinator' | 'worker' }): NodeProc {
    return f.target === 'coordinator' ? this.#coordinator(f.coordinator) : this.#worker(f.worker)
  }

  async #service(s: KafkaService | FerretService, down: () => Promise<void>, downMs: number, label: string): Promise<void> {
    const c = this.#cluster
    c.note(`${label} ${s.name} (pid ${s.pid})`)
    await down()
    await sleep(downMs)
    c.note(`starting ${s.name} again`)
    await s.start()
    c.note(`${s.name} ready`)
    if (s === c.broker) await c.observerReconnect()
  }

  async #one(f: Fault): Promise<void> {
    const c = this.#cluster
    switch (f.do) {
      case 'kill':
      case 'restart': {
        if (f.target === 'broker' || f.target === 'store') {
          const s = f.target === 'broker' ? c.broker : c.store
          await this.#service(s, () => (f.do === 'kill' ? s.kill() : s.terminate(30_000).then(() => undefined)), f.downMs, f.do === 'kill' ? 'SIGKILL' : 'SIGTERM')
          return
        }
        const p = this.#proc({ ...f, target: f.target })
        c.note(`${f.do === 'kill' ? 'SIGKILL' : 'SIGTERM'} ${p.name} (pid ${p.pid})`)
        if (f.do === 'kill') await p.kill()
        else await p.terminate(20_000)
        await sleep(f.downMs)
        if (!p.alive) p.start()
        c.note(`${p.name} started again (pid ${p.pid})`)
        return
      }
      case 'pause': {
        const s = f.target === 'broker' ? c.broker : f.target === 'store' ? c.store : this.#proc({ ...f, target: f.target })
        c.note(`SIGSTOP ${s.name} (pid ${s.pid})`)
        s.pause()
        await sleep(f.forMs)
        s.resume()
        c.note(`SIGCONT ${s.name} (pid ${s.pid})`)
        if (s === c.broker) await c.observerReconnect()
        return
      }
      case 'wipe':
        await this.#service(c.broker, () => c.broker.wipe(), f.downMs, 'WIPE (SIGKILL + data dir removed)')
        return
      case 'flood': {
        c.note(`flood: producing ${f.count} malformed records`)
        const n = await flood(c.broker.brokers, c.coordinator.spec.prefix, c.coordinator.spec.roles, f.count)
        c.note(`flood: ${n} malformed records produced`)
        return
      }
      case 'zombie':
        await this.#zombie(f.forMs, f.overlapMs)
        return
      case 'retire': {
        const p = this.#coordinator(f.coordinator)
        c.note(`SIGKILL ${p.name} (pid ${p.pid}) for good: the other coordinators take its tasks`)
        await c.retireCoordinator(p)
        await this.#noteOwnership(30_000)
        return
      }
      case 'add': {
        const p = c.addCoordinator()
        c.note(`a new coordinator process joins: ${p.name} (pid ${p.pid})`)
        if (!(await p.waitReady(60_000))) throw new Error(`${p.name} not ready after 60 s`)
        await this.#noteOwnership(30_000)
        return
      }
    }
  }

  /**
   * Waits (up to `ms`) until the coordinators' ownership has settled (every coordinator owns some
   * partitions, each partition is owned once), then writes it to the timeline. Not settled in
   * time: noted, not an error (the checks judge the outcome).
   */
  async #noteOwnership(ms: number): Promise<void> {
    const c = this.#cluster
    const deadline = Date.now() + ms
    let o = await c.ownership()
    while (!ownershipSettled(o) && Date.now() < deadline) {
      await sleep(250)
      o = await c.ownership()
    }
    const ok = ownershipSettled(o)
    c.note(`${ok ? 'ownership settled' : `ownership not settled after ${ms / 1000} s`}: partitions ${describeOwnership(o)}`)
    if (!ok) this.unsettled.push(`ownership not settled ${ms / 1000} s after a coordinator joined or left: ${describeOwnership(o)}`)
  }

  /**
   * The first coordinator is frozen and a replacement joins the deployment (the owners' group gives
   * it the frozen one's partitions once its session expires; it claims their tasks); the old one is
   * continued (it wakes up unconfirmed: it holds its writes until the group answers, then drops
   * what it no longer owns), and killed for good `overlapMs` later.
   */
  async #zombie(forMs: number, overlapMs: number): Promise<void> {
    const c = this.#cluster
    const old = c.coordinator
    c.note(`SIGSTOP ${old.name} (pid ${old.pid}): it becomes a zombie`)
    old.pause()
    const replacement = c.addCoordinator()
    c.note(`replacement coordinator ${replacement.name} started (pid ${replacement.pid})`)
    await sleep(forMs)
    old.resume()
    c.note(`SIGCONT ${old.name} (pid ${old.pid}): two coordinators run`)
    await sleep(overlapMs)
    c.note(`SIGKILL ${old.name} (pid ${old.pid}) for good; ${replacement.name} takes over`)
    await c.retireCoordinator(old)
    await this.#noteOwnership(30_000)
  }
}
