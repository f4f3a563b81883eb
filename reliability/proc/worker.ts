/**
 * A worker process for the reliability suite: the workload's handlers (proc/handlers.ts) on the
 * scenario's bus and store. `clockOffsetMs` shifts the worker's Clock (the injectable clock of
 * WorkerOptions): `now()` is the system time plus the offset, sleeps take real time, so a worker
 * "120 s behind" stamps its leases, events and artifacts 120 s in the past. IPC `runs` answers the
 * worker's active runs (the leases it holds); SIGTERM stops it cleanly.
 */
import { type Clock, SystemClock, Worker } from 'flowkit'
import { topicsConfig } from '../lib/spec.ts'
import { readSpec, say, send, serveIpc, startWithRetry } from './common.ts'
import { relHandlers } from './handlers.ts'

/** The system clock shifted by `offsetMs`. */
class OffsetClock implements Clock {
  readonly #offsetMs: number
  readonly #system = new SystemClock()
  constructor(offsetMs: number) {
    this.#offsetMs = offsetMs
  }
  now(): number {
    return Date.now() + this.#offsetMs
  }
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return this.#system.sleep(ms, signal)
  }
}

const spec = readSpec()
if (spec.outFile === undefined || spec.workerId === undefined) throw new Error('worker spec needs outFile and workerId')
const outFile = spec.outFile
const workerId = spec.workerId
const offset = spec.clockOffsetMs ?? 0
let worker: Worker | null = null

serveIpc(async (req) => {
  const w = worker
  if (w === null) throw new Error('worker not started yet')
  switch (req.op) {
    case 'runs':
      return w.activeRuns()
    case 'ping':
      return { worker_id: w.workerId, runs: w.activeRuns().length }
    default:
      throw new Error(`worker: unknown op ${req.op}`)
  }
})

worker = await startWithRetry(
  spec,
  (bus, store) =>
    new Worker({
      bus,
      store,
      handlers: relHandlers(outFile),
      ...(offset !== 0 ? { clock: new OffsetClock(offset) } : {}),
      config: { ...topicsConfig(spec.prefix), groupPrefix: spec.prefix, workerId, ...spec.config },
    }),
  { start: (w) => w.start(), abandon: (w) => w.kill(), stop: (w) => w.stop() },
)
say(spec, 'rel.ready', { worker_id: spec.workerId, clock_offset_ms: offset })
send({ ready: true, pid: process.pid })
