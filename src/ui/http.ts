/** Small HTTP helpers for the dashboard server (node:http, no framework). */
import type { IncomingMessage, ServerResponse } from 'node:http'

export class HttpError extends Error {
  readonly status: number
  readonly headers: Record<string, string>
  /** More fields of the error body (e.g. `errors`: every problem of a refused graph). */
  readonly body: Record<string, unknown>
  constructor(status: number, message: string, headers: Record<string, string> = {}, body: Record<string, unknown> = {}) {
    super(message)
    this.status = status
    this.headers = headers
    this.body = body
  }
}

/**
 * Sent with every response: the page loads only its own scripts, styles and data (no inline
 * script, no third party), cannot be framed, and sends no referrer.
 */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body)
  res.writeHead(status, {
    ...SECURITY_HEADERS,
    ...headers,
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  })
  res.end(text)
}

export function sendError(res: ServerResponse, err: HttpError): void {
  if (res.headersSent) {
    res.destroy()
    return
  }
  sendJson(res, err.status, { ...err.body, error: err.message }, err.headers)
}

/** A JSON object body of at most `maxBytes` (an empty body is `{}`). */
export async function readJson(req: IncomingMessage, maxBytes = 64 * 1024): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    const b = chunk as Buffer
    size += b.length
    // The rest of the body is not read: the connection closes after the answer (kept alive, its
    // next request would be read from the middle of this body).
    if (size > maxBytes) throw new HttpError(413, `request body over ${maxBytes} bytes`, { connection: 'close' })
    chunks.push(b)
  }
  if (size === 0) return {}
  let v: unknown
  try {
    v = JSON.parse(Buffer.concat(chunks).toString('utf8'))
  } catch {
    throw new HttpError(400, 'request body is not JSON')
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new HttpError(400, 'request body must be a JSON object')
  return v as Record<string, unknown>
}

/** An integer query parameter within [min, max], `fallback` when absent. */
export function intParam(url: URL, name: string, fallback: number, min: number, max: number): number {
  const raw = url.searchParams.get(name)
  if (raw === null || raw === '') return fallback
  const n = Number(raw)
  // (Decimal digits only, as a cursor's time: `1e2`, `0x10`, ` 5` are refused, not read as numbers.)
  if (!/^-?[0-9]+$/.test(raw) || !Number.isSafeInteger(n) || n < min || n > max) throw new HttpError(400, `${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(raw)}`)
  return n
}

/** A long JSON value cut for display: at most `max` characters of its JSON text. */
export function preview(value: unknown, max = 2_000, indent = 0): { json: string; truncated: boolean; bytes: number } {
  const json = JSON.stringify(value, null, indent) ?? 'null'
  const bytes = Buffer.byteLength(json)
  return json.length > max ? { json: `${json.slice(0, max)}…`, truncated: true, bytes } : { json, truncated: false, bytes }
}
