/** The handler contract: what a user writes to run a role's nodes batch by batch. */
import { ErrorCode, FlowkitError, PermanentError, TransientError } from '../errors.ts'
import type { SpawnOptions, SpawnResult } from './subprocess.ts'
import type { UpstreamFailure } from '../protocol/messages.ts'

export interface Batch {
  /** Stable id of the batch within the node's run; generated (`b{index}`) when absent. */
  batch_uid?: string | null
  payload: Record<string, unknown>
}

/** A batch as processBatch receives it: its id is always set (the given one, or `b{index}`). */
export interface RunBatch extends Batch {
  batch_uid: string
}

export interface BatchResult {
  /** false reports a failed batch without throwing (seed compatible). Default true. */
  success?: boolean
  /** Finite numbers only (anything else fails the run permanently: bad_handler_result). */
  metrics?: Record<string, unknown>
  /** Meta of the batch's partial artifact (what a downstream consumer reads). */
  meta?: Record<string, unknown>
  artifacts_ref?: Record<string, unknown> | null
  reason_code?: string
  permanent?: boolean
  error?: string
}

export interface FinalizeResult {
  /** Finite numbers only (anything else fails the run permanently: bad_handler_result). */
  metrics?: Record<string, unknown>
  /** Meta of the node's complete artifact. */
  meta?: Record<string, unknown>
  artifacts_ref?: Record<string, unknown> | null
}

export interface RunInfo {
  taskId: string
  nodeId: string
  stepType: string
  attemptEpoch: number
  workerId: string
  leaseId: string
}

/** Lets a handler manage its own outputs. */
export interface ArtifactsWriter {
  /** Writes (upserts) the partial artifact of one batch. */
  writePartial(batchUid: string, meta: Record<string, unknown>): Promise<void>
  /** Writes the node's complete artifact (the worker then does not write its own). */
  markComplete(meta?: Record<string, unknown>): Promise<void>
}

export interface RunContext extends RunInfo {
  readonly signal: AbortSignal
  readonly artifacts: ArtifactsWriter
  readonly inputRef: Record<string, unknown> | null
  readonly inputInline: Record<string, unknown> | null
  readonly batching: Record<string, unknown> | null
  /** The task's variables (coordinator.vars) as they were when this run started. */
  readonly vars: Readonly<Record<string, unknown>>
  /**
   * For a node started by another's `routing.on_failure`: the failed nodes, their attempt,
   * reason code and error (empty for other nodes).
   */
  readonly upstreamFailures: readonly UpstreamFailure[]
  /** Throws the cancel reason if the run was cancelled. */
  throwIfCancelled(): void
  /** Sleeps on the worker's clock; rejects when the run is cancelled, and with a TypeError when `ms` is NaN or not a number. */
  sleep(ms: number): Promise<void>
  /**
   * Runs a command (no shell) in its own process group and resolves with its exit status and
   * output. A cancel sends SIGTERM to the whole group, then SIGKILL after the grace period.
   */
  spawn(command: string, args?: readonly string[], options?: SpawnOptions): Promise<SpawnResult>
  /** Registers a callback run (once) when the run ends, whatever the outcome. */
  onCleanup(fn: () => void | Promise<void>): void
  /**
   * Saves this run's progress (JSON, at most 1 MiB): a retried attempt of the node gets it back
   * from `lastCheckpoint()` and can resume there instead of starting over. Refused once the run
   * was cancelled or ended.
   */
  checkpoint(state: unknown): Promise<void>
  /** The node's last saved checkpoint (this or an earlier attempt's), or null. */
  lastCheckpoint(): Promise<{ attemptEpoch: number; state: unknown } | null>
  /**
   * The partial artifact an earlier attempt of this node wrote for batch `batchUid` (its attempt
   * and meta), or null. A resumed attempt that skips a batch an earlier attempt did returns its
   * meta again: this attempt's partial artifacts replace the earlier attempt's, so a batch
   * returned without it would leave downstream readers the worker's default meta (`{ metrics }`)
   * instead of the batch's output.
   */
  earlierPartial(batchUid: string): Promise<{ attemptEpoch: number; meta: Record<string, unknown> } | null>
}

export interface ErrorClassification {
  reasonCode: string
  permanent: boolean
}

export interface RoleHandler {
  init?(run: RunInfo): Promise<void> | void
  /**
   * Loads what `iterBatches` needs. May return `{ input_adapter, input_args }` (or
   * `{ input_inline: { input_adapter, input_args } }`) to suggest an input adapter; the adapter
   * named by the coordinator always wins over a suggestion.
   */
  loadInput?(inputRef: Record<string, unknown> | null, inputInline: Record<string, unknown> | null): Promise<unknown>
  iterBatches?(loaded: unknown): AsyncIterable<Batch> | Iterable<Batch>
  processBatch(batch: RunBatch, ctx: RunContext): Promise<BatchResult | undefined | void> | BatchResult | undefined | void
  finalize?(ctx: RunContext): Promise<FinalizeResult | undefined | void> | FinalizeResult | undefined | void
  classifyError?(err: unknown): ErrorClassification
}

/**
 * Default error classification: programming faults (`TypeError`, `RangeError`, `SyntaxError`) and
 * errors marked non-retryable (`PermanentError`, `{ permanent: true }`, a non-retryable
 * FlowkitError other than STORE_ERROR) are permanent; everything else is transient.
 */
export function classifyErrorDefault(err: unknown): ErrorClassification {
  if (err instanceof PermanentError) return { reasonCode: err.reasonCode, permanent: true }
  if (err instanceof TransientError) return { reasonCode: err.reasonCode, permanent: false }
  // A store's unknown error is the infrastructure's, not the handler's input: retried (within
  // retry_policy.max) like an outage, never a permanent failure of the task.
  if (err instanceof FlowkitError) return { reasonCode: err.code.toLowerCase(), permanent: !err.retryable && err.code !== ErrorCode.StoreError }
  if (err instanceof TypeError) return { reasonCode: 'type_error', permanent: true }
  if (err instanceof RangeError) return { reasonCode: 'range_error', permanent: true }
  if (err instanceof SyntaxError) return { reasonCode: 'syntax_error', permanent: true }
  if (err !== null && typeof err === 'object') {
    const e = err as { permanent?: unknown; retryable?: unknown; reasonCode?: unknown; reason_code?: unknown }
    const code = typeof e.reasonCode === 'string' ? e.reasonCode : typeof e.reason_code === 'string' ? e.reason_code : 'unexpected_error'
    if (e.permanent === true || e.retryable === false) return { reasonCode: code, permanent: true }
    return { reasonCode: code, permanent: false }
  }
  return { reasonCode: 'unexpected_error', permanent: false }
}
