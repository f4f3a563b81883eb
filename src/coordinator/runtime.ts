/**
 * A task runtime: the coordinator's in-memory copy of one active task, of which it is the only
 * writer. Node states live in an array indexed by the node's ordinal in the graph; readiness is
 * kept incrementally (per node, how many of its fan-in parents are satisfied or dead), so an event
 * costs work proportional to the children of the node it changed, never to the size of the task.
 *
 * What changed since the last flush (nodes, task fields, applied events, commands, metrics rows)
 * is collected here and taken by the flusher as one journal entry.
 */
import type { DependencyIndex } from '../graph/deps.ts'
import { type GraphPlan, planOf } from './graph-plan.ts'
import { COORDINATOR_FN_TYPE, type GraphSpec, type NodeSpec } from '../graph/types.ts'
import type { JournalCommand, TaskChanges, VersionedTask } from '../model/journal.ts'
import { type BatchLedger, type LedgerInDoc, batchLedgersOf, taskDocOf } from './runtime-doc.ts'
import type { NodeState, NodeStatus, TaskDoc, TaskStatus } from '../model/state.ts'
import type { BusRecord } from '../ports/bus.ts'
import type { BatchMetricsWrite } from '../ports/store.ts'
import { evaluateGuard } from '../graph/guard.ts'

export type Readiness = { kind: 'start' } | { kind: 'wait' } | { kind: 'skip'; reason: string }

/** A command to send once the flush that decided it is durable. */
export interface PendingCommand extends BusRecord {
  dedup_id: string
  kind: string
  /** The node it concerns (a START that cannot be delivered fails that node's attempt). */
  ord: number
  epoch: number
  /** Its node's message key when the record's key is another (a steered START: the worker's id). */
  node_key?: string
}

const DEAD: ReadonlySet<NodeStatus> = new Set(['failed', 'cancelled', 'skipped'])
const TERMINAL: ReadonlySet<NodeStatus> = new Set(['finished', 'failed', 'cancelled', 'skipped'])
export const TERMINAL_TASK: ReadonlySet<TaskStatus> = new Set(['finished', 'failed', 'cancelled'])

/** 0 pending, 1 satisfied, 2 dead: what a parent's state means for one child's fan-in. */
function contribution(p: NodeState, streaming: boolean): 0 | 1 | 2 {
  if (p.status === 'finished') return 1
  if (DEAD.has(p.status)) return 2
  if (streaming && p.has_output) return 1
  return 0
}

export class TaskRuntime {
  readonly id: string
  readonly graph: GraphSpec
  readonly index: DependencyIndex
  readonly specs: readonly NodeSpec[]
  readonly ord: ReadonlyMap<string, number>
  readonly params: Record<string, unknown>
  readonly createdAt: number
  /** The coordinator whose createTask inserted it (TaskDoc `created_by`); null: submitted through the store. */
  readonly createdBy: string | null
  /** Submitted through the store and, when loaded, never written by a coordinator (its first take-up counts its creation). */
  readonly submitted: boolean
  nodes: NodeState[]
  status: TaskStatus
  vars: Record<string, unknown>
  cancelled: boolean
  cancelReason: string | null
  error: string | null
  result: unknown
  updatedAt: number
  finishedAt: number | null
  /** When the task must be terminal by (createTask deadlineSec); null: no deadline. */
  readonly deadlineAt: number | null
  /** Seq of the last journal entry known durable (the snapshot version when loaded). */
  v: number
  /** Seq of the last snapshot written. */
  snapshotV: number
  /** When a snapshot of it was last taken (null: none since it was loaded; its creation counts). */
  lastSnapshotAt: number | null = null
  /** Every command of the entries up to this seq was sent. */
  sentThrough: number
  /** The `sentThrough` last written to the journal. */
  sentRecorded: number
  /** Commands handed to the outbox and not sent yet. */
  unsent = 0
  /** Nodes not yet terminal (for the completion check). */
  open: number
  /** The terminal status is durable (waiters may be told). */
  doneDurable = false

  // readiness: per child, its fan-in parents (routing sources excluded) and the counters
  readonly #parents: readonly (readonly number[])[]
  /** Per parent: the children whose fan-in counts it, with whether it streams into them. */
  readonly #fanout: readonly (readonly { child: number; streaming: boolean }[])[]
  /** Per node: the nodes to re-evaluate when it changes (dependents and routing targets). */
  readonly reeval: readonly (readonly number[])[]
  readonly #sat: Int32Array
  readonly #dead: Int32Array

  /** Per node: batch_uid → the epoch and metrics counted for it (exact stats across retries). */
  readonly batches: Map<number, BatchLedger>

