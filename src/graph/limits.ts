/**
 * Submission limits: what `createTask` refuses, so that an accepted task can run and be cancelled
 * (docs/limits.md). Every limit is a coordinator config key with the default below.
 */
import { ErrorCode, FlowkitError } from '../errors.ts'

export interface SubmitLimits {
  /** Most nodes in one graph. */
  maxNodes: number
  /** Most dependency links in one graph: depends_on entries, edges, edges_ex and routing targets. */
  maxEdges: number
  /** Deepest nesting of free-form JSON: task params, a node's io (fn_args, input args…) and other fields. */
  maxParamsDepth: number
  /** Largest task `params`, in bytes of JSON (UTF-8). */
  maxParamsBytes: number
  /**
   * Largest message the broker accepts, in bytes: every node's TASK_START (its io as sent, plus
   * room for the task variables a START carries inline) must fit. Kafka's default is 1 MiB.
   */
  maxMessageBytes: number
  /** Largest graph plus params, in bytes of JSON (the task document must stay well under 16 MiB). */
  maxTaskBytes: number
  /** Highest `retry_policy.max` (attempts, the first one included). */
  maxRetryAttempts: number
  /** Highest `retry_policy.backoff_sec`. */
  maxRetryBackoffSec: number
}

export const SUBMIT_LIMIT_DEFAULTS: Readonly<SubmitLimits> = Object.freeze({
  maxNodes: 5000,
  maxEdges: 50_000,
  maxParamsDepth: 32,
  maxParamsBytes: 1_000_000,
  maxMessageBytes: 1_000_000,
  maxTaskBytes: 8_000_000,
  maxRetryAttempts: 100,
  maxRetryBackoffSec: 86_400,
})

const LIMIT_KEYS = Object.keys(SUBMIT_LIMIT_DEFAULTS) as (keyof SubmitLimits)[]

/** Deepest `maxParamsDepth` a config may ask for (the checks recurse that deep). */
export const MAX_PARAMS_DEPTH_SETTING = 1000

/**
 * The limits from a config (any object holding some of the keys, e.g. the coordinator config),
 * defaults for the rest. A value that is not a positive number is a CONFIG_INVALID error.
 */
export function resolveSubmitLimits(input: Partial<SubmitLimits> | Readonly<Record<string, unknown>> = {}): SubmitLimits {
  const out = { ...SUBMIT_LIMIT_DEFAULTS }
  const src = input as Readonly<Record<string, unknown>>
  for (const key of LIMIT_KEYS) {
    const v = src[key]
    if (v === undefined) continue
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
      throw new FlowkitError(ErrorCode.Config, `coordinator config: "${key}" must be a number > 0, got ${JSON.stringify(v) ?? String(v)}`)
    }
    out[key] = v
  }
  if (!Number.isInteger(out.maxParamsDepth) || out.maxParamsDepth > MAX_PARAMS_DEPTH_SETTING) {
    throw new FlowkitError(ErrorCode.Config, `coordinator config: "maxParamsDepth" must be an integer from 1 to ${MAX_PARAMS_DEPTH_SETTING}, got ${out.maxParamsDepth}`)
  }
  return out
}

/** `1234567` → `1,234,567`, `1e6 + 0.5` → `1,000,000.5` (sizes and counts in messages). */
export function formatCount(n: number): string {
  if (!Number.isFinite(n) || Math.abs(n) >= 1e21) return String(n)
  const [int = '', frac] = String(n).split('.')
  const grouped = int.replace(/\B(?=(\d{3})+(?!\d))/g, ',')
  return frac === undefined ? grouped : `${grouped}.${frac}`
}
