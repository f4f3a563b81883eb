/**
 * Observability settings of a Coordinator or Worker (`observability` option), the /metrics HTTP
 * handler and server, and small helpers shared by the coordinator and worker sides.
 */
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { ProxyTracerProvider, type Tracer, type TracerProvider, trace } from '@opentelemetry/api'
import { Registry } from 'prom-client'
import { ErrorCode, FlowkitError, errorMessage } from '../errors.ts'

export interface ObservabilityOptions {
  /**
   * Prometheus metrics in a prom-client Registry of this instance (default true). false: no
   * metrics. A Registry: the metrics are registered there instead (e.g. `register`, prom-client's
   * global one, to serve them with other metrics of the process).
   */
  metrics?: boolean | Registry
  /**
   * Starts an HTTP server answering `GET /metrics` on this port when the instance starts (0: any
   * free port; see `address`). Default: the config's `metricsPort` / `metrics_port`, else none.
   */
  metricsPort?: number
  /** Interface of that server. Default `0.0.0.0`. */
  metricsHost?: string
  /**
   * OpenTelemetry traces (default true): spans on the global tracer provider, a no-op costing
   * nearly nothing until an SDK is registered. false: no spans and no trace headers. A
   * TracerProvider: spans go there instead of the global one.
   */
  tracing?: boolean | TracerProvider
}

export interface ResolvedObservability {
  registry: Registry | null
  tracer: Tracer | null
  /**
   * True while the tracer's spans would be no-ops: it is the global tracer and no SDK is
   * registered (asked per span: an SDK registered later takes effect from its next span).
   */
  idle: () => boolean
  port: number | null
  host: string
}

export const TRACER_NAME = 'flowkit'

/** The API's no-op provider: the delegate of the global provider while no SDK is registered. */
const NOOP_PROVIDER = new ProxyTracerProvider().getDelegate()

/** No SDK is registered globally (two property reads: asked on every span of the global tracer). */
export function noGlobalTracerProvider(): boolean {
  const p = trace.getTracerProvider()
  return p instanceof ProxyTracerProvider && p.getDelegate() === NOOP_PROVIDER
}

const never = (): boolean => false

function portOf(v: unknown): number | null {
  if (v === undefined || v === null) return null
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 65535) {
    throw new FlowkitError(ErrorCode.Config, `observability: metricsPort must be an integer port (0-65535), got ${JSON.stringify(v)}`)
  }
  return v
}

/** The config's metricsPort: given in both spellings, the later key (as resolveConfig takes it). */
function configPort(raw: Record<string, unknown>): unknown {
  let port: unknown
  for (const [k, v] of Object.entries(raw)) if ((k === 'metricsPort' || k === 'metrics_port') && v !== undefined) port = v
  return port
}

/** The settings from the instance's options: `observability` wins over the config's metricsPort. */
export function resolveObservability(observability: ObservabilityOptions | false | undefined, config: unknown): ResolvedObservability | null {
  if (observability === false) return null
  const o = observability ?? {}
  const raw = (config ?? {}) as Record<string, unknown>
  const m = o.metrics ?? true
  const t = o.tracing ?? true
  return {
    registry: m === false ? null : m === true ? new Registry() : m,
    tracer: t === false ? null : t === true ? trace.getTracer(TRACER_NAME) : t.getTracer(TRACER_NAME),
    idle: t === true ? noGlobalTracerProvider : never,
    port: portOf(o.metricsPort ?? configPort(raw)),
    host: o.metricsHost ?? '0.0.0.0',
  }
}

export type MetricsHandler = (req: IncomingMessage, res: ServerResponse) => void

/**
 * A node:http request handler answering with the registries' metrics in the Prometheus text
 * format (any path: mount it where you like). Several registries are merged (their metric names
 * are distinct: a coordinator's and a worker's registries can be served together).
 */
export function metricsHandler(registries: readonly (Registry | null)[]): MetricsHandler {
  // (One registry given twice — a coordinator and a worker on prom-client's global one — is served once.)
  const regs = [...new Set(registries.filter((r): r is Registry => r !== null))]
  // Two coordinators' (or two workers') registries hold the same names: one exposition cannot
  // carry both (prom-client's merge threw at the first scrape, out of the request's error path).
  const seen = new Set<string>()
  const shared = new Set<string>()
  for (const r of regs) for (const m of r.getMetricsAsArray()) (seen.has(m.name) ? shared : seen).add(m.name)
  if (shared.size > 0) {
    const names = [...shared]
    throw new FlowkitError(
      ErrorCode.Config,
      `metricsHandler: these registries share metric names (${names.slice(0, 3).join(', ')}${names.length > 3 ? `, … ${names.length} in all` : ''}): one endpoint serves one coordinator's and one worker's at most; serve the others on their own (metricsPort, or a handler each)`,
    )
  }
  return (req, res) => {
    if (req.method !== undefined && req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD' }).end()
      return
    }
    if (regs.length === 0) {
      res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' }).end('flowkit: metrics are disabled (observability.metrics: false)\n')
      return
    }
    let registry: Registry
    try {
      registry = regs.length === 1 ? (regs[0] as Registry) : Registry.merge(regs)
    } catch (err) {
      // (A metric registered in both since the handler was made.)
      res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' }).end(`flowkit: metrics failed: ${errorMessage(err)}\n`)
      return
    }
    registry.metrics().then(
      (text) => {
        res.writeHead(200, { 'Content-Type': registry.contentType })
        res.end(req.method === 'HEAD' ? undefined : text)
      },
      (err: unknown) => {
        res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' }).end(`flowkit: metrics failed: ${err instanceof Error ? err.message : String(err)}\n`)
      },
    )
  }
}

/** An HTTP server for `handler` on `/metrics` (404 elsewhere), listening once this resolves. */
export async function startMetricsServer(handler: MetricsHandler, port: number, host: string): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]
    if (path === '/metrics') handler(req, res)
    else res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' }).end('not found: metrics are on /metrics\n')
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  server.unref()
  return server
}

export async function closeServer(server: Server | null): Promise<void> {
  if (server === null) return
  server.closeAllConnections()
  await new Promise<void>((resolve) => server.close(() => resolve()))
}

export function serverAddress(server: Server | null): AddressInfo | null {
  const a = server?.address()
  return a !== null && typeof a === 'object' ? a : null
}

/** An instance's /metrics: its handler, and its own HTTP server when `metricsPort` is set. */
export class MetricsEndpoint {
  readonly #registry: Registry | null
  readonly #port: number | null
  readonly #host: string
  #server: Server | null = null

  constructor(registry: Registry | null, port: number | null, host: string) {
    this.#registry = registry
    this.#port = port
    this.#host = host
  }

  handler(): MetricsHandler {
    return metricsHandler([this.#registry])
  }

  /** Where the server listens, once started. */
  get address(): AddressInfo | null {
    return serverAddress(this.#server)
  }

  async start(): Promise<void> {
    if (this.#port !== null && this.#server === null) this.#server = await startMetricsServer(this.handler(), this.#port, this.#host)
  }

  async stop(): Promise<void> {
    const s = this.#server
    this.#server = null
    await closeServer(s)
  }
}

/** Histogram buckets, seconds: hops (ms to seconds) and runs (tens of ms to an hour). */
export const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]
export const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600]

/** A numeric `count` metric of a batch (its items), else 0. */
export function itemsOf(metrics: Record<string, unknown> | undefined): number {
  const n = metrics?.['count']
  return typeof n === 'number' && Number.isFinite(n) && n > 0 ? n : 0
}
