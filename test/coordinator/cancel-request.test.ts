/**
 * While a task's cancel is requested and not applied (src/coordinator/cancel-request.ts), nothing
 * of it starts: a node deferred for a retry is not due (it used to be re-armed at its past retry
 * time on every turn of the event loop, a busy loop for as long as the cancel waited).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Engine } from '../../src/coordinator/engine.ts'
import { Limits } from '../../src/coordinator/limits.ts'
import { TaskRuntime } from '../../src/coordinator/runtime.ts'
import type { TimerEntry, TimerHeap } from '../../src/coordinator/timers.ts'
import { coordinatorConfig } from '../../src/coordinator/wiring.ts'
import { SystemClock } from '../../src/clock.ts'
import { createLogger } from '../../src/log.ts'
import { makeNodeState, makeTaskDoc } from '../helpers/fixtures.ts'

function setUp(cancelled: boolean): { engine: Engine; rt: TaskRuntime; ord: number; armed: TimerEntry[]; dirty: TaskRuntime[] } {
  const armed: TimerEntry[] = []
  const dirty: TaskRuntime[] = []
  const timers = { push: (e: TimerEntry) => void armed.push(e) } as unknown as TimerHeap
  const clock = new SystemClock()
  const engine = new Engine(coordinatorConfig({}), clock, createLogger({ level: 'silent' }), new Limits(0, {}), timers, { dirty: (rt) => void dirty.push(rt), terminal: () => undefined })
  const doc = makeTaskDoc({ status: 'running' })
  doc.nodes['extract'] = makeNodeState('extract', 'extractor', { status: 'deferred', attempt_epoch: 1, next_retry_at_ms: clock.now() - 1 })
  doc.coordinator.cancelled = cancelled
  const rt = new TaskRuntime(doc, 1)
  engine.tasks.set(rt.id, rt)
  return { engine, rt, ord: rt.ord.get('extract') as number, armed, dirty }
}

test('a deferred node whose retry is due is dispatched when its timer fires', () => {
  const { engine, rt, ord, armed } = setUp(false)
  engine.armNode(rt, ord)
  assert.equal(armed.length, 1)
  engine.onTimers([...armed])
  assert.equal(rt.node(ord).status, 'running')
})

test('while the task cancel is requested, a deferred node is not due: not armed, not dispatched', () => {
  const { engine, rt, ord, armed } = setUp(true)
  engine.armNode(rt, ord)
  assert.deepEqual(armed, [])
  // A timer armed before the request fires: the node stays deferred and is not armed again.
  engine.onTimers([{ at: Date.now() - 1, taskId: rt.id, ord }])
  assert.equal(rt.node(ord).status, 'deferred')
  assert.deepEqual(armed, [])
})
