/**
 * What the harness tells a process it starts (coordinator, worker, observer): one JSON document in
 * the FLOWKIT_REL_SPEC environment variable. Shared by the harness (lib/) and the process entry
 * points (proc/).
 */

/** Bus faults a process injects on its own produce path (proc/chaos-bus.ts). */
export interface ChaosSpec {
  /** Probability that a record is produced a second time (after a delay in `delayMs`). */
  duplicate: number
  /** Probability that a record is held back `delayMs` (the others of its produce call go first). */
  delay: number
  delayMs: [number, number]
  /** Only topics whose name (without the scenario prefix) starts with one of these. */
  topics: string[]
  seed: number
}

export interface KafkaTuning {
  sessionTimeoutMs: number
  heartbeatIntervalMs: number
  rebalanceTimeoutMs: number
  requestTimeoutMs: number
}

export interface ProcSpec {
  kind: 'coordinator' | 'worker' | 'observer'
  /** Process label in logs and results, e.g. `worker-1`. */
  name: string
  brokers: string
  mongoUrl: string
  dbName: string
  /** Prefix of every topic and consumer group of the scenario, e.g. `rel.a1b2.`. */
  prefix: string
  roles: string[]
  kafka: KafkaTuning
  chaos: ChaosSpec | null
  /** Coordinator / worker config overrides (camelCase keys). */
  config: Record<string, unknown>
  /** Worker: its id (stable across restarts of the same slot). */
  workerId?: string
  /** Worker: offset added to the worker's Clock (ms; negative = behind). */
  clockOffsetMs?: number
  /** Worker: where handlers append one line per batch. Observer: where records go. */
  outFile?: string
}

export const SPEC_ENV = 'FLOWKIT_REL_SPEC'

/** Topic names of a scenario, as the coordinator and the workers are configured. */
export function topicsConfig(prefix: string): Record<string, string> {
  return {
    topicCmdFmt: `${prefix}cmd.{type}.v1`,
    topicStatusFmt: `${prefix}status.{type}.v1`,
    topicWorkerAnnounce: `${prefix}workers.announce.v1`,
    topicQuery: `${prefix}query.tasks.v1`,
    topicReply: `${prefix}reply.tasks.v1`,
    topicSignals: `${prefix}signals.v1`,
    topicControl: `${prefix}control.tasks.v1`,
    // The coordinators' owners' topic (ownership of tasks by partition): one per scenario too,
    // else the coordinators of every scenario would share the default `coord.tasks.v1`.
    topicTasks: `${prefix}coord.tasks.v1`,
  }
}

export const cmdTopic = (prefix: string, role: string): string => `${prefix}cmd.${role}.v1`
export const statusTopic = (prefix: string, role: string): string => `${prefix}status.${role}.v1`

/** Messages between the harness and a process (Node IPC channel). */
export type IpcRequest =
  | { id: number; op: 'create'; task: { id: string; params: Record<string, unknown>; graph: unknown } }
  | { id: number; op: 'cancel'; taskId: string }
  | { id: number; op: 'runs' }
  | { id: number; op: 'ping' }
  /** Coordinator: the partitions of the owners' topic it owns now (`Coordinator.ownership`). */
  | { id: number; op: 'ownership' }
  | { id: number; op: 'reconnect' }
  | { id: number; op: 'sync' }

export type IpcReply = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: string; code: string | null }

/** Sent once by a process when it is ready (coordinator/worker started, observer consuming). */
export interface IpcReady {
  ready: true
  pid: number
}

/** A deterministic PRNG (mulberry32). */
export function prng(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) | 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
