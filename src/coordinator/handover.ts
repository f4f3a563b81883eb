/**
 * Hand-over of tasks between coordinators (ownership.ts decides which partitions are ours).
 *
 * Acquire: the active tasks of the gained partitions are loaded from the store (snapshot +
 * journal) and **claimed**: the first entry this coordinator writes for a task it loaded is an
 * `owner` entry, written before anything else it decides for the task. Entries of a task are
 * numbered and unique per number, so once the claim is written no other coordinator that loaded
 * the task earlier can write another entry: its next number is taken, its write is refused, and it
 * drops the task (fencing). Then inherited running nodes get the recovery treatment (workers are
 * asked whether they still hold them, the status topics are replayed, then the complete artifact
 * is checked) and scheduling resumes.
 *
 * Release: what was applied for the lost partitions' tasks is written (one flush), then they
 * leave memory; their events are sent on to the new owner from then on.
 *
 * A claim that is refused (the previous owner wrote one more entry in between) is retried from a
 * fresh load while the partition is still ours.
 */
import { errorMessage } from '../errors.ts'
import { graphJson } from '../graph/to-json.ts'
import { COORDINATOR_FN_TYPE } from '../graph/types.ts'
import type { Clock } from '../ports/clock.ts'
import type { AfterFlush } from './after-flush.ts'
import { controlRequest } from './control.ts'
import type { Ownership } from './ownership.ts'
import type { Logger } from '../log.ts'
import type { VersionedTask } from '../model/journal.ts'
import type { TaskDoc } from '../model/state.ts'
import type { Subscription } from '../ports/bus.ts'
import type { BatchMetricsWrite, Store } from '../ports/store.ts'
import type { Engine } from './engine.ts'
import { type Limits, acceptedHolder } from './limits.ts'
import type { RecoveryDeps } from './recovery.ts'
import { claim, sharedStoreCheck } from './claim.ts'
import { acquire, recoveryGate, release, resumeLoaded } from './acquire.ts'
import { TERMINAL_TASK, type TaskRuntime } from './runtime.ts'
import { type BuildTaskOptions, buildTask } from './submit.ts'

/** Largest task (JSON characters) an adopt request carries inline; larger ones are read by the owner. */
const MAX_INLINE_TASK = 256 * 1024

export interface HandoverDeps {
  store: Store
  engine: Engine
  limits: Limits
  log: Logger
  /** This coordinator's writer id (named in claim entries). */
  writer: string
  partitionOf(taskId: string): number
  /** Whether the partition of the task is still ours. */
  owns(taskId: string): boolean
  /** Marks a runtime for the next flush. */
  mark(rt: TaskRuntime): void
  barrier(): Promise<void>
  ensureStatus(types: Iterable<string>): Promise<void>
  subscriptions(): Subscription[]
  recovery(): RecoveryDeps
  /** The recovery window of a (re)start is over (no grace for inherited nodes any more). */
  stop: AbortSignal
  /** Drops a task from memory (fenced or released). */
  drop(rt: TaskRuntime): void
  /** A task active by its snapshot but ended by its journal: its snapshot is to be rewritten. */
  staleSnapshot(doc: VersionedTask): void
  /** A task submitted through the store, taken up for the first time: its creation (observability). */
  submitted?(rt: TaskRuntime): void
  /** A task loaded from the store into memory (observability). */
  claimed?(rt: TaskRuntime): void
  /** Batch metrics rows to write in the background (those a loaded task's counts may lack). */
  offerRows?(rows: BatchMetricsWrite[]): void
}

export interface TasksDeps extends Pick<HandoverDeps, 'submitted' | 'claimed' | 'offerRows'> {
  store: Store
  engine: Engine
  limits: Limits
  log: Logger
  clock: Clock
  writer: string
  ownership: Ownership
  after: AfterFlush
  mark(rt: TaskRuntime): void
  barrier(): Promise<void>
  ensureStatus(types: Iterable<string>): Promise<void>
  subscriptions(): Subscription[]
  recovery(): RecoveryDeps
  started(): boolean
  /** Aborted when the coordinator stops (its recovery waits end). */
  stopSignal(): AbortSignal
  /** A task left this coordinator's memory (its watchers follow it in the store). */
  handedOver?(rt: TaskRuntime): void
}

/** The tasks this coordinator holds, as ownership moves: adopt, hand over, drop when fenced. */
export class OwnedTasks {
  readonly #d: TasksDeps
  /** Tasks claimed and tasks fenced (diagnostics, metrics). */
  claims = 0
  fencedCount = 0
  /** Looks for a task handed over inline in this store, once a minute (claim.ts). */
  readonly #checkSharedStore: (taskId: string) => Promise<void>

