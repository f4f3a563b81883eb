/**
 * The web dashboard (src/ui, docs/dashboard.md) from the command line:
 *
 * - `flowkit dev` serves it next to its embedded coordinator and store, on loopback port 7700 by
 *   default (`--ui-port`, `--ui-host`, `--no-ui`). A port in use is one line on stderr and dev
 *   goes on without it.
 * - `flowkit ui` serves it against a deployment's store and owners' topic, without a coordinator
 *   of its own (remote.ts), until SIGINT/SIGTERM.
 *
 * Bound to a non-loopback address the dashboard needs a token: `--token` / FLOWKIT_UI_TOKEN, else
 * one is generated, and the URL is printed with `?token=` (opening it once sets a cookie).
 */
import { COORDINATOR_DEFAULTS, resolveConfig } from '../config.ts'
import { FlowkitError } from '../errors.ts'
import type { Logger } from '../log.ts'
import type { MetricsHandler } from '../observability/options.ts'
import type { Store } from '../ports/store.ts'
import type { Dashboard, DashboardCoordinator, DashboardOptions } from '../ui/server.ts'
import { type OptionSpecs, type Parsed, flag, int, parse, positionals, str } from './args.ts'
import { deploymentText, openBus, openStore, processLogger } from './connect.ts'
import { controlTopic } from './control.ts'
import { CliError, EXIT, toCliError, usageError } from './errors.ts'
import { loadFunctions } from './modules.ts'
import type { CommandBase, Out } from './output.ts'
import { RemoteCoordinator } from './remote.ts'
import { untilAborted } from './serve.ts'
import { requireBrokers, requireMongoUrl, resolveSettings } from './settings.ts'

export const DEFAULT_UI_PORT = 7700

/** The dashboard flags of `flowkit dev`. */
export const DEV_UI_OPTIONS: OptionSpecs = {
  'ui-port': { type: 'string' },
  'ui-host': { type: 'string' },
  'no-ui': { type: 'boolean' },
}

export interface UiSettings {
  port: number
  host: string
  /** Null: none given (one is generated when the host is not a loopback address). */
  token: string | null
}

/** `dev`'s dashboard settings, or null with `--no-ui`. */
export function devUiSettings(command: string, p: Parsed): UiSettings | null {
  const port = int(command, p, 'ui-port', 0, 65_535)
  const host = str(p, 'ui-host')
  if (flag(p, 'no-ui')) {
    if (port !== undefined || host !== undefined) throw usageError(`${command}: --no-ui and --ui-port/--ui-host do not go together`, command)
    return null
  }
  if (host === '') throw usageError(`${command}: --ui-host must name an address`, command)
  return { port: port ?? DEFAULT_UI_PORT, host: host ?? '127.0.0.1', token: null }
}

/** The URL to print: with `?token=` when a token is required. */
export function openUrl(dash: Dashboard, token: string | null): string {
  return token === null ? dash.url : `${dash.url}?token=${encodeURIComponent(token)}`
}

/** Starts the dashboard; a token is generated when the host needs one and none was given. */
export async function serveDashboard(coordinator: DashboardCoordinator, store: Store, ui: UiSettings, logger: Logger, extra: Pick<DashboardOptions, 'metrics' | 'workerLivenessMs'> = {}): Promise<{ dash: Dashboard; token: string | null }> {
  const [{ startDashboard, generateToken }, { isLoopback }] = await Promise.all([import('../ui/server.ts'), import('../ui/auth.ts')])
  const token = ui.token ?? (isLoopback(ui.host) ? null : generateToken())
  const dash = await startDashboard({ coordinator, store, port: ui.port, host: ui.host, token, logger, ...extra })
  return { dash, token }
}

function listenProblem(err: unknown): string | null {
  const cause = err instanceof FlowkitError ? (err.cause as NodeJS.ErrnoException | undefined) : undefined
  if (cause?.code === 'EADDRINUSE') return 'is in use'
  if (cause?.code === 'EADDRNOTAVAIL' || cause?.code === 'EACCES' || cause?.code === 'ENOTFOUND' || cause?.code === 'EAI_AGAIN') return `cannot be bound (${cause.code})`
  return null
}

/**
 * `flowkit dev`'s dashboard: started and announced (human output: a line on stdout; `--json`: on
 * stderr, so stdout stays a stream of task events). When the address cannot be bound (port in
 * use), one line says so and dev goes on without it.
 */
