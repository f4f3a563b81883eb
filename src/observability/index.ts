/**
 * Traces (OpenTelemetry API) and metrics (prom-client) of coordinators and workers: see
 * docs/observability.md for the spans, attributes, metrics and example queries.
 */
export { CoordinatorObservability } from './coordinator.ts'
export { WorkerObservability } from './worker.ts'
export { ObservedLogger } from './logger.ts'
export { type MetricsHandler, type ObservabilityOptions, TRACER_NAME, metricsHandler } from './options.ts'
export { TRACEPARENT, TRACESTATE, spanContextFromHeaders, traceHeaders } from './propagation.ts'
export { timedStore } from './store.ts'
