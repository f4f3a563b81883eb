/**
 * Recovery after a (re)start, and adoption of tasks found in the store. Active tasks are loaded
 * once (snapshot + journal) with the metrics rows their open nodes need for exact sums; inherited
 * running nodes are left alone during the discovery window (workers are asked whether they still
 * hold them, and the status topics are replayed from the committed offsets); only then is a node
 * finished from its complete artifact or declared lost. Effects the state implies but that may
 * never have gone out (a START nobody accepted, a CANCEL of a cancelling node, a coordinator
 * function that was running) are issued again; they are idempotent.
 */
import type { CoordinatorConfig } from '../config.ts'
import { errorMessage } from '../errors.ts'
import type { Logger } from '../log.ts'
import type { VersionedTask } from '../model/journal.ts'
import type { TaskDoc } from '../model/state.ts'
import type { Subscription } from '../ports/bus.ts'
import type { Clock } from '../ports/clock.ts'
import type { ArtifactDoc, Store } from '../ports/store.ts'
import { type CancelDeps, applyLater, cancelPending } from './cancel-request.ts'
import { waitUntil } from '../util/wait-until.ts'
import type { Discovery } from './discovery.ts'
import { recoveredComplete } from './recovered.ts'
import type { Engine } from './engine.ts'
import type { FnRunner } from './fn-runner.ts'
import { type Limits, acceptedHolder } from './limits.ts'
import { TaskRuntime } from './runtime.ts'
import { ledgerFromRows } from './runtime-doc.ts'

export interface RecoveryDeps {
  config: CoordinatorConfig
  store: Store
  clock: Clock
  log: Logger
  engine: Engine
  fns: FnRunner
  discovery: Discovery
  barrier: () => Promise<void>
  /** Cancels requested and not applied yet are applied after the recovery (cancel-request.ts). */
  cancels?: CancelDeps
  /** Resolves once the records now queued in this coordinator's owners' partitions are handled (forwarded reports). */
  owners?: () => Promise<void>
  /**
   * How long to wait for a node's last reports before finishing it from its complete artifact
   * (0: not at all): other coordinators read part of the status topic of `type` (on a bus with
   * sessions), and the reports may still be on their way through one of them (expiry.ts,
   * handoverGraceMs).
   */
  handoverWaitMs?: (type: string) => number
}

/** Builds a runtime for a stored task, with its batch metrics and its running nodes counted. */
/**
 * `recovering`: when the task has inherited running nodes, what a cancel waits for (RECOVERING),
 * set before the runtime can be found in memory.
 */
export async function loadRuntime(store: Store, engine: Engine, limits: Limits, doc: TaskDoc & { v?: number }, recovering?: Promise<void>): Promise<TaskRuntime> {
  // The batch ledger (what each node's stats count) comes with the task: snapshot + journal; a
  // snapshot that left it out (a large one) has it in the batch metrics rows, every row up to its
  // version written before it (rows are only written for durable entries: none is ahead of the
  // journal), with what the journal entries after it counted over them.
  const v = doc.v ?? 0
  const stored = doc as VersionedTask
  const loaded = stored.batches_in_rows === true ? { ...doc, sent_through: stored.sent_through, batches: ledgerFromRows(await store.listBatchMetrics(doc.id), stored.batches) } : doc
  const rt = new TaskRuntime(loaded, v)
  rt.nodes.forEach((n, i) => {
    if ((n.status === 'running' || n.status === 'cancelling') && !rt.isFn(i)) {
      limits.take(rt.spec(i).type)
      limits.accepting(null, acceptedHolder(n, true))
      rt.inherited.add(i)
    }
  })
  if (recovering !== undefined && rt.inherited.size > 0) RECOVERING.set(rt, recovering)
  // Decided now, from what was loaded: the claim's own entry (written before resume when joining
  // the status topics takes a while, as on Kafka) records everything up to it as sent.
  if (rt.sentThrough < rt.v) UNSENT.add(rt)
  engine.tasks.set(rt.id, rt)
  return rt
}

