/**
 * Configuration objects. Keys are camelCase; snake_case keys (as in the seed's
 * `configs/*.default.json`) are accepted too. Unknown keys are ignored; a known key with a value
 * of the wrong type is a CONFIG_INVALID error naming the key.
 */
import { readFileSync } from 'node:fs'
import { ErrorCode, FlowkitError, errorMessage } from './errors.ts'
import { whereJsonBreaks } from './util/json-syntax.ts'
import { SUBMIT_LIMIT_DEFAULTS, type SubmitLimits } from './graph/limits.ts'
import { closest } from './graph/parse-context.ts'
import { withoutBom } from './util/text.ts'

export interface TopicsConfig {
  topicCmdFmt: string
  topicStatusFmt: string
  topicWorkerAnnounce: string
  topicQuery: string
  topicReply: string
  topicSignals: string
  /** Control requests to coordinators (cancel, adopt) from other processes (the CLI). */
  topicControl: string
  /** Partitions for topics flowkit creates. */
  topicPartitions: number
  /**
   * The coordinators' own topic, keyed by task id: a task belongs to the coordinator that owns its
   * partition (docs/scaling.md). Carries submissions, cancel requests and status events forwarded
   * to the owner. Its partition count bounds how many coordinators share the load.
   */
  topicTasks: string
  /** Partitions of `topicTasks` when flowkit creates it (sized for growth: more than coordinators). */
  taskPartitions: number
}

/**
 * The coordinator config holds the submission limits too (`maxNodes`, `maxEdges`,
 * `maxParamsDepth`, `maxParamsBytes`, `maxMessageBytes`, `maxTaskBytes`, `maxRetryAttempts`,
 * `maxRetryBackoffSec`): see graph/limits.ts and docs/limits.md.
 */
export interface CoordinatorConfig extends TopicsConfig, SubmitLimits {
  /** Roles whose status topics are consumed from start (more are added as tasks need them). */
  workerTypes: string[]
  /** Stable consumer-group prefix of this coordinator deployment. */
  groupId: string
  coordinatorId: string | null
  heartbeatSoftSec: number
  heartbeatHardSec: number
  leaseTtlSec: number
  discoveryWindowSec: number
  cancelGraceSec: number
  schedulerTickSec: number
  outboxDispatchTickSec: number
  outboxMaxRetry: number
  outboxBackoffMinMs: number
  outboxBackoffMaxMs: number
  /** A dispatched start not accepted within this many seconds is sent again (same epoch). */
  acceptTimeoutSec: number
  /**
   * A start not accepted within this many seconds (and every as many seconds after) is also sent
   * by name to a live worker of its type with a free slot, past the busy worker whose command
   * partition holds it (0: never).
   */
  steerAfterSec: number
  /**
   * For this many seconds after the coordinator began to listen to worker announces, a START is
   * steered only while a known worker that takes steered STARTs is full (0: no such wait). A
   * worker announces every 60 s (flowkit's `announceIntervalSec` and the seed's
   * `announce_interval_sec` by default): one that announced before this coordinator started is
   * unknown to it until its next announce or status event, and if it is a worker that does not
   * claim attempts (a Python worker), a START steered past it would run twice. Keep it above your
   * workers' announce interval.
   */
  steerWarmupSec: number
  /** Retry policy for nodes that have none. */
  defaultRetryMax: number
  defaultBackoffSec: number
  /** Limit on running worker nodes across all tasks (0 = none). */
  maxRunningNodes: number
  /** Per-type limits on running nodes. */
  maxRunningByType: Record<string, number>
  /**
   * How long applied-event dedup rows and sent outbox rows are kept (servers without TTL indexes:
   * the coordinator purges them from its sweep). Must exceed how late a duplicate can arrive.
   */
  retentionSec: number
  /**
   * How long ended tasks (finished, failed, cancelled) are kept, counted from their end: the sweep
   * then deletes each with its journal, artifacts, batch metrics, stream and attempt claims and
   * checkpoint (Store.purgeTasks). 0 (the default): kept for ever.
   */
  taskRetentionSec: number
  /**
   * Refuse at createTask a graph naming an input adapter workers do not have. Default false: the
   * worker fails such a node permanently with `bad_input_adapter` (docs/protocol.md, scenario S-050).
   */
  rejectUnknownInputAdapters: boolean
  /** How often the sweep runs (retention, adoption of tasks written by another process). */
  sweepIntervalSec: number
  /** Refuse at createTask a graph with a worker type no live worker has announced. */
  requireKnownTypes: boolean
  /** A worker not heard from (announce) for this long no longer counts as serving its roles. */
  workerLivenessSec: number
  /**
   * A running task's document in the store (a snapshot; the journal holds every change) is
   * rewritten at most this often, off the event path; terminal states are written at once.
   */
  snapshotIntervalSec: number
  /**
   * A running task's snapshot carries its batch ledger (one entry per applied batch: what each
   * node's stats count) up to this many entries; past that it leaves the ledger to the store's
   * batch metrics rows, written before it, so that a long stream's task document stays small
   * (MongoDB holds at most 16 MB per document) and is not rewritten whole every few seconds.
   */
  snapshotLedgerMax: number
  /**
   * Longest time `stop()` spends writing the task snapshots still pending; the rest are rewritten
   * by the next coordinator that loads those tasks (the journal holds their state).
   */
  stopSnapshotsSec: number
  /**
   * A coordinator whose membership in the owners' group has not been confirmed by the broker for
   * this long (it was paused, or cut off) writes nothing until it is confirmed again: another
   * coordinator may own its tasks by now. Keep it below the bus's session timeout.
   */
  ownershipConfirmSec: number
  /**
   * Port of an HTTP server answering `GET /metrics` (Prometheus) started with the instance (0: any
   * free port); null: none. The `observability.metricsPort` option wins over it.
   */
  metricsPort: number | null
}

