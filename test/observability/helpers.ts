/**
 * Shared pieces of the observability tests: an in-memory span exporter on its own provider, buses
 * that record what is produced and consumed, and a parser of the Prometheus text format.
 */
import { request } from 'node:http'
import { type Server, createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { BasicTracerProvider, InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base'
import type { Bus, BusMessage, BusRecord, MetricsHandler } from 'flowkit'

export function memoryTracing(): { provider: BasicTracerProvider; exporter: InMemorySpanExporter; spans: (name: string) => ReadableSpan[] } {
  const exporter = new InMemorySpanExporter()
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] })
  return { provider, exporter, spans: (name) => exporter.getFinishedSpans().filter((s) => s.name === name) }
}

/** A bus that records every record produced through it and every message its handlers receive. */
export function spyBus(bus: Bus, produced: BusRecord[] = [], consumed: BusMessage[] = []): Bus {
  return {
    ensureTopics: (topics) => bus.ensureTopics(topics),
    partitionCount: (topic) => bus.partitionCount(topic),
    produce: (records) => {
      produced.push(...records)
      return bus.produce(records)
    },
    subscribe: (o) => {
      const { handler, batchHandler } = o
      return bus.subscribe({
        ...o,
        ...(handler === undefined
          ? {}
          : {
              handler: (m: BusMessage) => {
                consumed.push(m)
                return handler(m)
              },
            }),
        ...(batchHandler === undefined
          ? {}
          : {
              batchHandler: (ms: BusMessage[]) => {
                consumed.push(...ms)
                return batchHandler(ms)
              },
            }),
      })
    },
    close: () => bus.close(),
  }
}

export function isStart(r: BusRecord): boolean {
  return r.value.includes('"cmd":"TASK_START"')
}

export function statusKind(r: BusRecord): string | undefined {
  return /"msg_type":"event"/.test(r.value) ? /"kind":"([A-Z_]+)"/.exec(r.value)?.[1] : undefined
}

/** The span id in a `traceparent` header. */
export function parentSpanId(headers: Record<string, string> | undefined): string | undefined {
  return headers?.['traceparent']?.split('-')[2]
}

export type Samples = Map<string, number>

/** Parses the Prometheus text format: `name{a="x",b="y"}` (labels sorted) → value. */
export function parseMetrics(text: string): Samples {
  const out: Samples = new Map()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (m === null) throw new Error(`not a sample line: ${line}`)
    const labels = [...(m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)].map(([, k, v]) => `${k}="${v}"`).sort()
    out.set(labels.length > 0 ? `${m[1]}{${labels.join(',')}}` : (m[1] as string), Number(m[3]))
  }
  return out
}

/** One sample; labels in any order. */
export function sample(s: Samples, name: string, labels: Record<string, string> = {}): number | undefined {
  const l = Object.entries(labels).map(([k, v]) => `${k}="${v}"`).sort()
  return s.get(l.length > 0 ? `${name}{${l.join(',')}}` : name)
}

/** GET `path` on a local port: status, content type and body. */
export function get(port: number, path: string): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'GET' }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => (body += c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type'] ?? ''), body }))
    })
    req.on('error', reject)
    req.end()
  })
}

/** Serves `handler` on a free local port for the duration of `fn` (as a dashboard server would). */
export async function withServer<T>(handler: MetricsHandler, fn: (port: number) => Promise<T>): Promise<T> {
  const server: Server = createServer(handler)
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  try {
    return await fn((server.address() as AddressInfo).port)
  } finally {
    server.closeAllConnections()
    await new Promise<void>((r) => server.close(() => r()))
  }
}

/** Scrapes a handler over HTTP and parses the text. */
export async function scrape(handler: MetricsHandler): Promise<Samples> {
  return withServer(handler, async (port) => {
    const res = await get(port, '/metrics')
    if (res.status !== 200) throw new Error(`scrape: HTTP ${res.status}: ${res.body}`)
    return parseMetrics(res.body)
  })
}
