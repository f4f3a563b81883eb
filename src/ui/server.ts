/**
 * The flowkit dashboard: a node:http server in front of a Coordinator and its Store, with a
 * browser UI shipped in the package (src/ui/static: plain ES modules, the vendored dagre layout;
 * no bundler, no CDN).
 *
 *   const dash = await startDashboard({ coordinator, store, port: 7700 })
 *   console.log(dash.url)   // http://127.0.0.1:7700/
 *   await dash.close()
 *
 * Pages: task list (filters, live counts, pages), task (DAG, nodes, variables, artifacts, cancel,
 * resubmit), workers, dead letters (retry). JSON API under /api, live updates as server-sent
 * events (live.ts). Access rules in auth.ts: no login on a loopback address, a token anywhere else.
 */
import { readFileSync } from 'node:fs'
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { SystemClock } from '../clock.ts'
import { ErrorCode, FlowkitError } from '../errors.ts'
import { type Logger, createLogger } from '../log.ts'
import { COORDINATOR_DEFAULTS } from '../config.ts'
import type { MetricsHandler } from '../observability/options.ts'
import type { Clock } from '../ports/clock.ts'
import type { Store } from '../ports/store.ts'
import { type ApiContext, type DashboardCoordinator, GRAPHS_KEPT, handleApi, toHttpError } from './api.ts'
import { type AuthPolicy, checkAccess, isLoopback } from './auth.ts'
import { HttpError, SECURITY_HEADERS, sendError, sendJson } from './http.ts'
import { LiveHub, type SseStream, streamTask } from './live.ts'
import { StaticFiles } from './static-files.ts'
import { TaskIndex } from './task-index.ts'
import { RecentMap } from '../util/recent.ts'

export type { DashboardCoordinator } from './api.ts'
export { generateToken } from './auth.ts'

export const DEFAULT_DASHBOARD_PORT = 7700
/** Shortest token accepted (generateToken() gives 43 characters). */
export const MIN_TOKEN_LENGTH = 16

export interface DashboardOptions {
  coordinator: DashboardCoordinator
  store: Store
  /** TCP port; 0 picks a free one. Default 7700. */
  port?: number
  /** Address to bind. Default 127.0.0.1 (loopback: no login needed). */
  host?: string
  /**
   * Access token (at least 16 characters). Required when `host` is not a loopback address;
   * when given on loopback it is required there too. See auth.ts for how a client presents it.
   */
  token?: string | null
  logger?: Logger
  clock?: Clock
  /** Least time between two `progress` events of a task stream, ms (default 1000). */
  progressMs?: number
  /** Least time between two refreshes of the task list from the store, ms (default 2000). */
  refreshMs?: number
  /**
   * Serves `GET /metrics` with this handler (e.g. `metricsHandler([coordinator registry, worker
   * registry])`), behind the same access check as the rest. Default: no /metrics.
   */
  metrics?: MetricsHandler
  /**
   * A worker not heard from for this long is shown silent, its runs as last reported. Default:
   * the coordinator's `workerLivenessSec` when it has a config, else 180 s.
   */
  workerLivenessMs?: number
}

export interface Dashboard {
  /** Base URL, e.g. `http://127.0.0.1:7700/` (a wildcard bind address is shown as localhost). */
  url: string
  host: string
  port: number
  /** True when a token is required. */
  auth: boolean
  /** Stops the server: live streams end, connections close. */
  close(): Promise<void>
}

function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown }
    return typeof pkg.version === 'string' ? pkg.version : 'unknown'
  } catch {
    return 'unknown'
  }
}

function urlHost(host: string): string {
  if (host === '0.0.0.0' || host === '::' || host === '') return 'localhost'
  return host.includes(':') ? `[${host}]` : host
}

/** The request is a browser's navigation (it asks for HTML), not an API client's. */
function acceptsHtml(req: IncomingMessage): boolean {
  return /\btext\/html\b/.test(req.headers.accept ?? '')
}

/** The liveness window of `coordinator`'s config (a Coordinator has one), else the default. */
function livenessOf(coordinator: DashboardCoordinator): number {
  const sec = (coordinator as { config?: { workerLivenessSec?: unknown } }).config?.workerLivenessSec
  return (typeof sec === 'number' && sec > 0 ? sec : COORDINATOR_DEFAULTS.workerLivenessSec) * 1000
}

const PAGE = /^\/(?:tasks\/[^/]+|workers|dead-letters)?\/?$/
const TASK_EVENTS = /^\/api\/tasks\/([^/]+)\/events$/

