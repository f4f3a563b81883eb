export { Coordinator, type CoordinatorOptions, type CreateTaskInput } from './coordinator/coordinator.ts'
export { Worker, type WorkerOptions } from './worker/worker.ts'
export { MemoryBus } from './adapters/memory/bus.ts'
export { MemoryStore } from './adapters/memory/store.ts'
export { SystemClock, TestClock } from './clock.ts'
export type { Clock } from './ports/clock.ts'
export type * from './ports/bus.ts'
export type * from './ports/store.ts'
// The status constants as values too (`export type *` makes them types only).
export { NodeStatus, TaskStatus, TERMINAL_NODE_STATUSES, TERMINAL_TASK_STATUSES } from './model/state.ts'
export type { TaskView, NodeView } from './coordinator/view.ts'
export { TASK_EVENTS_CHANNEL, type TaskEvent } from './coordinator/watch.ts'
export type { TaskOutput } from './coordinator/output.ts'
export type {
  RoleHandler,
  Batch,
  RunBatch,
  BatchResult,
  FinalizeResult,
  RunContext,
  RunInfo,
  ArtifactsWriter,
  ErrorClassification,
} from './worker/handler.ts'
export { classifyErrorDefault } from './worker/handler.ts'
export type { SpawnOptions, SpawnResult } from './worker/subprocess.ts'
export { SpawnInputError } from './worker/subprocess.ts'
export { WORKER_RESTARTED_REASON, WORKER_STOPPING_REASON, type UpstreamFailure } from './protocol/messages.ts'
export { INPUT_ADAPTERS } from './worker/input.ts'
export { BUILTIN_FUNCTIONS, type CoordinatorFn, type CoordinatorFnContext, type CoordinatorFnResult } from './coordinator/functions.ts'
export { OutboxDispatcher, outboxBackoffMs } from './coordinator/outbox.ts'
export {
  FlowkitError,
  GraphValidationError,
  PermanentError,
  TransientError,
  ErrorCode,
  isFlowkitError,
  type ErrorInit,
  type FlowkitErrorInit,
  type FlowkitErrorOptions,
  type GraphValidationErrorInit,
  type HandlerErrorInit,
} from './errors.ts'
export {
  COORDINATOR_DEFAULTS,
  WORKER_DEFAULTS,
  type ConfigInput,
  type CoordinatorConfig,
  type SnakeCase,
  type WorkerConfig,
  loadConfigFile,
  resolveConfig,
} from './config.ts'
export { parseGraph } from './graph/parse.ts'
export type { GraphSpec, NodeSpec, FanIn, RetryPolicy } from './graph/types.ts'
// The graph format as users write it (snake_case wire JSON), its builder and its JSON Schema
export type * from './graph/json-types.ts'
export {
  graph,
  rechunk,
  pullFromArtifacts,
  GraphBuilder,
  NodeBuilder,
  type RolesOf,
  type FnArgsParam,
  type TaskInputJson,
  type EdgeOptions,
  type FanInOption,
  type InputSpec,
  type RetryOptions,
} from './graph/builder.ts'
export { graphJsonSchema } from './graph/schema.ts'
export { createLogger, MemoryLogger, EVENTS_CHANNEL, type FlowkitEventMessage, type Logger, type LogLevel } from './log.ts'
export { LOG_FORMATS, LOG_LEVELS, type LogFormat, type LoggerOptions } from './log.ts'
export * as protocol from './protocol/index.ts'
export { VARS_LIMITS, VarsError, VarsReason, setVars, mergeVars, incrVar, unsetVars, getVar } from './coordinator/vars.ts'
export { type Guard, evaluateGuard, parseGuard } from './graph/guard.ts'
// Real adapters, loading their driver on first use ('flowkit/kafka' and 'flowkit/mongo' export the
// driver-backed classes themselves).
export { KafkaBus, MongoStore } from './adapters/lazy.ts'
export type { KafkaBusOptions, KafkaSaslOptions } from './adapters/kafka/index.ts'
export type { MongoStoreOptions } from './adapters/mongo/index.ts'
// Observability: traces (OpenTelemetry API), Prometheus metrics (prom-client), docs/observability.md
export {
  CoordinatorObservability,
  WorkerObservability,
  type MetricsHandler,
  type ObservabilityOptions,
  TRACER_NAME,
  TRACEPARENT,
  TRACESTATE,
  metricsHandler,
  spanContextFromHeaders,
  traceHeaders,
} from './observability/index.ts'