  // collected for the next flush
  readonly dirtyNodes = new Set<number>()
  changes: TaskChanges = {}
  /** `changes` holds a field (set by change, cleared by takeChanges). */
  #changed = false
  events: string[] = []
  commands: PendingCommand[] = []
  metricsRows: BatchMetricsWrite[] = []
  /** Coordinator functions to run once the state that started them is durable. */
  fnRuns: number[] = []
  /**
   * This flush's snapshot must be durable before its commands go out: a START carries no variables
   * (too large to inline) while the task document may hold older ones, and the worker reads them
   * from there.
   */
  forceSnapshot = false
  /** The variables changed since the last flush (the entry that records them sets `varsV`). */
  varsChanged = false
  /**
   * A snapshot of at least this version holds the current variables (0: the creation document;
   * +Infinity: not known, a task recovered with variables, until a snapshot of it is written).
   * Only a worker given a START without variables reads them from the task document.
   */
  varsV: number
  /**
   * The cancel flag changed, or a node pulled from ended without output: the task document should
   * say so soon (Python workers poll the flag; pulling consumers read the node), but no command
   * depends on it — written in the background at once, without holding the flush.
   */
  urgentSnapshot = false
  /** Serialises this task's coordinator functions (each sees the previous one's variables). */
  fnChain: Promise<void> = Promise.resolve()
  /** When each coordinator function's current attempt began to run (its `timeout_sec` counts from there). */
  readonly fnStartedAt = new Map<number, { epoch: number; at: number }>()
  /** Another coordinator wrote this task's next version first: this runtime is dead. */
  fenced = false
  /** Left this coordinator's memory (fenced, or its partition moved): nothing of it is written. */
  dropped = false
  /** Per node: the due time of its armed timer entry (+Infinity: none), kept by the engine. */
  readonly armedAt: Float64Array
  /** Per node: 1 while a lost lease is being judged (engine). */
  readonly judging: Uint8Array
  /**
   * Per node: no accept timeout before this time (an unaccepted start of a type whose workers
   * are all busy waits in their queue, as expected: looked at again a timeout later). In memory.
   */
  readonly acceptAfter: Float64Array
  /** Per node: when its unaccepted START is next looked at for steering (steer.ts); 0: from its dispatch. In memory. */
  readonly steerAt: Float64Array
  /**
   * Every entry of the batch ledger has been offered as a batch metrics row by this runtime (set
   * with the first snapshot that leaves the ledger out; entries counted later go as rows anyway).
   */
  ledgerRowsOffered = false
  /** Nodes inherited from a previous coordinator process (recovery grace applies). */
  readonly inherited = new Set<number>()
  /** Upstream node id → yielded consumers queued until it runs or ends (see `held_for`). */
  readonly held = new Map<string, Set<number>>()
  /** Nodes whose output another node pulls (input adapter `from_nodes`): their end is published. */
  readonly pulled: ReadonlySet<number>
  readonly #streamingInto: readonly ReadonlySet<number>[]
  /** What the task's graph alone implies (shared by the tasks of one graph; read-only). */
  readonly plan: GraphPlan

  constructor(doc: TaskDoc, v: number) {
    this.id = doc.id
    this.graph = doc.graph
    const plan = planOf(doc.graph)
    this.plan = plan
    this.index = plan.index
    this.specs = doc.graph.nodes
    const ord = plan.ord
    this.ord = ord
    this.#parents = plan.parents
    this.#fanout = plan.fanout
    this.reeval = plan.reeval
    this.pulled = plan.pulled
    this.#streamingInto = plan.streamingInto
    this.params = doc.params
    this.createdAt = doc.created_at_ms
    this.createdBy = typeof doc.created_by === 'string' ? doc.created_by : null
    this.submitted = this.createdBy === null && doc.status === 'queued' && v === 0
    this.nodes = this.specs.map((s) => doc.nodes[s.node_id] as NodeState)
    this.armedAt = new Float64Array(this.specs.length).fill(Number.POSITIVE_INFINITY)
    this.judging = new Uint8Array(this.specs.length)
    this.acceptAfter = new Float64Array(this.specs.length)
    this.steerAt = new Float64Array(this.specs.length)
    this.status = doc.status
    this.vars = doc.coordinator.vars
    this.cancelled = doc.coordinator.cancelled
    this.cancelReason = doc.coordinator.cancel_reason
    this.error = doc.error
    this.result = doc.result
    this.updatedAt = doc.updated_at_ms
    this.finishedAt = doc.finished_at_ms
    this.deadlineAt = typeof doc.deadline_at_ms === 'number' ? doc.deadline_at_ms : null
    this.v = v
    this.snapshotV = v
    this.varsV = v > 0 && Object.keys(this.vars).length > 0 ? Number.POSITIVE_INFINITY : 0
    this.sentThrough = (doc as { sent_through?: number }).sent_through ?? 0
    this.sentRecorded = this.sentThrough
    this.batches = batchLedgersOf(doc, ord)
    const n = this.specs.length
    this.#sat = new Int32Array(n)
    this.#dead = new Int32Array(n)
    for (let c = 0; c < n; c++) {
      for (const p of this.#parents[c] as number[]) {
        const k = contribution(this.nodes[p] as NodeState, this.#isStreaming(c, p))
        if (k === 1) this.#sat[c] = (this.#sat[c] as number) + 1
        else if (k === 2) this.#dead[c] = (this.#dead[c] as number) + 1
      }
    }
    this.open = this.nodes.filter((x) => !TERMINAL.has(x.status)).length
    this.nodes.forEach((x, i) => {
      if (x.status !== 'queued' || !x.held_for) return
      const set = this.held.get(x.held_for) ?? new Set<number>()
      set.add(i)
      this.held.set(x.held_for, set)
    })
  }

  #isStreaming(child: number, parent: number): boolean {
    return this.#streamingInto[child]?.has(parent) ?? false
  }