export interface WorkerConfig extends TopicsConfig {
  /** Prefix of the worker's consumer groups (`{prefix}workers.{role}.v1`), to namespace environments. */
  groupPrefix: string
  roles: string[]
  workerId: string | null
  workerVersion: string
  concurrency: number
  strictInputAdapters: boolean
  leaseTtlSec: number
  hbIntervalSec: number
  announceIntervalSec: number
  pullPollMsDefault: number
  pullEmptyBackoffMsMax: number
  dbCancelPollMs: number
  /** Grace the handler gets after a cancel before the worker reports CANCELLED anyway. */
  cancelGraceMs: number
  /** Least time between two background writes of the worker's run state (`saveWorkerState`). */
  stateSaveIntervalMs: number
  /**
   * Longest time a run's TASK_ACCEPTED waits for the run's next status event, so that a first batch
   * ending soon reports both in one produce (at most 1000; 0 sends it at once).
   */
  statusHoldMs: number
  /**
   * Largest bus message the worker sends (the broker's `message.max.bytes`; Kafka's default is
   * 1 MiB): a handler result that would not fit fails its node with the size and this limit.
   */
  maxMessageBytes: number
  /**
   * Port of an HTTP server answering `GET /metrics` (Prometheus) started with the instance (0: any
   * free port); null: none. The `observability.metricsPort` option wins over it.
   */
  metricsPort: number | null
}

const TOPIC_DEFAULTS: TopicsConfig = {
  topicCmdFmt: 'cmd.{type}.v1',
  topicStatusFmt: 'status.{type}.v1',
  topicWorkerAnnounce: 'workers.announce.v1',
  topicQuery: 'query.tasks.v1',
  topicReply: 'reply.tasks.v1',
  topicSignals: 'signals.v1',
  topicControl: 'control.tasks.v1',
  topicPartitions: 3,
  topicTasks: 'coord.tasks.v1',
  taskPartitions: 12,
}

export const COORDINATOR_DEFAULTS: CoordinatorConfig = {
  ...TOPIC_DEFAULTS,
  ...SUBMIT_LIMIT_DEFAULTS,
  workerTypes: [],
  groupId: 'flowkit.coordinator',
  coordinatorId: null,
  heartbeatSoftSec: 300,
  heartbeatHardSec: 3600,
  leaseTtlSec: 45,
  discoveryWindowSec: 8,
  cancelGraceSec: 30,
  schedulerTickSec: 1,
  outboxDispatchTickSec: 0.25,
  outboxMaxRetry: 12,
  outboxBackoffMinMs: 250,
  outboxBackoffMaxMs: 60_000,
  acceptTimeoutSec: 30,
  steerAfterSec: 5,
  steerWarmupSec: 75,
  defaultRetryMax: 3,
  defaultBackoffSec: 1,
  maxRunningNodes: 0,
  maxRunningByType: {},
  retentionSec: 7 * 24 * 3600,
  taskRetentionSec: 0,
  rejectUnknownInputAdapters: false,
  requireKnownTypes: false,
  sweepIntervalSec: 10,
  workerLivenessSec: 180,
  snapshotIntervalSec: 5,
  snapshotLedgerMax: 10_000,
  stopSnapshotsSec: 5,
  ownershipConfirmSec: 5,
  metricsPort: null,
}

