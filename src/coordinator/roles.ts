/**
 * The worker roles this coordinator knows are served: from the workers' announces (and the
 * store's workers list at start). A node of a type no live worker serves cannot run: it is shown
 * `waiting_for_worker` in the task view and logged once (`node.no_worker`, naming the type and
 * the known types); `requireKnownTypes` refuses such graphs at createTask.
 */
import { ErrorCode, GraphValidationError } from '../errors.ts'
import type { Logger } from '../log.ts'
import type { Clock } from '../ports/clock.ts'
import type { Store, WorkerInfo } from '../ports/store.ts'
import type { TaskRuntime } from './runtime.ts'

/** How long a dispatched node may wait for a worker of its type before `node.no_worker` is logged. */
const NO_WORKER_GRACE_MS = 3_000

/**
 * Most workers remembered. Announces are a bus topic anyone with access may write: a flood of
 * made-up worker ids must not grow this table (read on every dispatch) without bound. Past it,
 * workers offline or not heard from within the liveness window go first, then the longest silent.
 */
export const MAX_KNOWN_WORKERS = 4096

/** Most workers whose saved run state a coordinator reads at start (the most recently heard). */
const MAX_STATES_AT_START = 512

/**
 * What the store says of the workers when a coordinator starts: the registry, and how many runs
 * each live worker holds, from the run state it saves (its load reports come only when its slots
 * change, its announces once a minute). Without it a new coordinator took a worker full of runs
 * for an idle one, and reported the STARTs queued behind it unaccepted.
 */
export async function seedRoles(store: Store, roles: LiveRoles, now: number): Promise<void> {
  const workers = await store.listWorkers()
  for (const w of workers) roles.seen(w)
  const live = workers
    .filter((w) => w.status === 'online' && now - w.last_seen_ms <= roles.livenessMs && w.capacity > 0)
    .sort((a, b) => a.last_seen_ms - b.last_seen_ms)
    .slice(-MAX_STATES_AT_START)
  // (A worker that saves none, or another shape of it — a Python worker — says nothing here.)
  const states = await Promise.all(live.map((w) => store.getWorkerState(w.worker_id).catch(() => null)))
  live.forEach((w, i) => {
    const runs = states[i]?.active_runs
    if (Array.isArray(runs)) roles.seen(w, undefined, runs.length)
  })
}

export class LiveRoles {
  /** By worker id, the most recently heard last (a worker heard again moves to the end). */
  readonly #workers = new Map<string, { roles: string[]; online: boolean; seen: number; capacity: number; version: string; steerable: boolean; full: boolean; fullAt: number }>()
  readonly #livenessMs: number
  /**
   * Workers heard from in status events (by the type of the event) that no announce says take a
   * steered START: those that have not announced since this coordinator started (an announce is
   * sent once a minute) or said they do not (a Python worker). When each was last heard.
   */
  readonly #unannounced = new Map<string, Map<string, number>>()

  constructor(livenessMs: number) {
    this.#livenessMs = livenessMs
  }

  get livenessMs(): number {
    return this.#livenessMs
  }

  get size(): number {
    return this.#workers.size
  }

