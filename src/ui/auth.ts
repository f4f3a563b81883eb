/**
 * Dashboard access rules.
 *
 * - Bound to a loopback address without a token: no login, but only requests addressed to a
 *   loopback name (Host header `localhost`, `*.localhost`, `127.x.x.x`, `[::1]`) are served, so a
 *   web page elsewhere cannot reach it through DNS rebinding.
 * - With a token (required when bound to any other address): every request must carry it, as
 *   `Authorization: Bearer <token>`, as the password of HTTP basic auth (any user name; the
 *   browser asks for it), or carry the session cookie that `?token=<token>` on any page sets (the
 *   server then redirects to the same page without it, so the token leaves the address bar). The
 *   cookie is not the token: a session signed with it (HMAC-SHA-256 of its issue time), valid
 *   12 hours, named after the port (`flowkit_dashboard_<port>`). A browser sends a host's cookies
 *   to every port of that host, so another service there may see it: it then holds a session of
 *   this dashboard until it expires (or the token changes), never the token itself.
 * - Requests that change something (POST) must carry `X-Flowkit-Dashboard: 1` and, when the
 *   browser sends an Origin, come from the dashboard's own origin: another site cannot forge them.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import { HttpError } from './http.ts'

export const ACTION_HEADER = 'x-flowkit-dashboard'

export interface AuthPolicy {
  /** null: no login (loopback only). */
  token: string | null
  cookieName: string
  /** Now, in epoch ms (a session's age). */
  now?: () => number
}

/** How long the session cookie `?token=` sets is valid. */
export const SESSION_TTL_MS = 12 * 60 * 60 * 1000

/** A session signed with the token: `<issued ms, base 36>.<HMAC-SHA-256 base64url>`. */
function sessionFor(token: string, issuedMs: number): string {
  const at = issuedMs.toString(36)
  return `${at}.${createHmac('sha256', token).update(`flowkit-dashboard-session:${at}`).digest('base64url')}`
}

/** Whether `value` is a session signed with `token`, issued within SESSION_TTL_MS of `now`. */
function validSession(value: string, token: string, now: number): boolean {
  const dot = value.indexOf('.')
  if (dot <= 0) return false
  const issued = Number.parseInt(value.slice(0, dot), 36)
  if (!Number.isSafeInteger(issued) || issued > now + 60_000 || now - issued > SESSION_TTL_MS) return false
  return same(value, sessionFor(token, issued))
}

export type Access = { kind: 'ok' } | { kind: 'redirect'; location: string; cookie: string }

/** A bind address (or Host name) that only this machine can reach. */
export function isLoopback(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, '$1')
  return h === 'localhost' || h.endsWith('.localhost') || h === '::1' || /^127(\.\d{1,3}){3}$/.test(h) || /^::ffff:127(\.\d{1,3}){3}$/.test(h)
}

/** A random token for `startDashboard({ token })` (32 bytes, base64url). */
export function generateToken(): string {
  return randomBytes(32).toString('base64url')
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest()
}

/** Constant-time comparison (of digests, so the lengths match). */
function same(given: string, token: string): boolean {
  return timingSafeEqual(digest(given), digest(token))
}

/** The host name of a Host header, without its port. */
function hostName(header: string | undefined): string {
  if (header === undefined) return ''
  const m = /^(\[[^\]]*\]|[^:]*)(:\d+)?$/.exec(header.trim())
  return m?.[1] ?? ''
}

function cookieValue(req: IncomingMessage, name: string): string | null {
  const header = req.headers.cookie
  if (header === undefined) return null
  for (const part of header.split(';')) {
    const i = part.indexOf('=')
    if (i > 0 && part.slice(0, i).trim() === name) {
      try {
        return decodeURIComponent(part.slice(i + 1).trim())
      } catch {
        return null
      }
    }
  }
  return null
}

/** Whether the request carries the token (Bearer, basic auth) or a valid session cookie. */
function authenticated(req: IncomingMessage, policy: AuthPolicy & { token: string }): boolean {
  const auth = req.headers.authorization
  if (auth !== undefined) {
    const [scheme, value = ''] = auth.trim().split(/\s+/, 2)
    if (scheme?.toLowerCase() === 'bearer') return same(value, policy.token)
    if (scheme?.toLowerCase() === 'basic') {
      const decoded = Buffer.from(value, 'base64').toString('utf8')
      const i = decoded.indexOf(':')
      return i >= 0 && same(decoded.slice(i + 1), policy.token)
    }
  }
  const cookie = cookieValue(req, policy.cookieName)
  return cookie !== null && validSession(cookie, policy.token, (policy.now ?? Date.now)())
}

const CHALLENGE = { 'www-authenticate': 'Basic realm="flowkit dashboard", charset="UTF-8"' }

/** Whether a request may go on; throws HttpError 401/403 when not. */
export function checkAccess(req: IncomingMessage, url: URL, policy: AuthPolicy): Access {
  if (policy.token === null) {
    const name = hostName(req.headers.host)
    if (!isLoopback(name)) throw new HttpError(403, `this dashboard has no token and answers only requests to localhost, not to ${JSON.stringify(name)}: start it with a token to reach it by another name`)
  } else {
    if (!authenticated(req, { ...policy, token: policy.token })) {
      const query = url.searchParams.get('token')
      // A query string reads `+` as a space: a base64 token pasted as is (not percent-encoded) matches too.
      const matches = query !== null && (same(query, policy.token) || (query.includes(' ') && same(query.replaceAll(' ', '+'), policy.token)))
      if (matches && req.method === 'GET') {
        const clean = new URL(url.href)
        clean.searchParams.delete('token')
        return {
          kind: 'redirect',
          // One leading slash: `//evil.example/x` would be another host (an open redirect).
          location: `/${clean.pathname.replace(/^\/+/, '')}${clean.search}`,
          // Lax: a link from chat or an alert (a cross-site navigation) still carries the session;
          // actions are guarded by their header and the Origin check, not by the cookie.
          cookie: `${policy.cookieName}=${sessionFor(policy.token, (policy.now ?? Date.now)())}; Path=/; Max-Age=${SESSION_TTL_MS / 1000}; HttpOnly; SameSite=Lax`,
        }
      }
      throw new HttpError(401, 'authentication required: send the dashboard token (Authorization: Bearer <token>, basic auth password, or open the page with ?token=<token>)', CHALLENGE)
    }
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') checkActionOrigin(req)
  return { kind: 'ok' }
}

function checkActionOrigin(req: IncomingMessage): void {
  if (req.headers[ACTION_HEADER] !== '1') throw new HttpError(403, `actions need the header "X-Flowkit-Dashboard: 1"`)
  const origin = req.headers.origin
  if (origin === undefined) return
  let host: string
  try {
    host = new URL(origin).host
  } catch {
    throw new HttpError(403, 'bad Origin header')
  }
  if (host !== req.headers.host) throw new HttpError(403, `cross-origin action refused (Origin ${origin})`)
}
