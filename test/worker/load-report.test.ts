/**
 * The worker's load reports (src/worker/load-report.ts): one when its slots fill up and one when a
 * slot frees, at most one a second; a change within that second goes out at its end as the state
 * then (nothing when it changed back).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryLogger, TestClock } from 'flowkit'
import { LoadReport } from '../../src/worker/load-report.ts'
import type { WorkerCore } from '../../src/worker/core.ts'

test('load reports: on filling up and on freeing, at most one a second, the state at the end of the gap', async () => {
  const clock = new TestClock()
  const t0 = clock.now()
  const sent: Array<[number, number]> = []
  let running = 0
  const core = { clock, log: new MemoryLogger() } as unknown as WorkerCore
  const r = new LoadReport(core, 2, async () => {
    sent.push([clock.now() - t0, running])
  })
  const set = (n: number): void => {
    running = n
    r.update(n)
  }
  const at = (): number => clock.now() - t0
  set(1)
  assert.deepEqual(sent, [], 'not full: nothing to tell')
  set(2)
  assert.equal(sent.length, 1, 'full: told at once')
  set(1) // a slot frees within the second: told at its end
  set(2) // … and fills again before it: nothing to tell then
  await clock.advance(1_000)
  assert.equal(sent.length, 1, 'changed back within the gap: no report')
  set(1)
  assert.equal(sent.length, 2, 'a slot free, after the gap: told at once')
  set(2)
  assert.equal(sent.length, 2, 'full again within the gap: waits')
  await clock.advance(500)
  assert.equal(sent.length, 2)
  await clock.advance(500)
  assert.equal(sent.length, 3, 'told at the end of the gap')
  assert.equal(sent[2]?.[1], 2)
  assert.ok(at() >= 2_000)
  r.stop()
  set(0)
  await clock.advance(5_000)
  assert.equal(sent.length, 3, 'stopped: nothing more')
})
