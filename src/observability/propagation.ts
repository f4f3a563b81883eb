/**
 * W3C trace context (https://www.w3.org/TR/trace-context/) in bus record headers: `traceparent`
 * and `tracestate`. flowkit writes and reads them itself, whatever propagator is registered
 * globally (with no SDK the OpenTelemetry API registers none), so a span context always crosses
 * the bus when tracing is on. Headers are additive: a peer that ignores them (the Python seed)
 * reads the record as before, and a record without them is simply not linked.
 *
 * Both directions are on the hot path (a header per command and per status event): the usual
 * form (version 00, lower-case hex, what flowkit and OpenTelemetry SDKs write) is formatted and
 * read by fixed offsets, without the propagation API's carrier machinery or a regular expression;
 * anything else goes through the general pattern.
 */
import { INVALID_SPANID, INVALID_TRACEID, type SpanContext, TraceFlags, createTraceState } from '@opentelemetry/api'

export const TRACEPARENT = 'traceparent'
export const TRACESTATE = 'tracestate'

const TRACEPARENT_RE = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/
/** `traceparent` of version 00: `00-` + 32 hex + `-` + 16 hex + `-` + 2 hex. */
const V00_LENGTH = 55
const DASH = 45

/**
 * Lower-case hex digits only (what the W3C format allows) in `s` from `from` to `to`: 0 when not,
 * 1 when they are all zeros (an invalid id), 2 otherwise.
 */
function lowerHex(s: string, from: number, to: number): number {
  let nonZero = 0
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i)
    if (c > 102 || c < 48 || (c > 57 && c < 97)) return 0
    nonZero |= c ^ 48
  }
  return nonZero === 0 ? 1 : 2
}

/** Trace flags as two hex digits (the common cases without formatting). */
function flagsHex(flags: number): string {
  const f = flags & 0xff
  return f === TraceFlags.SAMPLED ? '01' : f === TraceFlags.NONE ? '00' : f.toString(16).padStart(2, '0')
}

const PARTS = ['00', '', '', '']

/**
 * The `traceparent` value of `ctx` (assumed valid). Made by a join, which gives a flat string:
 * concatenation gives a tree of pieces that its first reader (the peer checking it) flattens, at
 * a higher cost than the join.
 */
export function traceparentOf(ctx: SpanContext): string {
  PARTS[1] = ctx.traceId
  PARTS[2] = ctx.spanId
  PARTS[3] = flagsHex(ctx.traceFlags)
  return PARTS.join('-')
}

/**
 * The headers that carry `ctx`, or undefined for an invalid (no-op) span context. Computed once
 * per span by its owner (the same object goes with every record of the span: never mutate it).
 */
export function traceHeaders(ctx: SpanContext): Record<string, string> | undefined {
  // The no-op span context (no SDK) is the one invalid context a tracer hands out.
  if (ctx.traceId === INVALID_TRACEID || ctx.spanId === INVALID_SPANID) return undefined
  const state = ctx.traceState?.serialize()
  return state ? { [TRACEPARENT]: traceparentOf(ctx), [TRACESTATE]: state } : { [TRACEPARENT]: traceparentOf(ctx) }
}

/** The remote span context in `headers`, or undefined when there is none (or it is malformed). */
export function spanContextFromHeaders(headers: Readonly<Record<string, string>> | undefined): SpanContext | undefined {
  const parent = headers?.[TRACEPARENT]
  return parent === undefined ? undefined : spanContextOf(parent, headers?.[TRACESTATE])
}

/** The remote span context of a `traceparent` (and `tracestate`) value, or undefined when malformed. */
export function spanContextOf(parent: string, state: string | undefined): SpanContext | undefined {
  return readTraceContext(parent, state)?.ctx
}

/**
 * The remote span context of a `traceparent` (and `tracestate`) value, or undefined when
 * malformed; `plain`: the value is in the usual form (version 00, lower case), which can be sent
 * on as it is.
 */
export function readTraceContext(parent: string, state: string | undefined): { ctx: SpanContext; plain: boolean } | undefined {
  let ctx: SpanContext | undefined
  if (
    parent.length === V00_LENGTH &&
    parent.charCodeAt(0) === 48 &&
    parent.charCodeAt(1) === 48 &&
    parent.charCodeAt(2) === DASH &&
    parent.charCodeAt(35) === DASH &&
    parent.charCodeAt(52) === DASH &&
    lowerHex(parent, 53, 55) !== 0
  ) {
    // The common case (what flowkit and OpenTelemetry SDKs write): fixed offsets.
    const trace = lowerHex(parent, 3, 35)
    const span = lowerHex(parent, 36, 52)
    if (trace === 1 || span === 1) return undefined // ids of zeros only are invalid
    if (trace === 2 && span === 2) {
      const last = parent.charCodeAt(54) // the sampled flag is the low bit of the last digit
      ctx = { traceId: parent.slice(3, 35), spanId: parent.slice(36, 52), traceFlags: (last >= 97 ? last - 87 : last - 48) & TraceFlags.SAMPLED, isRemote: true }
    }
  }
  const plain = ctx !== undefined
  if (ctx === undefined) {
    const m = TRACEPARENT_RE.exec(parent.trim().toLowerCase())
    if (m === null || m[1] === 'ff' || (m[1] === '00' && m[5] !== undefined)) return undefined
    ctx = { traceId: m[2] as string, spanId: m[3] as string, traceFlags: Number.parseInt(m[4] as string, 16) & TraceFlags.SAMPLED, isRemote: true }
    if (ctx.traceId === INVALID_TRACEID || ctx.spanId === INVALID_SPANID) return undefined // the pattern checked the rest
  }
  if (state !== undefined && state.length > 0) ctx.traceState = createTraceState(state)
  return { ctx, plain }
}

/**
 * Whether a `traceparent` value says its trace is sampled: a look at the flags at their fixed
 * offset (the value is fully read only when it is not in the usual layout).
 */
export function isSampledTraceparent(parent: string | undefined): boolean {
  if (parent === undefined) return false
  if (parent.length >= V00_LENGTH && parent.charCodeAt(2) === DASH && parent.charCodeAt(52) === DASH) {
    const last = parent.charCodeAt(54)
    return ((last >= 97 ? last - 87 : last >= 65 ? last - 55 : last - 48) & TraceFlags.SAMPLED) === TraceFlags.SAMPLED
  }
  return ((readTraceContext(parent, undefined)?.ctx.traceFlags ?? 0) & TraceFlags.SAMPLED) === TraceFlags.SAMPLED
}
