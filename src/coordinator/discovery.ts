/**
 * Discovery (adopt) and the worker registry. After a restart the coordinator asks every worker of a
 * running node's role whether it still holds the run (`TASK_DISCOVER` on the query topic); a live
 * run at the node's epoch is adopted with its lease, without a new epoch. Worker announcements
 * keep the registry that `listWorkers()` reads.
 */
import { randomUUID } from 'node:crypto'
import type { CoordinatorConfig } from '../config.ts'
import { errorMessage } from '../errors.ts'
import type { Logger } from '../log.ts'
import type { Bus, BusMessage } from '../ports/bus.ts'
import type { Clock } from '../ports/clock.ts'
import type { Store, WorkerInfo } from '../ports/store.ts'
import { MAX_WORKER_ID_CHARS, dedupId, encode, makeEnvelope } from '../protocol/messages.ts'
import { isWellFormed } from '../util/text.ts'
import { parseEnvelope, parseReply } from '../protocol/parse.ts'
import type { Engine } from './engine.ts'
import type { TaskRuntime } from './runtime.ts'
import { heardRunning } from './recovery.ts'

export class Discovery {
  readonly #config: CoordinatorConfig
  readonly #bus: Bus
  readonly #clock: Clock
  readonly #log: Logger
  readonly #engine: Engine
  readonly #barrier: () => Promise<void>
  readonly #asked = new Map<string, { taskId: string; ord: number; epoch: number }>()
  #stop = new AbortController()

  constructor(config: CoordinatorConfig, bus: Bus, clock: Clock, log: Logger, engine: Engine, barrier: () => Promise<void>) {
    this.#config = config
    this.#bus = bus
    this.#clock = clock
    this.#log = log
    this.#engine = engine
    this.#barrier = barrier
  }

  start(): void {
    this.#stop = new AbortController()
  }

  stop(): void {
    this.#stop.abort()
    this.#asked.clear()
  }

  /** Asks every worker of the node's role about the node's run; replies count during the discovery window. */
  ask(rt: TaskRuntime, ord: number): void {
    const spec = rt.spec(ord)
    const epoch = rt.node(ord).attempt_epoch
    const corr = randomUUID()
    this.#asked.set(corr, { taskId: rt.id, ord, epoch })
    const env = makeEnvelope({
      msg_type: 'query',
      role: 'coordinator',
      corr_id: corr,
      dedup_id: dedupId({ corr }),
      task_id: rt.id,
      node_id: spec.node_id,
      step_type: spec.type,
      attempt_epoch: epoch,
      ts_ms: this.#clock.now(),
      payload: { query: 'TASK_DISCOVER', want_epoch: epoch },
    })
    this.#bus.produce([{ topic: this.#config.topicQuery, key: rt.id, value: encode(env) }]).then(
      () => this.#log.info('node.discovery_sent', { task_id: rt.id, node_id: spec.node_id, attempt_epoch: epoch }),
      (err: unknown) => {
        this.#asked.delete(corr)
        this.#log.warn('node.discovery_failed', { task_id: rt.id, node_id: spec.node_id, error: errorMessage(err) })
      },
    )
    // The window ends at its time or at stop; its stop listener goes with it (questions are asked
    // for the coordinator's whole life, the stop signal lives as long).
    const window = new AbortController()
    const stop = this.#stop.signal
    const onStop = (): void => window.abort()
    stop.addEventListener('abort', onStop, { once: true })
    this.#clock.sleep(this.#config.discoveryWindowSec * 1000, window.signal).then(
      () => {
        stop.removeEventListener('abort', onStop)
        this.#asked.delete(corr)
      },
      () => undefined,
    )
  }

  async onReply(m: BusMessage): Promise<void> {
    const parsed = parseEnvelope(m.value)
    if (!parsed.ok || parsed.value.msg_type !== 'reply') {
      this.#log.warn('bus.message_malformed', { topic: m.topic, offset: m.offset, error: parsed.ok ? 'not a reply' : parsed.error })
      return
    }
    const asked = this.#asked.get(parsed.value.corr_id)
    if (asked === undefined) return
    const reply = parseReply(parsed.value.payload)
    if (!reply.ok) {
      this.#log.warn('bus.message_malformed', { topic: m.topic, offset: m.offset, error: reply.error })
      return
    }
    const snap = reply.value
    const rt = this.#engine.tasks.get(asked.taskId)
    if (rt === undefined) return
    const n = rt.node(asked.ord)
    if (n.status !== 'running' || n.attempt_epoch !== asked.epoch) return
    if ((snap.run_state === 'running' || snap.run_state === 'cancelling') && snap.attempt_epoch === n.attempt_epoch && snap.lease) {
      const ttl = Math.max(0, snap.lease.deadline_ts_ms - parsed.value.ts_ms)
      if (this.#engine.apply(rt, asked.ord, { kind: 'adopt', workerId: snap.lease.worker_id, leaseId: snap.lease.lease_id, deadline: snap.lease.deadline_ts_ms, expiresAt: this.#clock.now() + ttl })) {
        heardRunning(rt, asked.ord, asked.epoch)
      }
      await this.#barrier()
    }
    // A snapshot saying the complete artifact exists changes nothing yet: recovery finishes the
    // node from that artifact after the discovery window and the status replay.
  }
}