  spec(ord: number): NodeSpec {
    return this.specs[ord] as NodeSpec
  }

  node(ord: number): NodeState {
    return this.nodes[ord] as NodeState
  }

  isFn(ord: number): boolean {
    return this.spec(ord).type === COORDINATOR_FN_TYPE
  }

  get terminal(): boolean {
    return TERMINAL_TASK.has(this.status)
  }

  get dirty(): boolean {
    return this.dirtyNodes.size > 0 || this.events.length > 0 || this.#changed || this.commands.length > 0
  }

  /** Replaces a node's state, keeping the readiness counters and the completion count in step. */
  setNode(ord: number, next: NodeState): void {
    const prev = this.nodes[ord] as NodeState
    this.nodes[ord] = next
    this.dirtyNodes.add(ord)
    if (TERMINAL.has(prev.status) !== TERMINAL.has(next.status)) this.open += TERMINAL.has(next.status) ? -1 : 1
    if (prev.status === next.status && prev.has_output === next.has_output) return
    for (const { child, streaming } of this.#fanout[ord] as { child: number; streaming: boolean }[]) {
      const a = contribution(prev, streaming)
      const b = contribution(next, streaming)
      if (a === b) continue
      const sat = this.#sat
      const dead = this.#dead
      if (a === 1) sat[child] = (sat[child] as number) - 1
      else if (a === 2) dead[child] = (dead[child] as number) - 1
      if (b === 1) sat[child] = (sat[child] as number) + 1
      else if (b === 2) dead[child] = (dead[child] as number) + 1
    }
  }

  /** Sets task fields and records them for the journal. */
  change(c: TaskChanges): void {
    Object.assign(this.changes, c)
    for (const _ in c) {
      this.#changed = true
      break
    }
    if (c.status !== undefined) this.status = c.status
    // The entry that ends a task says why, also when that was set earlier (a failure cancels what
    // runs first): its readers (watchers, observers) see that entry alone.
    if ((c.status === 'failed' || c.status === 'cancelled') && c.error === undefined && this.error !== null) this.changes.error = this.error
    if (c.error !== undefined) this.error = c.error
    if (c.result !== undefined) this.result = c.result
    if (c.finished_at_ms !== undefined) this.finishedAt = c.finished_at_ms
    if (c.vars !== undefined) {
      this.vars = c.vars
      this.varsChanged = true
    }
    if (c.cancelled !== undefined) {
      this.cancelled = c.cancelled
      this.urgentSnapshot = true
    }
    if (c.cancel_reason !== undefined) this.cancelReason = c.cancel_reason
  }