/** A camelCase key in the seed's snake_case (`leaseTtlSec` → `lease_ttl_sec`). */
export type SnakeCase<S extends string> = S extends `${infer H}${infer T}` ? `${H extends Lowercase<H> ? H : `_${Lowercase<H>}`}${SnakeCase<T>}` : S

/**
 * The settings a Coordinator or Worker takes: any of its config's keys, in camelCase or in the
 * seed's snake_case (a misspelt key in an object literal is a compile error; keys read from a
 * file are checked at run time: resolveConfig).
 */
export type ConfigInput<T> = Partial<T> & { [K in keyof T as SnakeCase<K & string>]?: T[K] }

export const WORKER_DEFAULTS: WorkerConfig = {
  ...TOPIC_DEFAULTS,
  groupPrefix: '',
  roles: [],
  workerId: null,
  workerVersion: '0.1.0',
  concurrency: 1,
  strictInputAdapters: false,
  leaseTtlSec: 60,
  hbIntervalSec: 20,
  announceIntervalSec: 60,
  pullPollMsDefault: 300,
  pullEmptyBackoffMsMax: 4000,
  dbCancelPollMs: 500,
  cancelGraceMs: 5000,
  stateSaveIntervalMs: 250,
  statusHoldMs: 5,
  maxMessageBytes: 1024 * 1024,
  metricsPort: null,
}

function snake(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)
}

function camel(key: string): string {
  return key.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase())
}

function typeOf(v: unknown): string {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'array'
  return typeof v
}

/** Merges `input` (camelCase or snake_case keys) over `defaults`, checking value types. */
export function resolveConfig<T extends object>(defaults: T, input: Record<string, unknown> = {}, label = 'config'): T {
  if (typeof input !== 'object' || Array.isArray(input)) {
    throw new FlowkitError(ErrorCode.Config, `${label} must be an object of settings, got ${typeOf(input)}`)
  }
  input ??= {}
  const out: Record<string, unknown> = { ...(defaults as Record<string, unknown>) }
  for (const [rawKey, value] of Object.entries(input)) {
    if (value === undefined) continue
    const key = camel(rawKey)
    if (!(key in out)) {
      // A near miss of a known setting (`concurency`) would be ignored without a word: refused.
      // Other keys (a seed config file's Kafka or Mongo settings) are left to their readers.
      const near = closest(key, Object.keys(out))
      // Named the way the caller writes its keys (a snake_case file gets a snake_case suggestion).
      const shown = near !== null && rawKey.includes('_') ? snake(near) : near
      if (shown !== null) throw new FlowkitError(ErrorCode.Config, `${label}: unknown setting "${rawKey}" (did you mean "${shown}"?)`)
      continue
    }
    const expected = typeOf(out[key])
    const got = typeOf(value)
    // A key whose default is null (an id picked at start, no metrics server) is checked by its
    // reader; null is no value of any other key (a null groupPrefix named the group "null…").
    if (out[key] !== null && expected !== got) {
      throw new FlowkitError(ErrorCode.Config, `${label}: "${rawKey}" must be ${expected}, got ${got}`)
    }
    if (got === 'number' && !Number.isFinite(value as number)) {
      throw new FlowkitError(ErrorCode.Config, `${label}: "${rawKey}" must be a finite number`)
    }
    out[key] = value
  }
  return out as T
}

/**
 * Smallest `maxMessageBytes` a Coordinator or a Worker accepts (327,680): a TASK_START keeps room
 * for 256 KiB of task variables and a modest io (coordinator/submit.ts), and a worker with a
 * smaller limit could not report on the runs such STARTs begin.
 */
export const MIN_MESSAGE_BYTES = 256 * 1024 + 64 * 1024