/** Loaded runtimes whose last entries' commands may not have gone out (resume issues them again). */
const UNSENT = new WeakSet<TaskRuntime>()

/** Issues again what the state of a loaded task implies, and resumes its scheduling. */
export function resume(rt: TaskRuntime, d: RecoveryDeps): void {
  rt.nodes.forEach((n, i) => {
    if (rt.isFn(i)) {
      if (n.status === 'running' || n.status === 'cancelling') d.fns.run(rt, i)
      return
    }
    if (n.status === 'running') d.discovery.ask(rt, i)
  })
  if (rt.status === 'cancelling') d.engine.cancel(rt, rt.cancelReason ?? 'cancelled', rt.error !== null ? 'failed' : 'cancelled')
  else d.engine.startTask(rt)
  // A cancel requested (written) but not applied before the task came here: applied once the
  // queued events are in (nothing of the task is dispatched meanwhile).
  if (d.cancels !== undefined && cancelPending(rt)) void applyLater(d.cancels, rt)
  // When commands of the last entries may not have gone out (a crash between the write and the
  // send), those the state implies are issued again (idempotent for their receivers): the cancel
  // of a cancelling node, the start of a node no worker accepted yet.
  const unsent = UNSENT.delete(rt)
  const now = d.clock.now()
  rt.nodes.forEach((n, i) => {
    if (unsent) d.engine.reissue(rt, i)
    if (n.status === 'running' && n.accepted_at_ms === null && !rt.isFn(i)) {
      // A START no worker has accepted yet is judged (resent, steered) only once this coordinator
      // has watched the workers for as long as a first one would wait: whether they are busy (a
      // START queued behind them is not lost) is known from what it sees from now on, and the
      // schedule from the dispatch may be long past (each restart would resend every queued START).
      rt.acceptAfter[i] = Math.max(rt.acceptAfter[i] as number, now + d.config.acceptTimeoutSec * 1000)
      rt.steerAt[i] = Math.max(rt.steerAt[i] as number, now + d.config.steerAfterSec * 1000)
    }
    d.engine.armNode(rt, i)
  })
}

/**
 * Tasks whose inherited running nodes are still being recovered, with the promise that resolves
 * when that is over: a cancel waits for it, so that the events queued while no coordinator ran (a
 * node that finished meanwhile) are applied before the cancel decides what is left to stop.
 */
export const RECOVERING = new WeakMap<TaskRuntime, Promise<void>>()

/** Resolves once `rt`'s recovery (if any) is over. */
export function recovered(rt: TaskRuntime): Promise<void> {
  return RECOVERING.get(rt) ?? Promise.resolve()
}

/** Inherited nodes whose worker said, during the recovery, that it still runs them: ord → attempt epoch. */
const HEARD_RUNNING = new WeakMap<TaskRuntime, Map<number, number>>()

/** A worker answered the discovery question of an inherited node: it still runs this attempt. */
export function heardRunning(rt: TaskRuntime, ord: number, epoch: number): void {
  if (!rt.inherited.has(ord)) return
  let heard = HEARD_RUNNING.get(rt)
  if (heard === undefined) {
    heard = new Map()
    HEARD_RUNNING.set(rt, heard)
  }
  heard.set(ord, epoch)
}

/**
 * Whether no end of an inherited node can still be waiting in the status topics: each one is no
 * longer running (its queued reports were applied), or its worker said it still runs that attempt
 * (an attempt still running has sent no end; its batch reports are drained as any running node's).
 */
export function inheritedSettled(rt: TaskRuntime): boolean {
  const heard = HEARD_RUNNING.get(rt)
  for (const ord of rt.inherited) {
    const n = rt.node(ord)
    if (n.status === 'running' && heard?.get(ord) !== n.attempt_epoch) return false
  }
  return true
}

/**
 * Resolves once what a cancel must not overtake of `rt`'s recovery is behind it: the recovery's
 * end, or earlier, every inherited node settled (inheritedSettled). A cancel of a task that just
 * moved here (a hand-over, a restart) is applied as soon as its workers answered, not after the
 * discovery window and the hand-over waits (it took 14 to 30 s on Kafka).
 */