  /** Readiness of a queued node from the counters (routing sources and the guard looked at directly). */
  readiness(ord: number): Readiness {
    const spec = this.spec(ord)
    const heldFor = (this.nodes[ord] as NodeState).held_for
    if (heldFor) {
      // A yielded consumer: not before its upstream is accepted by a worker (or ended). It had
      // started (its fan-in, routing and guard held then): it runs again whatever its parents
      // became meanwhile, as it would have gone on had it kept its slot — a streaming parent that
      // failed after its first batches leaves it the batches written, not a skip.
      const up = this.nodes[this.ord.get(heldFor) as number] as NodeState | undefined
      if (up !== undefined && !TERMINAL.has(up.status) && !(up.status === 'running' && up.accepted_at_ms !== null)) return { kind: 'wait' }
      return { kind: 'start' }
    }
    let routingWait = false
    for (const r of this.index.routedFrom.get(spec.node_id) ?? []) {
      const src = this.nodes[this.ord.get(r.source) as number] as NodeState
      if (r.on === 'success') {
        if (src.status === 'finished') continue
        if (DEAD.has(src.status)) return { kind: 'skip', reason: `routing: ${r.source} did not succeed` }
      } else {
        if (src.status === 'failed') continue
        if (src.status === 'finished' || src.status === 'skipped' || src.status === 'cancelled') {
          return { kind: 'skip', reason: `routing: ${r.source} did not fail` }
        }
      }
      routingWait = true
    }
    const total = (this.#parents[ord] as number[]).length
    const satisfied = this.#sat[ord] as number
    const dead = this.#dead[ord] as number
    const pending = total - satisfied - dead
    const need = spec.fan_in.kind === 'all' ? total : spec.fan_in.kind === 'any' ? (total === 0 ? 0 : 1) : Math.min(spec.fan_in.n, total)
    if (satisfied + pending < need) {
      return { kind: 'skip', reason: `fan_in ${spec.fan_in_raw}: ${dead} of ${total} parents can no longer run` }
    }
    if (routingWait || satisfied < need) return { kind: 'wait' }
    if (spec.when && !evaluateGuard(spec.when, this.vars)) return { kind: 'skip', reason: 'guard on task variables does not hold' }
    return { kind: 'start' }
  }

  /** The task as a document (for views, coordinator functions and snapshots; a view needs no batch ledger). */
  toDoc(ledger: LedgerInDoc = 'all'): VersionedTask {
    return taskDocOf(this, ledger)
  }

  /** Whether the task document in the store holds the current variables. */
  varsStored(): boolean {
    return !this.varsChanged && this.snapshotV >= this.varsV
  }

  /** A snapshot of version `v`, taken from this runtime, is durable. */
  snapshotStored(v: number): void {
    this.snapshotV = Math.max(this.snapshotV, v)
    if (this.varsV === Number.POSITIVE_INFINITY) this.varsV = v
  }

  /** Takes what changed since the last flush as the body of journal entry `v + 1`. */
  takeChanges(): { nodes: NodeState[]; task: TaskChanges | undefined; events: string[]; commands: PendingCommand[]; metrics: BatchMetricsWrite[]; fnRuns: number[]; force: boolean; urgent: boolean; varsChanged: boolean } {
    const nodes: NodeState[] = []
    if (this.dirtyNodes.size === 1) {
      for (const o of this.dirtyNodes) nodes.push(this.nodes[o] as NodeState)
    } else if (this.dirtyNodes.size <= 8) {
      // In node order: a few ordinals placed by insertion (Array.prototype.sort copies them).
      const ords: number[] = []
      for (const o of this.dirtyNodes) {
        let i = ords.length
        ords.push(o)
        while (i > 0 && (ords[i - 1] as number) > o) {
          ords[i] = ords[i - 1] as number
          i--
        }
        ords[i] = o
      }
      for (const o of ords) nodes.push(this.nodes[o] as NodeState)
    } else {
      for (const o of [...this.dirtyNodes].sort((a, b) => a - b)) nodes.push(this.nodes[o] as NodeState)
    }
    // A list with nothing in it is not handed out (the shared empty one is): it stays, for the next.
    const out = {
      nodes,
      task: this.#changed ? this.changes : undefined,
      events: this.events.length === 0 ? NONE : this.events,
      commands: this.commands.length === 0 ? NONE : this.commands,
      metrics: this.metricsRows.length === 0 ? NONE : this.metricsRows,
      fnRuns: this.fnRuns.length === 0 ? NONE : this.fnRuns,
      force: this.forceSnapshot,
      urgent: this.urgentSnapshot,
      varsChanged: this.varsChanged,
    }
    this.dirtyNodes.clear()
    if (this.#changed) {
      this.changes = {}
      this.#changed = false
    }
    if (out.events !== NONE) this.events = []
    if (out.commands !== NONE) this.commands = []
    if (out.metrics !== NONE) this.metricsRows = []
    if (out.fnRuns !== NONE) this.fnRuns = []
    this.forceSnapshot = false
    this.urgentSnapshot = false
    this.varsChanged = false
    return out
  }
}

/** The empty list takeChanges hands out (frozen: nobody adds to it). */
const NONE: never[] = Object.freeze([]) as never[]

export function journalCommands(cmds: readonly PendingCommand[]): JournalCommand[] {
  return cmds.map((c) => ({ topic: c.topic, key: c.key, dedup_id: c.dedup_id, kind: c.kind }))
}
