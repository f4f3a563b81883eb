/**
 * Shared by the process entry points: the spec from the environment, the real adapters (with the
 * bus wrapped in ChaosBus when the scenario asks), the IPC channel to the harness, and shutdown.
 * A process whose harness goes away (IPC disconnect) exits.
 */
import { type Bus, type Store, createLogger } from 'flowkit'
import { KafkaBus } from 'flowkit/kafka'
import { MongoStore } from 'flowkit/mongo'
import { type IpcReply, type IpcRequest, type ProcSpec, SPEC_ENV } from '../lib/spec.ts'
import { ChaosBus } from './chaos-bus.ts'
import { tracked } from './pending.ts'

export function readSpec(): ProcSpec {
  const raw = process.env[SPEC_ENV]
  if (!raw) throw new Error(`${SPEC_ENV} is not set: this process is started by reliability/run.ts`)
  return JSON.parse(raw) as ProcSpec
}

export function makeBus(spec: ProcSpec): Bus {
  const inner = new KafkaBus({
    brokers: spec.brokers,
    clientId: `rel-${spec.name}`,
    sessionTimeoutMs: spec.kafka.sessionTimeoutMs,
    heartbeatIntervalMs: spec.kafka.heartbeatIntervalMs,
    rebalanceTimeoutMs: spec.kafka.rebalanceTimeoutMs,
    requestTimeoutMs: spec.kafka.requestTimeoutMs,
    connectTimeoutMs: 3000,
  })
  return tracked(spec, 'bus', spec.chaos === null ? inner : new ChaosBus(inner, spec.chaos, spec.prefix))
}

export function makeStore(spec: ProcSpec): Store {
  return tracked(spec, 'store', new MongoStore({ url: spec.mongoUrl, dbName: spec.dbName, logger: createLogger().child({ component: 'mongo-store' }) }))
}

/** One line of this process's own diagnostics on stderr (the flowkit logs go there too). */
export function say(spec: ProcSpec, event: string, fields: Record<string, unknown> = {}): void {
  process.stderr.write(`${JSON.stringify({ rel: spec.name, event, pid: process.pid, time: Date.now(), ...fields })}\n`)
}

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

function errorCode(err: unknown): string | null {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' ? code : null
}

/** Serves harness requests; each answered with the handler's result or its error. */
export function serveIpc(handle: (req: IpcRequest) => Promise<unknown>): void {
  process.on('message', (msg: IpcRequest) => {
    void handle(msg).then(
      (result) => send({ id: msg.id, ok: true, result: result ?? null }),
      (err: unknown) => send({ id: msg.id, ok: false, error: errorText(err), code: errorCode(err) }),
    )
  })
  process.on('disconnect', () => process.exit(0))
}

export function send(msg: IpcReply | { ready: true; pid: number }): void {
  if (process.connected) process.send?.(msg)
}

/** SIGTERM/SIGINT: `stop` runs once; the process exits 0 when it resolves, 3 when it hangs. */
export function onShutdown(spec: ProcSpec, stop: () => Promise<void>, graceMs = 20_000): void {
  let stopping = false
  const handler = (signal: string): void => {
    if (stopping) return
    stopping = true
    say(spec, 'rel.stopping', { signal })
    const timer = setTimeout(() => {
      say(spec, 'rel.stop_hung', { grace_ms: graceMs })
      process.exit(3)
    }, graceMs)
    timer.unref()
    stop().then(
      () => {
        say(spec, 'rel.stopped')
        process.exit(0)
      },
      (err: unknown) => {
        say(spec, 'rel.stop_failed', { error: errorText(err) })
        process.exit(4)
      },
    )
  }
  process.on('SIGTERM', () => handler('SIGTERM'))
  process.on('SIGINT', () => handler('SIGINT'))
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** Waits for `p` at most `ms` (its outcome ignored): cleanup that must not hang a retry loop. */
export async function within(ms: number, p: Promise<unknown>): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms)
  })
  await Promise.race([p.catch(() => undefined), timeout])
  clearTimeout(timer)
}

export interface Lifecycle<T> {
  start(it: T): Promise<void>
  /** After a failed start: let go of it without reporting anything. */
  abandon(it: T): Promise<void>
  /** On SIGTERM: a clean stop. */
  stop(it: T): Promise<void>
}

/**
 * Builds the process's coordinator or worker on fresh adapters and starts it; a failed start (a
 * server is down right now) is retried with fresh adapters for up to two minutes, as a
 * deployment's process supervisor would. Registers the clean shutdown. Resolves once started.
 */
export async function startWithRetry<T>(spec: ProcSpec, make: (bus: Bus, store: Store) => T, life: Lifecycle<T>): Promise<T> {
  let current: T | null = null
  let shuttingDown = false
  const closers: (() => Promise<void>)[] = []
  onShutdown(spec, async () => {
    shuttingDown = true
    if (current !== null) await life.stop(current)
    for (const close of closers.splice(0)) await close().catch(() => undefined)
  })
  const deadline = Date.now() + 120_000
  for (let attempt = 1; ; attempt++) {
    const bus = makeBus(spec)
    const store = makeStore(spec)
    const it = make(bus, store)
    try {
      await life.start(it)
      current = it
      closers.push(
        () => bus.close(),
        () => store.close(),
      )
      return it
    } catch (err) {
      say(spec, 'rel.start_failed', { attempt, error: errorText(err) })
      await within(5000, life.abandon(it))
      await within(5000, bus.close())
      await within(5000, store.close())
      if (shuttingDown) process.exit(0)
      if (Date.now() > deadline) {
        say(spec, 'rel.start_gave_up', { attempts: attempt })
        process.exit(2)
      }
      await sleep(Math.min(5000, 500 * attempt))
    }
  }
}