export async function settledForCancel(rt: TaskRuntime): Promise<void> {
  const recovering = RECOVERING.get(rt)
  if (recovering === undefined) return
  let over = false
  const done = recovering.finally(() => {
    over = true
  })
  await Promise.race([done, waitUntil(() => over || rt.dropped || inheritedSettled(rt), 24 * 3600_000)])
}

/**
 * After the discovery window AND the replay of the status topics (so queued events are applied
 * first): inherited running nodes whose complete artifact exists are finished (when other
 * coordinators read part of their status topic, once their reports came or `handoverWaitMs`
 * passed); the others get their lease timers back.
 */
export async function finishRecovery(loaded: readonly TaskRuntime[], d: RecoveryDeps, subscriptions: readonly Subscription[], stop: AbortSignal): Promise<void> {
  const windowMs = d.config.discoveryWindowSec * 1000
  const abort = new AbortController()
  stop.addEventListener('abort', () => abort.abort(), { once: true })
  // The replay is waited for at most 4 windows (a bus that cannot tell must not stall recovery).
  let cap: ReturnType<typeof setTimeout> | undefined
  const capped = new Promise((r) => {
    cap = setTimeout(r, Math.max(windowMs, 1000) * 4)
  })
  try {
    await Promise.all([d.clock.sleep(windowMs, abort.signal), Promise.race([Promise.all(subscriptions.map((s) => s.caughtUp())), capped])])
    // With several coordinators, reports read by another one reach this one through the owners'
    // topic: those forwarded until now are applied too (same cap).
    if (d.owners !== undefined) await Promise.race([d.owners(), capped])
    if (abort.signal.aborted) return
    await d.barrier()
  } catch {
    return
  } finally {
    clearTimeout(cap)
  }
  // Complete by their artifact, still running: finished, after waiting for their reports when
  // other coordinators may hold some (what a cancel waits for: it must not overtake them).
  const complete: Array<{ rt: TaskRuntime; ord: number; epoch: number; artifact: ArtifactDoc }> = []
  let waitMs = 0
  for (const rt of loaded) {
    if (d.engine.tasks.get(rt.id) !== rt) continue
    for (const ord of rt.inherited) {
      const n = rt.node(ord)
      if (n.status !== 'running') continue
      try {
        const art = await d.store.getArtifact(rt.id, n.node_id, null)
        if (art?.status === 'complete' && art.attempt_epoch >= n.attempt_epoch && rt.node(ord).attempt_epoch === n.attempt_epoch) {
          complete.push({ rt, ord, epoch: n.attempt_epoch, artifact: art })
          waitMs = Math.max(waitMs, d.handoverWaitMs?.(rt.spec(ord).type) ?? 0)
        }
      } catch (err) {
        d.log.warn('coordinator.recovery_read_failed', { task_id: rt.id, node_id: n.node_id, error: errorMessage(err) })
      }
    }
  }
  const open = (c: (typeof complete)[number]): boolean => d.engine.tasks.get(c.rt.id) === c.rt && c.rt.node(c.ord).status === 'running' && c.rt.node(c.ord).attempt_epoch === c.epoch
  if (waitMs > 0 && complete.length > 0) {
    d.log.info('coordinator.recovery_waits_handover', { nodes: complete.length, wait_ms: waitMs })
    await waitUntil(() => abort.signal.aborted || !complete.some(open), waitMs)
    if (abort.signal.aborted) return
  }
  for (const c of complete) if (open(c)) d.engine.apply(c.rt, c.ord, recoveredComplete(c.rt, c.ord, c.artifact))
  // Over unless another recovery (a task adopted since) extended it.
  if (d.engine.graceEnd <= d.clock.now()) d.engine.graceEnd = 0
  for (const rt of loaded) {
    if (d.engine.tasks.get(rt.id) !== rt) continue
    for (const ord of rt.inherited) d.engine.armNode(rt, ord)
    rt.inherited.clear()
  }
}
