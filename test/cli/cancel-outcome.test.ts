/**
 * What `flowkit cancel` reports (src/cli/task-cmds.ts cancelOutcome): a task that is stopping, or
 * stopped, because a node failed or its deadline passed is not cancelled — it ends failed, and
 * the cancel changes nothing (it said "is cancelling" and `cancelled: true`); the same for the
 * `flowkit ui` dashboard's cancel (src/cli/remote.ts), which answered true. And what `flowkit
 * cancel` says when its wait runs out: with `--wait`, a cancel that was applied but whose task has
 * not ended is not blamed on a missing coordinator (it was).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryBus, MemoryStore, createLogger } from 'flowkit'
import { RemoteCoordinator } from '../../src/cli/remote.ts'
import { cancelOutcome, cancelTimedOut } from '../../src/cli/task-cmds.ts'
import { makeTaskDoc } from '../helpers/fixtures.ts'

const doc = (status: 'running' | 'cancelling' | 'cancelled' | 'failed' | 'finished', cancelled: boolean, error: string | null) => {
  const t = makeTaskDoc({ status, error })
  t.coordinator.cancelled = cancelled
  return t
}

test('flowkit cancel: a task stopping because a node failed is reported as failing, not cancelled', () => {
  const failing = cancelOutcome(doc('cancelling', true, 'node boom failed: perm'))
  assert.equal(failing.cancelled, false)
  assert.match(failing.line, /is stopping because it fails \(node boom failed: perm\): the cancel changes nothing$/)
  const failed = cancelOutcome(doc('failed', true, 'node boom failed: perm'))
  assert.equal(failed.cancelled, false)
  assert.match(failed.line, / failed \(node boom failed: perm\): the cancel changes nothing$/)
})

test('flowkit cancel: a cancel being applied, recorded or done is reported as such', () => {
  assert.deepEqual(
    [cancelOutcome(doc('cancelling', true, null)), cancelOutcome(doc('running', true, null)), cancelOutcome(doc('cancelled', true, null))].map((o) => [o.cancelled, o.status]),
    [
      [true, 'cancelling'],
      [true, 'running'],
      [true, 'cancelled'],
    ],
  )
  assert.match(cancelOutcome(doc('cancelling', true, null)).line, /is cancelling \(its running nodes are being stopped\)$/)
  assert.match(cancelOutcome(doc('running', true, null)).line, /: cancel recorded/)
  const first = cancelOutcome(doc('finished', false, null))
  assert.equal(first.cancelled, false)
  assert.match(first.line, / finished before the cancel applied$/)
})

test('flowkit cancel --wait that runs out: "no coordinator acted" only when none did; an applied cancel says so, with what it waits for', () => {
  const none = cancelTimedOut('t1', 15, doc('running', false, null))
  assert.match(none.message, /^no coordinator acted on the cancel request for task t1 within 15 s$/)
  assert.match(none.hint ?? '', /is a coordinator of this deployment running\?/)
  for (const [status, cancelled] of [['cancelling', true], ['running', true]] as const) {
    const applied = cancelTimedOut('t2', 15, doc(status, cancelled, null))
    assert.equal(applied.message, `the cancel of task t2 was applied (${status}), but the task did not end within 15 s`)
    assert.match(applied.hint ?? '', /cancel_grace_sec/)
    assert.doesNotMatch(applied.hint ?? '', /is a coordinator/)
  }
})

test("flowkit ui's cancel answers false for a task stopping because a node failed, and sends nothing; true for a user's cancel under way", async () => {
  const store = new MemoryStore()
  const bus = new MemoryBus()
  const sent: unknown[] = []
  const sub = await bus.subscribe({ groupId: 'probe', topics: ['ctl'], handler: async (m) => void sent.push(m) })
  const remote = new RemoteCoordinator({ store, bus, controlTopic: 'ctl', logger: createLogger({ level: 'silent' }), cancelTimeoutMs: 200, pollMs: 20 })
  const failing = doc('cancelling', true, 'node boom failed: perm')
  const cancelling = doc('cancelling', true, null)
  await store.createTask(failing)
  await store.createTask(cancelling)
  assert.equal(await remote.cancelTask(failing.id), false)
  assert.equal(await remote.cancelTask(cancelling.id), true)
  assert.deepEqual(sent, [])
  await sub.close()
})