  /**
   * A worker announced itself (online or going offline). `steerable`: its announce says it takes
   * a START sent to it by name on the signals topic (a flowkit worker; steer.ts); unknown (the
   * registry read at start) keeps what an earlier announce said. True when what it says of its
   * slots (full or not: `running`, load reports) changed.
   */
  seen(w: Pick<WorkerInfo, 'worker_id' | 'roles' | 'status' | 'last_seen_ms'> & Partial<Pick<WorkerInfo, 'capacity' | 'version'>>, steerable?: boolean, running?: number): boolean {
    const cur = this.#workers.get(w.worker_id)
    if (cur !== undefined && cur.seen > w.last_seen_ms) return false
    this.#workers.delete(w.worker_id)
    const known = w.roles.length > 0 || cur === undefined
    // Its slots as it says (load reports, all coordinators' runs): full, or when it last was.
    const capacity = w.capacity ?? cur?.capacity ?? 0
    const full = running !== undefined && w.status === 'online' ? capacity > 0 && running >= capacity : false
    const wasFull = cur?.full === true
    if (steerable === true) this.#unannounced.delete(w.worker_id)
    this.#workers.set(w.worker_id, {
      roles: known ? w.roles : cur.roles,
      online: w.status === 'online',
      seen: w.last_seen_ms,
      capacity: w.capacity ?? cur?.capacity ?? 0,
      version: w.version ?? cur?.version ?? '',
      steerable: steerable ?? cur?.steerable ?? false,
      full,
      fullAt: full || wasFull ? w.last_seen_ms : (cur?.fullAt ?? Number.NEGATIVE_INFINITY),
    })
    if (this.#workers.size > MAX_KNOWN_WORKERS) this.#prune(w.last_seen_ms)
    return full !== wasFull
  }

  /**
   * Worker `workerId` reported on a run of `type` (its status events): unless an announce said it
   * serves the type and takes a steered START, it is remembered as a live worker of the type
   * that does not (allSteerable), for as long as it is heard from.
   */
  heard(workerId: string, type: string, now: number): void {
    const w = this.#workers.get(workerId)
    if (w?.steerable && w.roles.includes(type)) return
    let types = this.#unannounced.get(workerId)
    if (types === undefined) {
      if (this.#unannounced.size >= MAX_KNOWN_WORKERS) this.#pruneUnannounced(now)
      types = new Map()
      this.#unannounced.set(workerId, types)
    }
    types.set(type, now)
  }

  /** Those not heard from within the liveness window go; past the bound, the oldest entries too. */
  #pruneUnannounced(now: number): void {
    for (const [id, types] of this.#unannounced) {
      for (const [t, at] of types) if (now - at > this.#livenessMs) types.delete(t)
      if (types.size === 0) this.#unannounced.delete(id)
    }
    for (const id of this.#unannounced.keys()) {
      if (this.#unannounced.size < (MAX_KNOWN_WORKERS * 3) / 4) break
      this.#unannounced.delete(id)
    }
  }

  /** Down to three quarters of the bound (so that pruning is rare): the silent first, then the oldest heard. */
  #prune(now: number): void {
    const target = Math.floor((MAX_KNOWN_WORKERS * 3) / 4)
    for (const [id, x] of this.#workers) if (!x.online || now - x.seen > this.#livenessMs) this.#workers.delete(id)
    for (const id of this.#workers.keys()) {
      if (this.#workers.size <= target) break
      this.#workers.delete(id)
    }
  }

  /** What is known of a worker (its roles, capacity and version), if it was heard from. */
  get(workerId: string): Pick<WorkerInfo, 'roles' | 'capacity' | 'version'> | undefined {
    const w = this.#workers.get(workerId)
    return w === undefined ? undefined : { roles: w.roles, capacity: w.capacity, version: w.version }
  }

  /** Roles served by a worker online and heard from within the liveness window. */
  known(now: number): Set<string> {
    const out = new Set<string>()
    for (const w of this.#workers.values()) if (w.online && now - w.seen <= this.#livenessMs) for (const r of w.roles) out.add(r)
    return out
  }

  /**
   * Whether every live worker serving `type` is full (`isFull`, given its announced capacity: the
   * runs it holds, of all its types — one pool of slots serves them all — take every slot). False
   * when none is live or one of them announced no capacity (a peer that does not say it).
   */
  full(type: string, now: number, isFull: (workerId: string, capacity: number) => boolean): boolean {
    let any = false
    for (const [id, w] of this.#workers) {
      if (!w.online || now - w.seen > this.#livenessMs || !w.roles.includes(type)) continue
      if (!(w.capacity > 0) || !isFull(id, w.capacity)) return false
      any = true
    }
    return any
  }

  /** Whether worker `workerId` said its slots were all taken, now or at `since` or later (load reports). */
  reportedFullSince(workerId: string, since: number): boolean {
    const w = this.#workers.get(workerId)
    return w !== undefined && (w.full || w.fullAt >= since)
  }

  /** The capacity worker `workerId` announced (0: unknown). */
  capacityOf(workerId: string): number {
    return this.#workers.get(workerId)?.capacity ?? 0
  }

  /**
   * The live workers serving `type` that take a START sent to them by name, with the capacity
   * each announced (those that announced none are left out).
   */
  *steerable(type: string, now: number): Generator<{ workerId: string; capacity: number }> {
    for (const [id, w] of this.#workers) {
      if (w.steerable && w.online && now - w.seen <= this.#livenessMs && w.capacity > 0 && w.roles.includes(type)) yield { workerId: id, capacity: w.capacity }
    }
  }

  /**
   * Whether every live worker serving `type` takes a steered START. One that does not (a Python
   * worker) does not claim attempts either: the copy left in its partition would run again there.
   * A worker heard from in this type's status events but not announced as taking one counts as
   * one that does not (heard).
   */
  allSteerable(type: string, now: number): boolean {
    for (const w of this.#workers.values()) {
      if (w.online && now - w.seen <= this.#livenessMs && w.roles.includes(type) && !w.steerable) return false
    }
    for (const types of this.#unannounced.values()) {
      const at = types.get(type)
      if (at !== undefined && now - at <= this.#livenessMs) return false
    }
    return true
  }

  knows(type: string, now: number): boolean {
    for (const w of this.#workers.values()) if (w.online && now - w.seen <= this.#livenessMs && w.roles.includes(type)) return true
    return false
  }
}

/** `requireKnownTypes`: the worker types of a graph that no live worker serves (empty: all served). */
export function unservedTypes(roles: LiveRoles, types: Iterable<string>, now: number): string[] {
  return [...new Set(types)].filter((t) => !roles.knows(t, now)).sort()
}

/** Marks the running nodes of a view that wait for a worker of their type (none announced). */
export function markWaiting<V extends { nodes: { status: string; type: string; accepted_at_ms: number | null; waiting_for_worker?: boolean }[] }>(
  view: V,
  roles: LiveRoles,
  isFnType: (type: string) => boolean,
  now: number,
): V {
  for (const n of view.nodes) {
    if (n.status === 'running' && n.accepted_at_ms === null && !isFnType(n.type) && !roles.knows(n.type, now)) n.waiting_for_worker = true
  }
  return view
}

/** `requireKnownTypes`: refuses a graph with a worker type no live worker serves, naming them. */
export function requireServed(roles: LiveRoles, types: Iterable<string>, now: number): void {
  const unserved = unservedTypes(roles, types, now)
  if (unserved.length === 0) return
  const known = [...roles.known(now)].sort()
  throw new GraphValidationError(
    ErrorCode.GraphInvalid,
    `no live worker serves type${unserved.length > 1 ? 's' : ''} ${unserved.map((t) => JSON.stringify(t)).join(', ')} (known types: ${known.length > 0 ? known.join(', ') : 'none'}); start a worker with that role, or set requireKnownTypes: false`,
    'graph.nodes',
    { unserved, known },
  )
}

export interface ServedDeps {
  roles: LiveRoles
  clock: Clock
  log: Logger
  engine: { tasks: ReadonlyMap<string, TaskRuntime> }
  /** Aborted when the coordinator stops. */
  stop: AbortSignal
}

/** A node was dispatched: if no live worker serves its type a few seconds on, say so once. */
export function warnIfUnserved(d: ServedDeps, rt: TaskRuntime, ord: number, epoch: number): void {
  const type = rt.spec(ord).type
  if (d.roles.knows(type, d.clock.now())) return
  d.clock.sleep(NO_WORKER_GRACE_MS, d.stop).then(() => {
    const n = rt.node(ord)
    const now = d.clock.now()
    if (d.engine.tasks.get(rt.id) !== rt || n.status !== 'running' || n.attempt_epoch !== epoch || n.accepted_at_ms !== null || d.roles.knows(type, now)) return
    const known = [...d.roles.known(now)].sort()
    d.log.warn('node.no_worker', { task_id: rt.id, node_id: n.node_id, type, known_types: known, hint: `no live worker has announced role ${JSON.stringify(type)}: the node waits until one does` })
  }, () => undefined)
}
