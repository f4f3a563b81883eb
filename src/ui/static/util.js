// Shared helpers of the dashboard pages: DOM building (text only: nothing from the server is
// parsed as HTML), the API client, and formatting.

/**
 * h('div', { class: 'x', onclick: fn }, 'text', child) → an element. Attribute values are set
 * with setAttribute (on* keys become listeners); children are nodes or text.
 */
export function h(tag, attrs = {}, ...children) {
  const el = tag.startsWith('svg:') ? document.createElementNS('http://www.w3.org/2000/svg', tag.slice(4)) : document.createElement(tag)
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v)
    else el.setAttribute(k, v === true ? '' : String(v))
  }
  append(el, children)
  return el
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue
    if (Array.isArray(c)) append(el, c)
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)))
  }
}

export function svg(tag, attrs = {}, ...children) {
  return h(`svg:${tag}`, attrs, ...children)
}

/** Replaces the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren()
  append(el, children)
  return el
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message)
    this.status = status
  }
}

/** A JSON API call; POST bodies are JSON and carry the header actions need. */
export async function api(path, options = {}) {
  const init = { method: options.method ?? 'GET', headers: { accept: 'application/json' }, credentials: 'same-origin' }
  if (init.method !== 'GET') {
    init.headers['content-type'] = 'application/json'
    init.headers['x-flowkit-dashboard'] = '1'
    init.body = JSON.stringify(options.body ?? {})
  }
  const res = await fetch(path, init)
  const text = await res.text()
  let data = null
  try {
    data = text === '' ? null : JSON.parse(text)
  } catch {
    data = { error: text }
  }
  if (!res.ok) throw new ApiError(res.status, data?.error ?? `${res.status} ${res.statusText}`)
  return data
}

export const TASK_STATUSES = ['queued', 'running', 'cancelling', 'finished', 'failed', 'cancelled']
export const ACTIVE = new Set(['queued', 'running', 'cancelling'])

export function badge(status, extra = '') {
  return h('span', { class: `status st-${status} ${extra}`.trim(), 'data-status': status }, status)
}

const fmtInt = new Intl.NumberFormat('en-US')
export function num(n) {
  if (typeof n !== 'number' || !Number.isFinite(n)) return String(n ?? '')
  return Number.isInteger(n) ? fmtInt.format(n) : fmtInt.format(Math.round(n * 100) / 100)
}

/** "3 s", "4 min", "2 h 5 min", "3 d". */
export function duration(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return ''
  const s = Math.max(0, Math.round(ms / 1000))
  if (s < 60) return `${s} s`
  const m = Math.floor(s / 60)
  if (m < 60) return `${m} min`
  const hrs = Math.floor(m / 60)
  if (hrs < 48) return `${hrs} h ${m % 60} min`
  return `${Math.floor(hrs / 24)} d`
}

/** Server time now, from the last response's now_ms (the browser clock may be off). */
let skew = 0
export function syncClock(serverNowMs) {
  if (typeof serverNowMs === 'number') skew = serverNowMs - Date.now()
}
export function now() {
  return Date.now() + skew
}

/** "5 s ago", or "in 12 s" for a time to come. */
export function ago(ms) {
  if (!ms) return ''
  const d = now() - ms
  return d < -500 ? `in ${duration(-d)}` : `${duration(d)} ago`
}

export function when(ms) {
  if (!ms) return ''
  return new Date(ms).toLocaleString()
}

/** A time cell: relative text, the exact time as a tooltip. */
export function timeCell(ms) {
  return h('time', { datetime: ms ? new Date(ms).toISOString() : undefined, title: when(ms) }, ago(ms))
}

export function json(value) {
  return h('pre', { class: 'json' }, JSON.stringify(value, null, 2))
}

/** A short one-line view of a stats object: "rows=120 revenue=3,400.5". */
export function statsLine(stats) {
  if (!stats || typeof stats !== 'object') return ''
  return Object.entries(stats)
    .filter(([, v]) => typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean')
    .slice(0, 4)
    .map(([k, v]) => `${k}=${typeof v === 'number' ? num(v) : v}`)
    .join(' ')
}

export function errorBox(err) {
  return h('div', { class: 'error-box', role: 'alert' }, err instanceof Error ? err.message : String(err))
}

/** A transient message at the bottom of the page. */
export function toast(text, kind = 'info') {
  const el = h('div', { class: `toast ${kind}`, role: 'status' }, text)
  document.body.append(el)
  setTimeout(() => el.remove(), 4000)
}

/** Navigates inside the app (set by app.js). */
export const nav = { go: (path) => location.assign(path) }

/** The shared live stream's events ('tasks', 'workers'), dispatched by app.js. */
export const live = new EventTarget()

/** Calls `fn` at most once per `ms`, the last call always running. */
export function throttle(fn, ms) {
  let pending = false
  let last = 0
  const run = () => {
    pending = false
    last = Date.now()
    fn()
  }
  return () => {
    if (pending) return
    pending = true
    setTimeout(run, Math.max(0, last + ms - Date.now()))
  }
}