  constructor(d: TasksDeps) {
    this.#d = d
    this.#checkSharedStore = sharedStoreCheck(d)
  }

  #deps(): HandoverDeps {
    const d = this.#d
    return {
      store: d.store,
      engine: d.engine,
      limits: d.limits,
      log: d.log,
      writer: d.writer,
      partitionOf: (id) => d.ownership.partitionOf(id),
      owns: (id) => d.ownership.owns(id),
      mark: (rt) => d.mark(rt),
      barrier: () => d.barrier(),
      ensureStatus: (types) => d.ensureStatus(types),
      subscriptions: () => d.subscriptions(),
      recovery: () => d.recovery(),
      stop: d.stopSignal(),
      drop: (rt) => this.drop(rt),
      staleSnapshot: (doc) => d.after.repairSnapshot(doc),
      ...(d.submitted === undefined ? {} : { submitted: d.submitted }),
      ...(d.claimed === undefined ? {} : { claimed: d.claimed }),
      ...(d.offerRows === undefined ? {} : { offerRows: d.offerRows }),
    }
  }

  async acquire(partitions: ReadonlySet<number>): Promise<TaskRuntime[]> {
    const loaded = await acquire(this.#deps(), partitions, this.#d.ownership.generation)
    this.claims += loaded.length
    return loaded
  }

  release(partitions: ReadonlySet<number>): Promise<number> {
    return release(this.#deps(), partitions)
  }

  /**
   * Sends a request to the owner of a task, through the owners' topic. An `adopt` of a task just
   * created may carry the task as written (version 0), so the owner need not read it back.
   */
  async request(op: 'adopt' | 'cancel', taskId: string, reason = '', task?: TaskDoc): Promise<void> {
    const req: Record<string, unknown> = { ...controlRequest(op, taskId, this.#d.clock.now(), reason) }
    if (task !== undefined) {
      const doc = JSON.stringify(task)
      if (doc.length <= MAX_INLINE_TASK) req['task'] = task
    }
    await this.#d.ownership.forward([{ taskId, value: JSON.stringify(req) }])
  }

  /**
   * The task leaves memory unwritten: its running nodes no longer count against the limits, and
   * the slots they free go to the nodes of the remaining tasks that wait for capacity (nothing
   * else would wake them when none of this coordinator's own nodes ends).
   */
  drop(rt: TaskRuntime): void {
    const d = this.#d
    // Changes applied since its last write are lost with it: the status batches behind them are
    // delivered again (as for a fenced one) and reach whoever holds the task next.
    if (rt.dirty) rt.fenced = true
    let freed = false
    if (d.engine.tasks.get(rt.id) === rt) {
      rt.nodes.forEach((n, i) => {
        if ((n.status === 'running' || n.status === 'cancelling') && !rt.isFn(i)) {
          d.limits.give(rt.spec(i).type)
          d.limits.accepting(acceptedHolder(n, true), null)
          freed = true
        }
      })
    }
    d.after.drop(rt)
    d.handedOver?.(rt)
    // After the current step: a drop can happen inside a flush's pass over the dirty tasks, and
    // a node dispatched then in a task that pass already visited would miss the flush.
    if (freed) queueMicrotask(() => d.engine.drainWaiters())
  }

  /**
   * Another coordinator wrote the task's next version, or its partition is no longer ours: the
   * runtime is dead. The owner gets it: loaded again here when the partition is still ours (the
   * previous owner's last write came in between), else it is asked to adopt it.
   */
  fenced(rt: TaskRuntime): void {
    const d = this.#d
    this.fencedCount++
    rt.fenced = true
    this.drop(rt)
    if (!d.started()) return
    if (d.ownership.owns(rt.id)) {
      // Owned, yet another coordinator wrote it: a hand-over race, or this one is the stale owner.
      d.ownership.suspect(rt.id)
      this.#readopt(rt.id, 0)
    } else {
      void this.request('adopt', rt.id).catch((err: unknown) => d.log.warn('coordinator.handoff_failed', { task_id: rt.id, error: String(err) }))
    }
  }

  /**
   * Loads a fenced task of ours again, soon (the other writer's entry first); a failed load is
   * tried again (waits doubling to 5 s) while the task is ours and not held: nothing else would
   * take up a task that waits on a timer (a retry's backoff) and hears no event.
   */
  #readopt(taskId: string, attempt: number): void {
    const d = this.#d
    const t = setTimeout(() => {
      if (d.stopSignal().aborted || !d.ownership.owns(taskId) || d.engine.tasks.has(taskId)) return
      this.adopt(taskId).catch((err: unknown) => {
        d.log.warn('coordinator.readopt_failed', { task_id: taskId, attempt: attempt + 1, error: String(err) })
        this.#readopt(taskId, attempt + 1)
      })
    }, Math.min(20 * 2 ** attempt, 5_000))
    t.unref?.()
  }

  /**
   * A task this process does not hold: loaded and claimed if it is ours and active in the store
   * (created elsewhere). `given`: the task as its creator wrote it (version 0), instead of a read;
   * should the task have moved on since, the claim is refused and it is read from the store.
   * `loaded`: called with the runtime as it is claimed, before its scheduling resumes (a cancel
   * that made it load the task is recorded first, so none of its nodes starts).
   */
  async adopt(taskId: string, given?: TaskDoc, loaded?: (rt: TaskRuntime) => void): Promise<TaskRuntime | null> {
    const d = this.#d
    if (!d.started() || !d.ownership.owns(taskId)) return null
    await d.ownership.waitConfirmed(taskId)
    if (given !== undefined && d.after.isRecentlyDone(taskId)) return null
    if (given !== undefined) await this.#checkSharedStore(taskId)
    const doc = given !== undefined && given.id === taskId ? { ...given, v: 0 } : await d.store.getTask(taskId)
    if (doc === null) return null
    const held = d.engine.tasks.get(taskId)
    if (held !== undefined) return held
    if (!d.ownership.owns(taskId)) return null
    if (TERMINAL_TASK.has(doc.status)) d.after.noteEnded(taskId)
    // Recovered as at a start (a cancel that made this coordinator load the task during its own
    // start must not overtake the events queued while no coordinator ran).
    const gate = recoveryGate()
    const rt = await claim(this.#deps(), doc, d.ownership.generation, gate.held)
    if (rt === null) {
      gate.until(null)
      return d.engine.tasks.get(taskId) ?? null
    }
    this.claims++
    loaded?.(rt)
    try {
      await d.ensureStatus(rt.specs.filter((s) => s.type !== COORDINATOR_FN_TYPE).map((s) => s.type))
    } catch (err) {
      gate.until(null)
      throw err
    }
    // A task submitted through the store (`flowkit submit`, `flowkit ui`) and taken up here for the
    // first time (counted as created by the metrics). One created by a coordinator was counted
    // there, handed over inline or not.
    const submitted = given === undefined && rt.submitted
    if (submitted) d.submitted?.(rt)
    d.log.info('task.adopted', { task_id: taskId, status: rt.status, submitted })
    gate.until(resumeLoaded(this.#deps(), [rt]))
    return rt
  }
}

/** The task an adopt request carries inline, if it is a fresh queued task of that id (a first look). */
export function inlineTask(t: unknown, taskId: string): TaskDoc | undefined {
  if (t === null || typeof t !== 'object') return undefined
  const doc = t as TaskDoc
  if (doc.id !== taskId || typeof doc.nodes !== 'object' || doc.nodes === null || typeof doc.graph !== 'object' || doc.graph === null || doc.status !== 'queued') return undefined
  if (typeof doc.created_at_ms !== 'number' || !Number.isFinite(doc.created_at_ms)) return undefined
  return doc
}

/**
 * The task an adopt request carries inline, checked as a submission is and rebuilt from what
 * passed: its graph (back in wire form) parsed again with this coordinator's functions and limits,
 * its params and deadline checked. A record on the owners' topic thus never starts a task whose
 * graph was not valid here. Undefined when the request carries no fresh task of that id; an error
 * text when its task is refused (the owner then reads the store, which holds the task when it
 * really was submitted).
 */
export function checkedInlineTask(t: unknown, taskId: string, options: BuildTaskOptions): { doc: TaskDoc } | { error: string } | undefined {
  const doc = inlineTask(t, taskId)
  if (doc === undefined) return undefined
  try {
    const deadline = doc.deadline_at_ms
    // The deadline is checked as a duration (at least the 1 ms a stored one can say) and kept as stored.
    const timed = typeof deadline === 'number'
    const input = { id: taskId, graph: graphJson(doc.graph), params: doc.params, ...(timed ? { deadlineSec: Math.max(0.001, (deadline - doc.created_at_ms) / 1000) } : {}) }
    const built = buildTask(input, options, doc.created_at_ms)
    if (timed) built.deadline_at_ms = deadline
    if (typeof doc.created_by === 'string') built.created_by = doc.created_by.slice(0, 200)
    return { doc: built }
  } catch (err) {
    return { error: errorMessage(err) }
  }
}