export async function startDevDashboard(name: string, out: Out, coordinator: DashboardCoordinator, store: Store, ui: UiSettings | null, logger: Logger, metrics?: MetricsHandler): Promise<{ dash: Dashboard; url: string } | null> {
  if (ui === null) return null
  try {
    const { dash, token } = await serveDashboard(coordinator, store, ui, logger, metrics === undefined ? {} : { metrics })
    // (As flowkit ui: an operator's own token is not printed.)
    const url = openUrl(dash, ui.token === null ? token : null)
    const line = `flowkit ${name}: dashboard at ${url}`
    if (out.json) out.note(line)
    else out.line(line)
    return { dash, url }
  } catch (err) {
    const problem = listenProblem(err)
    if (problem === null) throw err
    out.note(`flowkit ${name}: dashboard not started: ${ui.host}:${ui.port} ${problem} (--ui-port <n> picks another port, --no-ui turns it off); going on without it`)
    return null
  }
}


/** `flowkit ui`: the dashboard against a deployment (its store and owners' topic), until a signal. */
export async function uiCommand(argv: readonly string[], base: CommandBase): Promise<number> {
  const p = parse(
    'ui',
    argv,
    { port: { type: 'string', short: 'p' }, host: { type: 'string' }, token: { type: 'string' }, functions: { type: 'string' } },
    true,
  )
  positionals('ui', p, [])
  const settings = resolveSettings(p)
  const port = int('ui', p, 'port', 0, 65_535) ?? DEFAULT_UI_PORT
  const host = str(p, 'host') ?? '127.0.0.1'
  if (host === '') throw usageError('ui: --host must name an address', 'ui')
  const envToken = process.env['FLOWKIT_UI_TOKEN']
  const token = str(p, 'token') ?? (envToken === undefined || envToken === '' ? null : envToken)
  const { MIN_TOKEN_LENGTH } = await import('../ui/server.ts')
  if (token !== null && token.length < MIN_TOKEN_LENGTH) {
    throw usageError(`ui: the token (${str(p, 'token') === undefined ? 'FLOWKIT_UI_TOKEN' : '--token'}) must have at least ${MIN_TOKEN_LENGTH} characters`, 'ui')
  }
  const fnPath = str(p, 'functions')
  const functions = fnPath === undefined ? {} : await loadFunctions(fnPath)
  const config = resolveConfig(COORDINATOR_DEFAULTS, settings.coordinator, 'coordinator config')
  requireMongoUrl(settings)
  requireBrokers(settings)
  const log = processLogger()
  let store: Store | null = null
  let bus: Awaited<ReturnType<typeof openBus>> | null = null
  let dash: Dashboard | null = null
  const closeAll = async (): Promise<void> => {
    await dash?.close().catch(() => undefined)
    await bus?.close().catch(() => undefined)
    await store?.close().catch(() => undefined)
  }
  try {
    store = await openStore(settings, 'serve', log)
    bus = await openBus(settings, log)
    const coordinator = new RemoteCoordinator({
      store,
      bus,
      controlTopic: controlTopic(settings),
      logger: log.child({ component: 'ui' }),
      submit: { functions: Object.keys(functions), rejectUnknownInputAdapters: config.rejectUnknownInputAdapters, limits: config },
      workerLivenessMs: config.workerLivenessSec * 1000,
    })
    let started: { dash: Dashboard; token: string | null }
    try {
      started = await serveDashboard(coordinator, store, { port, host, token }, log, { workerLivenessMs: config.workerLivenessSec * 1000 })
    } catch (err) {
      const problem = listenProblem(err)
      if (problem !== null) throw new CliError(EXIT.failed, `ui: ${host}:${port} ${problem}`, { hint: 'pick another port with --port (0: any free one)', cause: err })
      throw err
    }
    dash = started.dash
    // The token in the printed address only when generated for this run: an operator's own
    // (--token, FLOWKIT_UI_TOKEN) stays out of stdout and the logs that collect it.
    const url = openUrl(dash, token === null ? started.token : null)
    if (base.out.json) base.out.doc({ event: 'ui.ready', url, host: dash.host, port: dash.port, auth: dash.auth })
    else base.out.line(`flowkit ui: dashboard at ${url} (${deploymentText(settings)}); Ctrl-C stops`)
    if (started.token !== null && token === null) base.out.note('flowkit ui: a token was generated for this run (--token or FLOWKIT_UI_TOKEN sets one)')
    await untilAborted(base.signal)
    base.out.note('flowkit ui: stopping')
    await closeAll()
    if (base.out.json) base.out.doc({ event: 'ui.stopped' })
    else base.out.line('flowkit ui: stopped')
    return EXIT.ok
  } catch (err) {
    await closeAll()
    throw toCliError(err)
  }
}