/** Checks numeric settings against a lower bound (`> 0` when `strict`, else `>= 0`), naming the key. */
export function checkBounds<T extends object>(config: T, label: string, positive: readonly (keyof T)[], nonNegative: readonly (keyof T)[] = []): T {
  for (const k of positive) {
    const v = config[k]
    if (typeof v !== 'number' || !(v > 0)) throw new FlowkitError(ErrorCode.Config, `${label}: "${String(k)}" must be > 0, got ${String(v)}`)
  }
  for (const k of nonNegative) {
    const v = config[k]
    if (typeof v !== 'number' || !(v >= 0)) throw new FlowkitError(ErrorCode.Config, `${label}: "${String(k)}" must be >= 0, got ${String(v)}`)
  }
  return config
}

/** Settings that must be whole numbers of at least `min` (partitions, counts), naming the key. */
export function checkIntegers<T extends object>(config: T, label: string, keys: readonly (keyof T)[], min: number): void {
  for (const k of keys) {
    const v = config[k]
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw new FlowkitError(ErrorCode.Config, `${label}: "${String(k)}" must be an integer >= ${min}, got ${String(v)}`)
  }
}

/** Settings that must be a non-empty string (or null where `nullable`), naming the key. */
export function checkNames<T extends object>(config: T, label: string, keys: readonly (keyof T)[], nullable: readonly (keyof T)[] = []): void {
  for (const k of [...keys, ...nullable]) {
    const v = config[k]
    if (v === null && nullable.includes(k)) continue
    if (typeof v !== 'string' || v === '') throw new FlowkitError(ErrorCode.Config, `${label}: "${String(k)}" must be a non-empty string${nullable.includes(k) ? ' or null' : ''}, got ${v === '' ? 'an empty string' : typeOf(v)}`)
  }
}

/** The topic settings a Coordinator and a Worker share: non-empty names, whole partition counts. */
export function checkTopics(config: TopicsConfig, label: string): void {
  checkIntegers(config, label, ['topicPartitions', 'taskPartitions'], 1)
  for (const k of ['topicCmdFmt', 'topicStatusFmt', 'topicWorkerAnnounce', 'topicQuery', 'topicReply', 'topicSignals', 'topicControl', 'topicTasks'] as const) {
    const v: unknown = config[k]
    if (typeof v !== 'string' || v === '') throw new FlowkitError(ErrorCode.Config, `${label}: "${k}" must be a non-empty topic name, got ${v === '' ? 'an empty string' : typeOf(v)}`)
  }
}

/** A list of strings (roles, worker types), naming the key. */
export function checkStringList(value: unknown, label: string, key: string): void {
  if (!Array.isArray(value) || value.some((x) => typeof x !== 'string' || x === '')) {
    throw new FlowkitError(ErrorCode.Config, `${label}: "${key}" must be an array of non-empty strings, got ${JSON.stringify(value) ?? typeOf(value)}`)
  }
}

/**
 * Reads a JSON config file (a path, relative to the working directory, or a `file:` URL), such as
 * the seed-format defaults the package ships: `new URL('../configs/coordinator.default.json',
 * import.meta.resolve('flowkit'))`. A missing or unreadable file, or one that is not JSON, is a
 * CONFIG_INVALID FlowkitError naming it (and where the JSON breaks, not its text).
 */
export function loadConfigFile(path: string | URL): Record<string, unknown> {
  const name = String(path)
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    const code = (err as { code?: unknown }).code
    throw new FlowkitError(ErrorCode.Config, code === 'ENOENT' ? `config file ${name} not found (a relative path is read from the working directory, ${process.cwd()})` : `config file ${name} cannot be read: ${errorMessage(err)}`, { cause: err })
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(withoutBom(text))
  } catch {
    throw new FlowkitError(ErrorCode.Config, `config file ${name} is not valid JSON${whereJsonBreaks(text)}`)
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new FlowkitError(ErrorCode.Config, `config file ${path} must hold a JSON object`)
  }
  return parsed as Record<string, unknown>
}

export function topicFor(fmt: string, type: string): string {
  // Asked for every record sent: the few names a process uses are made once (each call made a new
  // string, and a memory bus keeps one per record).
  let byType = topicNames.get(fmt)
  if (byType === undefined) {
    byType = new Map()
    topicNames.set(fmt, byType)
  }
  let name = byType.get(type)
  if (name === undefined) {
    name = fmt.replace('{type}', type)
    if (byType.size < 1024) byType.set(type, name)
  }
  return name
}

/** Topic names by format, then type (topicFor). */
const topicNames = new Map<string, Map<string, string>>()
