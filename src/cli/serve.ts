/**
 * Long-running processes on the real services: `flowkit coordinator` and `flowkit worker`.
 *
 * Both read MongoDB and Kafka settings from flags, FLOWKIT_* and the `--config` file, check that
 * both services answer within the connect deadline (exit 3 otherwise), start, print one line on
 * stdout when ready, log JSON on stderr (FLOWKIT_LOG_LEVEL, default info), and stop cleanly on
 * SIGINT / SIGTERM: the coordinator flushes and stops; the worker stops taking commands and hands
 * its running nodes back (CANCELLED `worker_stopping`, re-dispatched without using a retry). A
 * second signal exits at once (130).
 *
 * The coordinator process also serves CLI control requests (control.ts): `flowkit cancel`.
 */
import type { AddressInfo } from 'node:net'
import { Coordinator } from '../coordinator/coordinator.ts'
import type { Logger } from '../log.ts'
import type { Bus } from '../ports/bus.ts'
import type { Store } from '../ports/store.ts'
import { Worker } from '../worker/worker.ts'
import { int, list, parse, positionals, str } from './args.ts'
import { checkKafka, checkMongo, deploymentText, openBus, openStore, processLogger, requireDrivers } from './connect.ts'
import { CliError, EXIT, toCliError, usageError } from './errors.ts'
import { within } from '../util/deadline.ts'
import { loadFunctions, loadHandlers } from './modules.ts'
import type { CommandBase } from './output.ts'
import { type Settings, requireBrokers, requireMongoUrl, resolveSettings } from './settings.ts'

/** How long the undoing of a start that failed or was interrupted is waited for (a hung start holds the stop too). */
const UNDO_START_MS = 5_000

/**
 * `start`, unless SIGINT / SIGTERM comes first: a start that hangs (a broker that answers the
 * connect check, then stalls) does not leave the process deaf to the signal — exit 130. (The
 * new-user audit had to SIGKILL a worker hung at its start.)
 */
export async function startUnlessAborted(start: Promise<void>, signal: AbortSignal, what: string): Promise<void> {
  start.catch(() => undefined)
  const aborted = await Promise.race([start.then(() => false), untilAborted(signal).then(() => true)])
  if (aborted) throw new CliError(EXIT.interrupted, `${what}: interrupted while starting`, { hint: 'a start that does not end: is Kafka answering? (see the log above)' })
}

/** Stops what a failed or interrupted start left, within UNDO_START_MS. */
async function undoStart(stop: (() => Promise<void>) | undefined, opened: Opened): Promise<void> {
  if (stop !== undefined) await within(stop(), UNDO_START_MS, () => new Error('stop')).catch(() => undefined)
  await within(closeAll(opened), UNDO_START_MS, () => new Error('close')).catch(() => undefined)
}

/** Resolves when the signal aborts. */
export function untilAborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve()
    else signal.addEventListener('abort', () => resolve(), { once: true })
  })
}

/** The URL of a /metrics server listening at `a` (metricsPort), or null when there is none. */
function metricsUrl(a: AddressInfo | null): string | null {
  if (a === null) return null
  const host = a.family === 'IPv6' ? `[${a.address}]` : a.address
  return `http://${host}:${a.port}/metrics`
}

function metricsText(url: string | null): string {
  return url === null ? '' : `; metrics at ${url}`
}

interface Opened {
  store: Store | null
  bus: Bus | null
}

async function openServices(s: Settings, log: Logger): Promise<{ store: Store; bus: Bus }> {
  requireMongoUrl(s)
  requireBrokers(s)
  requireDrivers()
  await Promise.all([checkMongo(s), checkKafka(s)])
  const store = await openStore(s, 'serve', log)
  const bus = await openBus(s, log)
  return { store, bus }
}

async function closeAll(o: Opened): Promise<void> {
  await o.bus?.close().catch(() => undefined)
  await o.store?.close().catch(() => undefined)
}


