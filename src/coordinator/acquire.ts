/**
 * The partition side of the hand-over (handover.ts): acquire loads, claims and resumes the active
 * tasks of gained partitions; release writes what was applied for the lost ones' tasks and drops
 * them from memory.
 */
import { COORDINATOR_FN_TYPE } from '../graph/types.ts'
import type { TaskStatus } from '../model/state.ts'
import type { HandoverDeps } from './handover.ts'
import { RECOVERING, finishRecovery, resume } from './recovery.ts'
import { claim } from './claim.ts'
import { TERMINAL_TASK, type TaskRuntime } from './runtime.ts'

const ACTIVE: readonly TaskStatus[] = ['queued', 'running', 'cancelling']

/** Reads tasks listed as active by a stale snapshot and has their snapshots rewritten (claim). */
async function repairStale(d: HandoverDeps, ids: readonly string[], generation: number): Promise<void> {
  for (const id of ids) {
    if (d.stop.aborted) return
    if (!d.owns(id) || d.engine.tasks.has(id)) continue
    try {
      const doc = await d.store.getTask(id)
      if (doc !== null && TERMINAL_TASK.has(doc.status)) claim(d, doc, generation)
    } catch (err) {
      d.log.warn('coordinator.snapshot_repair_failed', { task_id: id, error: String(err) })
      return
    }
  }
}

/** Loads, claims and resumes the active tasks of `partitions`. Throws on store errors (retried by the caller). */
export async function acquire(d: HandoverDeps, partitions: ReadonlySet<number>, generation: number): Promise<TaskRuntime[]> {
  const ids = (await d.store.listTaskIds(ACTIVE)).filter((id) => partitions.has(d.partitionOf(id)) && !d.engine.tasks.has(id))
  const loaded: TaskRuntime[] = []
  const gate = recoveryGate()
  try {
    await load(d, ids, generation, loaded, gate.held)
    if (loaded.length === 0) return loaded
    const types = new Set<string>()
    for (const rt of loaded) for (const s of rt.specs) if (s.type !== COORDINATOR_FN_TYPE) types.add(s.type)
    await d.ensureStatus(types)
    // (Submitted through the store and never written by a coordinator, as loaded: counted as created too.)
    const submitted = loaded.filter((rt) => rt.submitted)
    for (const rt of submitted) d.submitted?.(rt)
    d.log.info('coordinator.acquired', { partitions: [...partitions], tasks: loaded.length, submitted: submitted.length, generation })
    gate.until(resumeLoaded(d, loaded))
    return loaded
  } catch (err) {
    // The tasks loaded before the error leave memory unresumed, once their claim entries are
    // written (or given up): the caller's retry lists them again (it skips what is in memory, so
    // kept here they would never be resumed: no timers, no commands, their nodes stuck).
    // (Dropped with nothing unwritten: an event applied to one meanwhile is written first.)
    const held = (): TaskRuntime[] => loaded.filter((rt) => d.engine.tasks.get(rt.id) === rt)
    for (let i = 0; i < 5; i++) {
      await d.barrier().catch(() => undefined)
      if (!held().some((rt) => rt.dirty)) break
    }
    for (const rt of held()) d.drop(rt)
    gate.until(null)
    throw err
  }
}

/**
 * A task's runtime is in memory from its load on, its subscriptions joined a little later: a
 * cancel in between must already wait for its recovery. `held` is what a runtime with inherited
 * nodes waits on from its load (loadRuntime); `until` ends it with the recovery (or at once).
 */
export function recoveryGate(): { held: Promise<void>; until: (done: Promise<void> | null) => void } {
  let open!: () => void
  const held = new Promise<void>((r) => {
    open = r
  })
  return {
    held,
    until: (done) => {
      if (done === null) open()
      else void done.finally(open)
    },
  }
}

/** Reads and claims the tasks `ids` (those still ours), into `loaded`. */
async function load(d: HandoverDeps, ids: readonly string[], generation: number, loaded: TaskRuntime[], recovering: Promise<void>): Promise<void> {
  // Few tasks: read one by one; many: one read of every active task (snapshot + journal).
  const wanted = new Set(ids)
  const docs = ids.length > 16 ? (await d.store.listTasks({ statuses: ACTIVE })).filter((t) => wanted.has(t.id)) : null
  if (docs !== null) {
    // Active by their snapshots but not by snapshot + journal: ended, with a snapshot behind
    // (snapshots wait for idle times, so after a busy spell there can be many). Repaired in the
    // background, one read at a time: the hand-over does not wait for them.
    const current = new Set(docs.map((t) => t.id))
    const stale = ids.filter((id) => !current.has(id))
    if (stale.length > 0) void repairStale(d, stale, generation)
  }
  for (const id of docs === null ? ids : []) {
    if (!d.owns(id)) continue
    const doc = await d.store.getTask(id)
    if (doc === null || !d.owns(id)) continue
    const rt = await claim(d, doc, generation, recovering)
    if (rt !== null) loaded.push(rt)
  }
  for (const doc of docs ?? []) {
    if (!d.owns(doc.id)) continue
    const rt = await claim(d, doc, generation, recovering)
    if (rt !== null) loaded.push(rt)
  }
}

/**
 * Resumes loaded tasks. Those with inherited running nodes are recovered first (discovery window,
 * replay of the status topics, then their complete artifacts): their nodes are left alone until
 * then, and a cancel waits for it (RECOVERING).
 */
export function resumeLoaded(d: HandoverDeps, loaded: readonly TaskRuntime[]): Promise<void> | null {
  const deps = d.recovery()
  const inherited = loaded.some((rt) => rt.inherited.size > 0)
  if (inherited) d.engine.graceEnd = Math.max(d.engine.graceEnd, deps.clock.now() + deps.config.discoveryWindowSec * 1000)
  for (const rt of loaded) resume(rt, deps)
  if (!inherited) return null
  const done = finishRecovery(loaded, deps, d.subscriptions(), d.stop)
  for (const rt of loaded) if (rt.inherited.size > 0) RECOVERING.set(rt, done)
  return done
}

/**
 * Writes what is pending for the tasks of `partitions`, then drops them from memory. Those whose
 * partition is ours again (a later assignment gave it back while this waited) go too: another
 * coordinator may have claimed and moved them on meanwhile, and the acquire queued after this
 * release loads them as the store has them (kept, the old runtime took the new owner's reports
 * for stale and lost them).
 */
export async function release(d: HandoverDeps, partitions: ReadonlySet<number>): Promise<number> {
  const mine = (): TaskRuntime[] => [...d.engine.tasks.values()].filter((rt) => partitions.has(d.partitionOf(rt.id)))
  if (mine().length === 0) return 0
  await d.barrier().catch(() => undefined)
  let n = 0
  for (const rt of mine()) {
    d.drop(rt)
    n++
  }
  d.log.info('coordinator.released', { partitions: [...partitions], tasks: n })
  return n
}