export async function startDashboard(options: DashboardOptions): Promise<Dashboard> {
  const host = options.host ?? '127.0.0.1'
  const port = options.port ?? DEFAULT_DASHBOARD_PORT
  const token = options.token ?? null
  if (token !== null && (typeof token !== 'string' || token.length < MIN_TOKEN_LENGTH)) {
    throw new FlowkitError(ErrorCode.Config, `dashboard: the token must be a string of at least ${MIN_TOKEN_LENGTH} characters (generateToken() makes one)`)
  }
  if (token === null && !isLoopback(host)) {
    throw new FlowkitError(ErrorCode.Config, `dashboard: bound to ${JSON.stringify(host)} (not a loopback address) it needs a token: pass token (generateToken() makes one), or bind 127.0.0.1`)
  }
  const clock = options.clock ?? new SystemClock()
  const log = (options.logger ?? createLogger()).child({ component: 'dashboard' })
  const index = new TaskIndex(options.store, () => clock.now(), { refreshMs: options.refreshMs ?? 2_000 })
  const ctx: ApiContext = {
    coordinator: options.coordinator,
    store: options.store,
    index,
    now: () => clock.now(),
    log,
    version: packageVersion(),
    auth: token !== null,
    graphs: new RecentMap(GRAPHS_KEPT),
    workerLivenessMs: options.workerLivenessMs ?? livenessOf(options.coordinator),
  }
  const hub = new LiveHub(ctx)
  const streams = new Set<SseStream>()
  const files = new StaticFiles()
  const server: Server = createServer()
  const policy: AuthPolicy = { token, cookieName: `flowkit_dashboard_${port}`, now: () => clock.now() }

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    let url: URL
    try {
      url = new URL(req.url ?? '/', 'http://dashboard.invalid')
    } catch {
      throw new HttpError(400, 'bad request target') // (`GET //`: a 500 "Invalid URL", logged as an error)
    }
    const access = checkAccess(req, url, policy)
    if (access.kind === 'redirect') {
      res.writeHead(302, { ...SECURITY_HEADERS, location: access.location, 'set-cookie': access.cookie, 'cache-control': 'no-store' })
      res.end()
      return
    }
    const path = url.pathname
    if (path === '/metrics' && options.metrics !== undefined) {
      for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v)
      options.metrics(req, res)
      return
    }
    if (path.startsWith('/api/')) {
      const isGet = req.method === 'GET'
      if (path === '/api/events' && isGet) return hub.add(req, res)
      const m = TASK_EVENTS.exec(path)
      if (m !== null && isGet) return streamTask(ctx, decodeURIComponent(m[1] as string), res, { progressMs: options.progressMs ?? 1_000, streams })
      sendJson(res, 200, await handleApi(ctx, req, url))
      return
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError(405, `${req.method} not allowed here`, { allow: 'GET, HEAD' })
    if (path.startsWith('/assets/')) {
      if (await files.serve(req, res, path.slice('/assets/'.length))) return
      throw new HttpError(404, `no such file: ${path}`)
    }
    if (path === '/favicon.ico') {
      if (await files.serve(req, res, 'favicon.svg')) return
    }
    if (!PAGE.test(path)) {
      // A browser gets the app, which shows its "Not found" page (with a way back), as a 404.
      if (acceptsHtml(req) && (await files.serve(req, res, 'index.html', 404))) return
      throw new HttpError(404, `no such page: ${path}`)
    }
    await files.serve(req, res, 'index.html')
  }

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    handle(req, res).catch((err: unknown) => {
      // A client that went away mid-request (an upload cut off): its own doing, nothing to answer.
      // (Its body's stream failed so; `req.destroyed` is no sign: a body read to the end is destroyed too.)
      if ((err as NodeJS.ErrnoException | null)?.code === 'ECONNRESET' || (err instanceof Error && err.message === 'aborted')) {
        log.debug('dashboard.request_aborted', { method: req.method, path: (req.url ?? '').split('?')[0] })
        if (!res.headersSent && !res.destroyed) res.destroy()
        return
      }
      const e = toHttpError(err)
      // (503: the task list still loading, said to the client; not a failure of the dashboard.)
      if (e.status >= 500 && e.status !== 503) log.error('dashboard.request_failed', { method: req.method, path: (req.url ?? '').split('?')[0], error: e.message })
      sendError(res, e)
    })
  })

  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      index.close()
      reject(new FlowkitError(ErrorCode.Config, `dashboard: cannot listen on ${host}:${port}: ${err.code === 'EADDRINUSE' ? 'the port is in use (pick another port, or 0 for any free one)' : err.message}`, { cause: err }))
    }
    server.once('error', onError)
    server.listen(port, host, () => {
      server.off('error', onError)
      resolve()
    })
  })
  const bound = (server.address() as AddressInfo).port
  const url = `http://${urlHost(host)}:${bound}/`
  log.info('dashboard.started', { url, auth: token !== null })
  // The task list's first load starts now, not with the first page asked for (seconds for 10,000
  // tasks on a server that scans); a failure here is tried again by that page.
  index.ensureFresh().catch(() => undefined)
  let closing: Promise<void> | null = null
  return {
    url,
    host,
    port: bound,
    auth: token !== null,
    close() {
      closing ??= (async () => {
        hub.close()
        for (const s of [...streams]) s.end()
        index.close()
        await new Promise<void>((resolve) => {
          server.close(() => resolve())
          server.closeAllConnections()
        })
        log.info('dashboard.stopped', { url })
      })()
      return closing
    },
  }
}
