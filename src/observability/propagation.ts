/**
 * W3C trace context (https://www.w3.org/TR/trace-context/) in bus record headers: `traceparent`
 * and `tracestate`. flowkit writes and reads them itself, whatever propagator is registered
 * globally (with no SDK the OpenTelemetry API registers none), so a span context always crosses
 * the bus when tracing is on. Headers are additive: a peer that ignores them (the Python seed)
 * reads the record as before, and a record without them is simply not linked.
 */
import { INVALID_SPANID, INVALID_TRACEID, type SpanContext, TraceFlags, createTraceState } from '@opentelemetry/api'

export const TRACEPARENT = 'traceparent'
export const TRACESTATE = 'tracestate'

const VERSION_00 = /^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/
const TRACEPARENT_RE = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/

/** The headers that carry `ctx`, or undefined for an invalid (no-op) span context. */
export function traceHeaders(ctx: SpanContext): Record<string, string> | undefined {
  // The no-op span context (no SDK) is the one invalid context a tracer hands out.
  if (ctx.traceId === INVALID_TRACEID || ctx.spanId === INVALID_SPANID) return undefined
  const flags = (ctx.traceFlags & 0xff).toString(16).padStart(2, '0')
  const headers: Record<string, string> = { [TRACEPARENT]: `00-${ctx.traceId}-${ctx.spanId}-${flags}` }
  const state = ctx.traceState?.serialize()
  if (state) headers[TRACESTATE] = state
  return headers
}

/** The remote span context in `headers`, or undefined when there is none (or it is malformed). */
export function spanContextFromHeaders(headers: Readonly<Record<string, string>> | undefined): SpanContext | undefined {
  const parent = headers?.[TRACEPARENT]
  if (parent === undefined) return undefined
  let ctx: SpanContext
  if (VERSION_00.test(parent)) {
    // The common case (what flowkit and OpenTelemetry SDKs write): fixed offsets.
    ctx = { traceId: parent.slice(3, 35), spanId: parent.slice(36, 52), traceFlags: Number.parseInt(parent.slice(53, 55), 16) & TraceFlags.SAMPLED, isRemote: true }
  } else {
    const m = TRACEPARENT_RE.exec(parent.trim().toLowerCase())
    if (m === null || m[1] === 'ff' || (m[1] === '00' && m[5] !== undefined)) return undefined
    ctx = { traceId: m[2] as string, spanId: m[3] as string, traceFlags: Number.parseInt(m[4] as string, 16) & TraceFlags.SAMPLED, isRemote: true }
  }
  if (ctx.traceId === INVALID_TRACEID || ctx.spanId === INVALID_SPANID) return undefined // the pattern checked the rest
  const state = headers?.[TRACESTATE]
  if (state !== undefined && state.length > 0) ctx.traceState = createTraceState(state)
  return ctx
}