export async function coordinatorCommand(argv: readonly string[], base: CommandBase): Promise<number> {
  const p = parse('coordinator', argv, { functions: { type: 'string' }, 'group-id': { type: 'string' }, 'metrics-port': { type: 'string' } }, true)
  positionals('coordinator', p, [])
  const settings = resolveSettings(p)
  const groupId = str(p, 'group-id')
  if (groupId !== undefined) settings.coordinator['groupId'] = groupId
  const metricsPort = int('coordinator', p, 'metrics-port', 0, 65_535)
  if (metricsPort !== undefined) settings.coordinator['metricsPort'] = metricsPort
  const fnPath = str(p, 'functions')
  const functions = fnPath === undefined ? {} : await loadFunctions(fnPath)
  const log = processLogger()
  const opened: Opened = { store: null, bus: null }
  let coordinator: Coordinator | null = null
  try {
    const { store, bus } = await openServices(settings, log)
    opened.store = store
    opened.bus = bus
    coordinator = new Coordinator({ bus, store, logger: log, config: settings.coordinator, functions })
    await startUnlessAborted(coordinator.start(), base.signal, 'flowkit coordinator')
    const started = { group_id: coordinator.config.groupId, functions: coordinator.functionNames, metrics: metricsUrl(coordinator.observability?.address ?? null) }
    if (base.out.json) base.out.doc({ event: 'coordinator.ready', ...started })
    else base.out.line(`flowkit coordinator: ready (group ${started.group_id}; ${deploymentText(settings)}${metricsText(started.metrics)}); Ctrl-C stops`)
    await untilAborted(base.signal)
    base.out.note('flowkit coordinator: stopping')
    await coordinator.stop()
    coordinator = null
    await closeAll(opened)
    if (base.out.json) base.out.doc({ event: 'coordinator.stopped' })
    else base.out.line('flowkit coordinator: stopped')
    return EXIT.ok
  } catch (err) {
    const c = coordinator
    await undoStart(c === null ? undefined : () => c.stop(), opened)
    throw toCliError(err)
  }
}

export async function workerCommand(argv: readonly string[], base: CommandBase): Promise<number> {
  const p = parse('worker', argv, { handlers: { type: 'string' }, roles: { type: 'string', short: 'r' }, concurrency: { type: 'string' }, 'worker-id': { type: 'string' }, 'metrics-port': { type: 'string' } }, true)
  positionals('worker', p, [])
  const handlersPath = str(p, 'handlers')
  if (handlersPath === undefined) throw usageError('worker: --handlers <module> is required', 'worker')
  const settings = resolveSettings(p)
  const concurrency = int('worker', p, 'concurrency', 1, 10_000)
  if (concurrency !== undefined) settings.worker['concurrency'] = concurrency
  const workerId = str(p, 'worker-id')
  if (workerId !== undefined) settings.worker['workerId'] = workerId
  const metricsPort = int('worker', p, 'metrics-port', 0, 65_535)
  if (metricsPort !== undefined) settings.worker['metricsPort'] = metricsPort
  const roles = list(p, 'roles')
  if (roles !== undefined && roles.length === 0) throw usageError('worker: --roles must name at least one role', 'worker')
  const handlers = await loadHandlers(handlersPath, roles)
  const log = processLogger()
  const opened: Opened = { store: null, bus: null }
  let worker: Worker | null = null
  try {
    const { store, bus } = await openServices(settings, log)
    opened.store = store
    opened.bus = bus
    worker = new Worker({ bus, store, logger: log, handlers, config: settings.worker })
    await startUnlessAborted(worker.start(), base.signal, 'flowkit worker')
    const info = { worker_id: worker.workerId, roles: worker.roles, concurrency: worker.config.concurrency, metrics: metricsUrl(worker.observability?.address ?? null) }
    if (base.out.json) base.out.doc({ event: 'worker.ready', ...info })
    else base.out.line(`flowkit worker ${info.worker_id}: ready (roles ${info.roles.join(', ')}; concurrency ${info.concurrency}; ${deploymentText(settings)}${metricsText(info.metrics)}); Ctrl-C stops`)
    await untilAborted(base.signal)
    const running = worker.activeRuns().length
    base.out.note(`flowkit worker: stopping${running > 0 ? ` (handing back ${running} running node${running === 1 ? '' : 's'})` : ''}`)
    await worker.stop()
    worker = null
    await closeAll(opened)
    if (base.out.json) base.out.doc({ event: 'worker.stopped', handed_back: running })
    else base.out.line('flowkit worker: stopped')
    return EXIT.ok
  } catch (err) {
    const w = worker
    await undoStart(w === null ? undefined : () => w.stop(), opened)
    throw toCliError(err)
  }
}