/** Longest role name and version an announce may carry, and most roles (worker id: MAX_WORKER_ID_CHARS). */
const MAX_ROLE_CHARS = 256
const MAX_ROLES = 256
const MAX_VERSION_CHARS = 128

/**
 * Worker announcements keep the worker registry (listWorkers). `known` tells what an earlier
 * announce said of a worker (an offline announce keeps its roles and capacity without reading the
 * whole registry).
 */
export async function onAnnounce(
  store: Store,
  clock: Clock,
  log: Logger,
  m: BusMessage,
  seen?: (w: WorkerInfo, steerable?: boolean, running?: number) => void,
  known?: (workerId: string) => Pick<WorkerInfo, 'roles' | 'capacity' | 'version'> | undefined,
): Promise<void> {
  const parsed = parseEnvelope(m.value)
  if (!parsed.ok) {
    log.warn('bus.message_malformed', { topic: m.topic, offset: m.offset, error: parsed.error })
    return
  }
  const p = parsed.value.payload
  const workerId = p['worker_id']
  if (typeof workerId !== 'string' || workerId === '') {
    log.warn('bus.message_malformed', { topic: m.topic, offset: m.offset, error: 'announce without worker_id' })
    return
  }
  if (workerId.length > MAX_WORKER_ID_CHARS || !isWellFormed(workerId)) {
    log.warn('bus.message_malformed', { topic: m.topic, offset: m.offset, error: `announce with a worker_id of ${workerId.length} characters (at most ${MAX_WORKER_ID_CHARS}, well-formed Unicode)` })
    return
  }
  const now = clock.now()
  if (p['kind'] === 'WORKER_ONLINE') {
    const caps = p['capabilities'] as { roles?: unknown; start_signal?: unknown } | undefined
    const roles = (
      Array.isArray(caps?.roles)
        ? caps.roles.filter((r): r is string => typeof r === 'string')
        : typeof p['type'] === 'string'
          ? p['type'].split(',').filter(Boolean)
          : []
    )
      .filter((r) => r.length <= MAX_ROLE_CHARS)
      .slice(0, MAX_ROLES)
    const capacity = (p['capacity'] as { tasks?: unknown } | undefined)?.tasks
    const info: WorkerInfo = {
      worker_id: workerId,
      roles,
      capacity: typeof capacity === 'number' && Number.isFinite(capacity) ? capacity : 1,
      version: typeof p['version'] === 'string' ? p['version'].slice(0, MAX_VERSION_CHARS) : '',
      status: 'online',
      last_seen_ms: now,
    }
    const load = p['load'] as { running?: unknown; report?: unknown } | undefined
    const running = typeof load?.running === 'number' && Number.isFinite(load.running) ? load.running : undefined
    seen?.(info, caps?.start_signal === true, running)
    // A load report (its slots filled up, or one freed: up to one a second) is news for this
    // coordinator's judgement only; the registry is written by the regular announces.
    if (load?.report !== 'change') await store.upsertWorker(info)
  } else if (p['kind'] === 'WORKER_OFFLINE') {
    // What an earlier announce said (in memory); the registry is read only for a worker this
    // coordinator has not heard from (it started after the worker's announce).
    const prev = known?.(workerId) ?? (await store.listWorkers()).find((w) => w.worker_id === workerId)
    const info: WorkerInfo = { worker_id: workerId, roles: prev?.roles ?? [], capacity: prev?.capacity ?? 0, version: prev?.version ?? '', status: 'offline', last_seen_ms: now }
    seen?.(info)
    await store.upsertWorker(info)
  }
}
