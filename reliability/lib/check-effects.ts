/**
 * "One effect per node and epoch", from the effect lines the handlers append (proc/handlers.ts).
 * The same (task, node, batch) in two epochs is a retry: allowed. The same (task, node, epoch,
 * batch) twice, or one (task, node, epoch) run by two workers (worker id + pid: a restarted
 * process is another worker), is a violation.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import type { EffectLine } from '../proc/handlers.ts'

export interface EffectsCheck {
  lines: number
  /** Handler runs for tasks that are not the workload's (e.g. a flood record that got executed). */
  foreign: string[]
  /** Batches run again at a later epoch (retries: allowed). */
  retried: number
  violations: string[]
}

export function readEffects(dir: string): EffectLine[] {
  if (!existsSync(dir)) return []
  const out: EffectLine[] = []
  for (const f of readdirSync(dir).filter((n) => n.endsWith('.jsonl'))) {
    for (const line of readFileSync(join(dir, f), 'utf8').split('\n')) {
      if (line.trim() === '') continue
      try {
        out.push(JSON.parse(line) as EffectLine)
      } catch {
        // a line cut by a SIGKILL in the middle of a write: not an effect that completed
      }
    }
  }
  return out
}

export function checkEffects(all: readonly EffectLine[], taskIds: ReadonlySet<string>): EffectsCheck {
  const lines = all.filter((l) => taskIds.has(l.task))
  const foreignRuns = new Map<string, Set<string>>()
  for (const l of all) {
    if (taskIds.has(l.task)) continue
    const set = foreignRuns.get(`${l.task}/${l.node}@${l.epoch}`) ?? new Set<string>()
    set.add(`${l.worker}(pid ${l.pid})`)
    foreignRuns.set(`${l.task}/${l.node}@${l.epoch}`, set)
  }
  const foreign = [...foreignRuns].map(([run, ws]) => `handler ran ${run}, a task that is not the workload's, on ${[...ws].join(', ')}`)
  const byBatchEpoch = new Map<string, EffectLine[]>()
  const runners = new Map<string, Set<string>>()
  const epochsOfBatch = new Map<string, Set<number>>()
  for (const l of lines) {
    const be = `${l.task}/${l.node}@${l.epoch}/${l.batch}`
    byBatchEpoch.set(be, [...(byBatchEpoch.get(be) ?? []), l])
    const run = `${l.task}/${l.node}@${l.epoch}`
    const set = runners.get(run) ?? new Set<string>()
    set.add(`${l.worker}(pid ${l.pid})`)
    runners.set(run, set)
    const b = `${l.task}/${l.node}/${l.batch}`
    const epochs = epochsOfBatch.get(b) ?? new Set<number>()
    epochs.add(l.epoch)
    epochsOfBatch.set(b, epochs)
  }
  const violations: string[] = []
  for (const [key, ls] of byBatchEpoch) {
    if (ls.length > 1) violations.push(`batch ${key} ran ${ls.length} times in one epoch: ${ls.map((l) => `${l.worker}(pid ${l.pid})`).join(', ')}`)
  }
  for (const [run, set] of runners) {
    if (set.size > 1) violations.push(`epoch ${run} run by ${set.size} workers: ${[...set].join(', ')}`)
  }
  let retried = 0
  for (const epochs of epochsOfBatch.values()) retried += epochs.size - 1
  return { lines: lines.length, foreign, retried, violations }
}
