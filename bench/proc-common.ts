/**
 * The child side of `--coordinators` (bench/coordinators.ts): what a coordinator or worker process
 * of the bench reads from its environment, its real adapters, the IPC channel to the bench
 * process, and its shutdown. A child whose parent goes away (IPC disconnect) stops and exits.
 */
import { createLogger, type Bus, type LogLevel, type Store } from 'flowkit'
import { KafkaBus } from 'flowkit/kafka'
import { MongoStore } from 'flowkit/mongo'

export const PROC_SPEC_ENV = 'FLOWKIT_BENCH_PROC_SPEC'

/** What the bench process gives each child (JSON in PROC_SPEC_ENV). */
export interface ProcSpec {
  name: string
  brokers: string[]
  mongoUrl: string
  dbName: string
  /** Topic and group prefix of this run (bench/runtime.ts benchTopics). */
  prefix: string
  logLevel: string
  /** Worker concurrency (worker processes). */
  concurrency: number
  roles: string[]
}

/** A request of the bench process; answered `{ id, ok, result | error }`. */
export type ProcRequest = { id: number; op: string; args?: unknown }
export type ProcReply = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: string }
/** Unsolicited messages of a child: ready, and (coordinators) terminal tasks and lease expiries. */
export type ProcNotice =
  | { ready: true; pid: number }
  | { terminal: { task_id: string; event: string; at: number }[] }
  | { leaseExpiries: number }

/** Wall-clock milliseconds with sub-millisecond precision, comparable between processes. */
export const wallNow = (): number => performance.timeOrigin + performance.now()

export function readProcSpec(): ProcSpec {
  const raw = process.env[PROC_SPEC_ENV]
  if (!raw) throw new Error(`${PROC_SPEC_ENV} is not set: this process is started by bench/run.ts --coordinators`)
  return JSON.parse(raw) as ProcSpec
}

export function procAdapters(spec: ProcSpec): { bus: Bus; store: Store; close: () => Promise<void> } {
  const bus = new KafkaBus({ brokers: spec.brokers, clientId: `flowkit-bench-${spec.name}`, logger: createLogger({ level: spec.logLevel as LogLevel }) })
  const store = new MongoStore({ url: spec.mongoUrl, dbName: spec.dbName })
  return {
    bus,
    store,
    close: async () => {
      await bus.close().catch(() => undefined)
      await store.close().catch(() => undefined)
    },
  }
}

export function notify(msg: ProcNotice): void {
  if (process.connected) process.send?.(msg)
}

/** Serves the bench process's requests; each answered with the handler's result or its error. */
export function serve(handle: (op: string, args: unknown) => Promise<unknown>): void {
  process.on('message', (msg: ProcRequest) => {
    void handle(msg.op, msg.args).then(
      (result) => {
        if (process.connected) process.send?.({ id: msg.id, ok: true, result: result ?? null } satisfies ProcReply)
      },
      (err: unknown) => {
        if (process.connected) process.send?.({ id: msg.id, ok: false, error: err instanceof Error ? err.message : String(err) } satisfies ProcReply)
      },
    )
  })
}

/**
 * SIGTERM, SIGINT or the parent's disconnect: `stop` runs once, then the process exits (0, or 3
 * when the stop fails or takes more than 20 s).
 */
export function onShutdown(stop: () => Promise<void>): void {
  let stopping = false
  const handler = (): void => {
    if (stopping) return
    stopping = true
    setTimeout(() => process.exit(3), 20_000).unref()
    stop().then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`bench ${readProcSpec().name}: stop failed: ${String(err)}\n`)
        process.exit(3)
      },
    )
  }
  process.on('SIGTERM', handler)
  process.on('SIGINT', handler)
  process.on('disconnect', handler)
}
