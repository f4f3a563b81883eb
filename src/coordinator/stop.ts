/**
 * How a coordinator stops (Coordinator.stop): it stops consuming, lets coordinator functions end,
 * flushes, sends what is queued and records it as sent (a clean restart sends nothing twice),
 * writes the pending snapshots within `stopSnapshotsSec`, then hands its partitions over and
 * forgets its tasks (another start() rebuilds them from the store). `steps` names the step a slow
 * stop waits for.
 */
import { ErrorCode, FlowkitError } from '../errors.ts'
import type { StopSteps } from '../util/stop-steps.ts'
import type { CoordinatorWiring } from './wiring.ts'

export async function stopSteps(p: CoordinatorWiring, steps: StopSteps, sweepLoop: Promise<void> | null, stopSnapshotsSec: number): Promise<void> {
  // Every step runs even when one before it failed (a subscription that cannot be closed must not
  // leave the outbox, the timers or the ownership running); the first failure is thrown at the end.
  let first: { err: unknown } | null = null
  const attempt = async (step: () => unknown): Promise<void> => {
    try {
      await step()
    } catch (err) {
      first ??= { err }
    }
  }
  p.ownership.pause()
  steps.step('closing subscriptions')
  await attempt(() => p.subscriptions.closeAll())
  p.discovery.stop()
  p.fns.stop()
  steps.step('coordinator functions ending')
  await Promise.allSettled([...p.engine.tasks.values()].map((rt) => rt.fnChain))
  steps.step('last flush')
  await attempt(() => p.flusher.drain())
  steps.step('outbox stopping')
  await attempt(() => p.outbox.stop())
  // Record what was sent, so a clean restart sends nothing twice.
  for (const rt of p.engine.tasks.values()) if (rt.sentThrough > rt.sentRecorded) p.flusher.mark(rt, true)
  steps.step('recording what was sent')
  await attempt(() => p.flusher.drain())
  p.flusher.stop()
  steps.step('sweep loop ending')
  await attempt(() => sweepLoop)
  steps.step('snapshots')
  const left = await p.snapshots.drain(stopSnapshotsSec * 1000).catch((err: unknown) => {
    first ??= { err }
    return 0
  })
  // Nothing is lost (the journal holds those states; the next owner replays a longer tail): info.
  if (left > 0) p.log.info('coordinator.snapshots_left', { snapshots: left, budget_sec: stopSnapshotsSec })
  // Everything is written: the partitions go to the other coordinators.
  steps.step('handing over partitions')
  await attempt(() => p.ownership.stop())
  p.timers.stop()
  // Another start() rebuilds all of this from the store.
  p.engine.tasks.clear()
  p.after.reset()
  p.limits.clear()
  p.flusher.restart()
  p.watchers.close(new FlowkitError(ErrorCode.Closed, 'the coordinator stopped before the watched task ended'))
  steps.step('observability')
  await attempt(() => p.obs?.stop())
  if (first !== null) throw (first as { err: unknown }).err
}
