/** W3C trace context in record headers: written from a span context, read back, and refused when malformed. */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { INVALID_SPAN_CONTEXT, TraceFlags, createTraceState } from '@opentelemetry/api'
import { spanContextFromHeaders, traceHeaders } from 'flowkit'

const TRACE = '0af7651916cd43dd8448eb211c80319c'
const SPAN = 'b7ad6b7169203331'

test('traceHeaders writes traceparent (and tracestate when there is one); the no-op context writes nothing', () => {
  assert.deepEqual(traceHeaders({ traceId: TRACE, spanId: SPAN, traceFlags: TraceFlags.SAMPLED }), { traceparent: `00-${TRACE}-${SPAN}-01` })
  assert.deepEqual(traceHeaders({ traceId: TRACE, spanId: SPAN, traceFlags: TraceFlags.NONE, traceState: createTraceState('vendor=x,other=y') }), {
    traceparent: `00-${TRACE}-${SPAN}-00`,
    tracestate: 'vendor=x,other=y',
  })
  assert.equal(traceHeaders(INVALID_SPAN_CONTEXT), undefined)
})

test('spanContextFromHeaders reads what traceHeaders wrote, and other valid forms', () => {
  const sc = spanContextFromHeaders({ traceparent: `00-${TRACE}-${SPAN}-01`, tracestate: 'vendor=x' })
  assert.equal(sc?.traceId, TRACE)
  assert.equal(sc?.spanId, SPAN)
  assert.equal(sc?.traceFlags, TraceFlags.SAMPLED)
  assert.equal(sc?.isRemote, true)
  assert.equal(sc?.traceState?.get('vendor'), 'x')
  // Upper case and surrounding spaces are tolerated; a future version may append fields.
  assert.equal(spanContextFromHeaders({ traceparent: ` 00-${TRACE.toUpperCase()}-${SPAN}-01 ` })?.traceId, TRACE)
  assert.equal(spanContextFromHeaders({ traceparent: `01-${TRACE}-${SPAN}-03-extra` })?.traceFlags, TraceFlags.SAMPLED)
})

test('spanContextFromHeaders refuses what is not a trace context', () => {
  for (const traceparent of [
    '',
    'garbage',
    `ff-${TRACE}-${SPAN}-01`,
    `00-${TRACE}-${SPAN}-01-extra`,
    `00-${'0'.repeat(32)}-${SPAN}-01`,
    `00-${TRACE}-${'0'.repeat(16)}-01`,
    `00-${TRACE.slice(1)}-${SPAN}-01`,
  ]) {
    assert.equal(spanContextFromHeaders({ traceparent }), undefined, traceparent)
  }
  assert.equal(spanContextFromHeaders({}), undefined)
  assert.equal(spanContextFromHeaders(undefined), undefined)
})

test('the usual layout is read by offsets: upper-case ids still go through the general form, other flags keep only sampled, bad digits are refused', () => {
  assert.equal(spanContextFromHeaders({ traceparent: `00-${TRACE.toUpperCase()}-${SPAN.toUpperCase()}-01` })?.spanId, SPAN)
  const other = spanContextFromHeaders({ traceparent: `00-${TRACE}-${SPAN}-03` })
  assert.equal(other?.traceFlags, TraceFlags.SAMPLED)
  assert.equal(spanContextFromHeaders({ traceparent: `00-${TRACE}-${SPAN}-02` })?.traceFlags, TraceFlags.NONE)
  for (const traceparent of [`00-${TRACE.slice(0, 31)}g-${SPAN}-01`, `00-${TRACE}-${SPAN.slice(0, 15)}z-01`, `00-${TRACE}-${SPAN}-0g`, `00-${TRACE}_${SPAN}-01`]) {
    assert.equal(spanContextFromHeaders({ traceparent }), undefined, traceparent)
  }
  // What traceHeaders writes reads back the same, sampled or not.
  for (const traceFlags of [TraceFlags.SAMPLED, TraceFlags.NONE]) {
    const h = traceHeaders({ traceId: TRACE, spanId: SPAN, traceFlags })
    const back = spanContextFromHeaders(h)
    assert.deepEqual([back?.traceId, back?.spanId, back?.traceFlags], [TRACE, SPAN, traceFlags])
  }
})
