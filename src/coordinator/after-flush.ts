/**
 * What follows a durable flush, per task: its commands handed to the outbox (the task's sent mark
 * moves on once they are out; a START nobody can receive fails its attempt), its coordinator
 * functions started, its snapshot queued, and, for a finished task, the waiters woken, the final
 * state logged, and the task dropped from memory once its snapshot is written (a bounded number
 * of finished tasks wait for that in memory).
 */
import { EventEmitter } from 'node:events'
import type { Logger } from '../log.ts'
import type { VersionedTask } from '../model/journal.ts'
import type { Clock } from '../ports/clock.ts'
import type { Engine } from './engine.ts'
import type { Flusher } from './flush.ts'
import type { FnRunner } from './fn-runner.ts'
import type { OutboxDispatcher, OutgoingMessage } from './outbox.ts'
import type { PendingCommand, TaskRuntime } from './runtime.ts'
import type { SnapshotWriter } from './snapshots.ts'
import { RecentSet } from '../util/recent.ts'

const RECENT_DONE_MAX = 50_000
/** Finished tasks kept in memory while their snapshot waits (they are served from there). */
const DONE_IN_MEMORY = 10_000

export interface AfterFlushDeps {
  engine: Engine
  outbox: OutboxDispatcher
  fns: FnRunner
  clock: Clock
  log: Logger
  snapshotIntervalMs: number
  snapshots: () => SnapshotWriter
  flusher: () => Flusher
}

export class AfterFlush {
  readonly #d: AfterFlushDeps
  readonly #events = new EventEmitter()
  readonly #recentDone = new RecentSet<string>(RECENT_DONE_MAX)
  /** Finished tasks still in memory, waiting for their snapshot (oldest first). */
  #done = new Set<TaskRuntime>()
  /** Set by a simulated crash: nothing more leaves the process. */
  dead = false

  constructor(deps: AfterFlushDeps) {
    this.#d = deps
    this.#events.setMaxListeners(0)
  }

  /** Whether a snapshot of `rt` should be taken with its next entry (besides forced ones). */
  wantsSnapshot(rt: TaskRuntime, now: number = this.#d.clock.now()): boolean {
    return rt.terminal || now - (rt.lastSnapshotAt ?? rt.createdAt) >= this.#d.snapshotIntervalMs
  }

  created(rt: TaskRuntime): void {
    rt.lastSnapshotAt = this.#d.clock.now()
  }

  /** A task read from the store that had ended (late events for it are answered as for one that ended here). */
  noteEnded(taskId: string): void {
    this.#recentDone.add(taskId)
  }

  isRecentlyDone(taskId: string): boolean {
    return this.#recentDone.has(taskId)
  }

  /** Calls `fn` when the task's terminal state is durable (or returns a function that stops listening). */
  onTerminal(taskId: string, fn: () => void): () => void {
    this.#events.on(`terminal:${taskId}`, fn)
    return () => this.#events.off(`terminal:${taskId}`, fn)
  }

  reset(): void {
    this.#done.clear()
  }

  durable(rt: TaskRuntime, commands: PendingCommand[], fnRuns: number[], snapshot: VersionedTask | null, urgent = false): void {
    if (this.dead) return
    const d = this.#d
    d.snapshots().busy()
    if (commands.length > 0) {
      rt.unsent += commands.length
      const upTo = rt.v
      const done = (): void => {
        rt.unsent--
        if (rt.unsent === 0) rt.sentThrough = Math.max(rt.sentThrough, upTo)
      }
      d.outbox.send(
        commands.map((c) => {
          // A command with its object (a START) goes with it, its text made only if needed.
          const m: OutgoingMessage = c.decoded !== undefined
            ? { topic: c.topic, key: c.key, decoded: c.decoded, dedup_id: c.dedup_id, task_id: rt.id, epoch: c.epoch, onDone: done }
            : { topic: c.topic, key: c.key, value: c.value, dedup_id: c.dedup_id, task_id: rt.id, epoch: c.epoch, onDone: done }
          if (c.node_key !== undefined) m.node_key = c.node_key
          if (c.kind === 'TASK_START') m.onDead = (error: string) => this.startUndeliverable(rt, c.ord, c.epoch, error)
          return m
        }),
      )
    } else if (rt.unsent === 0) rt.sentThrough = Math.max(rt.sentThrough, rt.v)
    for (const ord of fnRuns) d.fns.run(rt, ord)
    if (snapshot !== null) {
      rt.lastSnapshotAt = d.clock.now()
      d.snapshots().offer(snapshot, urgent)
    }
    if (rt.terminal) {
      if (!rt.doneDurable) {
        // Logged once the terminal state is durable (what waiters and observers may rely on).
        d.log.info(rt.status === 'finished' ? 'task.finished' : rt.status === 'failed' ? 'task.failed' : 'task.cancelled', { task_id: rt.id, status: rt.status })
        this.#done.add(rt)
        for (const oldest of this.#done) {
          if (this.#done.size <= DONE_IN_MEMORY) break
          this.#evict(oldest)
          this.#done.delete(oldest)
        }
      }
      rt.doneDurable = true
      this.#events.emit(`terminal:${rt.id}`)
      if (rt.snapshotV >= rt.v) this.#evict(rt)
    }
  }

  /**
   * A stored task that ended in its journal while its snapshot still says it is active (a stop ran
   * out of time, a snapshot write failed): its snapshot is rewritten in the background, so it no
   * longer looks active to the next start, the sweep, or a listing by status.
   */
  repairSnapshot(doc: VersionedTask): void {
    this.#d.log.info('task.snapshot_repaired', { task_id: doc.id, status: doc.status, v: doc.v })
    this.#d.snapshots().offer(doc)
  }

  snapshotWritten(taskId: string, v: number): void {
    const rt = this.#d.engine.tasks.get(taskId)
    if (rt === undefined) return
    rt.snapshotStored(v)
    if (rt.doneDurable && !rt.dirty && rt.snapshotV >= rt.v) this.#evict(rt)
  }

  /** Another writer holds the task now: it leaves memory without a trace. */
  drop(rt: TaskRuntime): void {
    rt.dropped = true
    this.#done.delete(rt)
    if (this.#d.engine.tasks.get(rt.id) === rt) this.#d.engine.tasks.delete(rt.id)
    this.#d.flusher().forget(rt)
  }

  /** A finished task whose final state is in the store leaves memory. */
  #evict(rt: TaskRuntime): void {
    this.#done.delete(rt)
    if (this.#d.engine.tasks.get(rt.id) !== rt) return
    this.#d.engine.tasks.delete(rt.id)
    this.#recentDone.add(rt.id)
  }

  /** A START of this attempt could not be delivered (or written): the attempt fails, transiently. */
  startUndeliverable(rt: TaskRuntime, ord: number, epoch: number, error: string): void {
    if (this.#d.engine.tasks.get(rt.id) !== rt || rt.node(ord).attempt_epoch !== epoch) return
    this.#d.engine.apply(rt, ord, { kind: 'failed', reasonCode: 'start_undeliverable', error, permanent: false })
  }
}
