/**
 * A worker process for the reliability suite: the workload's handlers (proc/handlers.ts) on the
 * scenario's bus and store. `clockOffsetMs` shifts the worker's Clock (the injectable clock of
 * WorkerOptions): `now()` is the system time plus the offset, sleeps take real time, so a worker
 * "120 s behind" stamps its leases, events and artifacts 120 s in the past. IPC `runs` answers the
 * worker's active runs (the leases it holds); SIGTERM stops it cleanly.
 */
import { type Clock, SystemClock, Worker } from 'flowkit'
import { topicsConfig } from '../lib/spec.ts'
import { errorText, makeBus, makeStore, onShutdown, readSpec, say, send, serveIpc, sleep, within } from './common.ts'
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
const offset = spec.clockOffsetMs ?? 0
let worker: Worker | null = null
let shuttingDown = false
const closers: (() => Promise<void>)[] = []

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

onShutdown(spec, async () => {
  shuttingDown = true
  await worker?.stop()
  for (const close of closers.splice(0)) await close().catch(() => undefined)
})

const deadline = Date.now() + 120_000
for (let attempt = 1; ; attempt++) {
  const bus = makeBus(spec)
  const store = makeStore(spec)
  const w = new Worker({
    bus,
    store,
    handlers: relHandlers(spec.outFile),
    ...(offset !== 0 ? { clock: new OffsetClock(offset) } : {}),
    config: { ...topicsConfig(spec.prefix), groupPrefix: spec.prefix, workerId: spec.workerId, ...spec.config },
  })
  try {
    await w.start()
    worker = w
    closers.push(
      () => bus.close(),
      () => store.close(),
    )
    break
  } catch (err) {
    say(spec, 'rel.start_failed', { attempt, error: errorText(err) })
    await within(5000, w.kill())
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
say(spec, 'rel.ready', { worker_id: spec.workerId, clock_offset_ms: offset })
send({ ready: true, pid: process.pid })
