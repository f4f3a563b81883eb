import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { PermanentError, TestClock, TransientError, type RoleHandler, type TaskView } from 'flowkit'
import { startRuntime, noopHandler } from '../helpers/runtime.ts'
import { gate } from '../helpers/gate.ts'
import { waitFor } from '../helpers/wait.ts'

function failingThen(failures: number, makeError: () => unknown): RoleHandler & { calls: number } {
  const h = {
    calls: 0,
    async processBatch() {
      h.calls++
      if (h.calls <= failures) throw makeError()
      return { metrics: { count: 1 } }
    },
  }
  return h
}

const nodeOf = (t: TaskView | null, id: string) => t!.nodes.find((n) => n.node_id === id)!

describe('failures and retries', () => {
  test('S-035 transient failure defers, retries after fractional backoff_sec at a higher epoch, then succeeds', async () => {
    const clock = new TestClock()
    const h = failingThen(1, () => new Error('flaky'))
    const rt = await startRuntime({ clock, handlers: { step: h } })
    try {
      const id = await rt.coordinator.createTask({
        graph: { nodes: [{ node_id: 'n', type: 'step', retry_policy: { max: 3, backoff_sec: 0.5 } }] },
      })
      await waitFor(async () => nodeOf(await rt.coordinator.getTask(id), 'n').status === 'deferred', { message: 'never deferred' })
      const deferred = nodeOf(await rt.coordinator.getTask(id), 'n')
      assert.equal(deferred.attempt_epoch, 1)
      assert.equal(deferred.last_error?.reason_code, 'unexpected_error')
      assert.equal(deferred.next_retry_at_ms, clock.now() + 500)
      await clock.advance(400)
      assert.equal(nodeOf(await rt.coordinator.getTask(id), 'n').status, 'deferred', 'not retried before backoff')
      await clock.advance(150)
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10000 })
      assert.equal(t.status, 'finished')
      assert.equal(nodeOf(t, 'n').attempt_epoch, 2)
      assert.equal(nodeOf(t, 'n').failures, 1)
      assert.equal(h.calls, 2)
    } finally {
      await rt.stop()
    }
  })

  test('retry_policy.max bounds attempts: exhausted retries fail the node permanently (retries_exhausted)', async () => {
    const h = failingThen(100, () => new Error('always'))
    const rt = await startRuntime({ handlers: { step: h } })
    try {
      const id = await rt.coordinator.createTask({
        graph: { nodes: [{ node_id: 'n', type: 'step', retry_policy: { max: 3, backoff_sec: 0 } }] },
      })
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10000 })
      assert.equal(t.status, 'failed')
      const n = nodeOf(t, 'n')
      assert.equal(n.status, 'failed')
      assert.equal(n.attempt_epoch, 3)
      assert.equal(n.last_error?.reason_code, 'retries_exhausted')
      assert.equal(h.calls, 3)
    } finally {
      await rt.stop()
    }
  })

  test('retry_policy.permanent_on makes a listed reason permanent on the first failure', async () => {
    const h = failingThen(100, () => new TransientError('input is bad', 'bad_input'))
    const rt = await startRuntime({ handlers: { step: h } })
    try {
      const id = await rt.coordinator.createTask({
        graph: { nodes: [{ node_id: 'n', type: 'step', retry_policy: { max: 5, backoff_sec: 0, permanent_on: ['bad_input'] } }] },
      })
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10000 })
      assert.equal(t.status, 'failed')
      assert.equal(nodeOf(t, 'n').attempt_epoch, 1)
      assert.equal(nodeOf(t, 'n').last_error?.reason_code, 'bad_input')
      assert.equal(h.calls, 1)
    } finally {
      await rt.stop()
    }
  })

  test('S-036 permanent failure: node failed, what can no longer run is cancelled, task failed', async () => {
    const hold = gate()
    const sideRunning = gate()
    const slow: RoleHandler = {
      async processBatch(_b, ctx) {
        sideRunning.open()
        await hold.wait(ctx.signal)
        return {}
      },
    }
    const bad: RoleHandler = {
      async processBatch() {
        await sideRunning.wait()
        throw new PermanentError('broken', 'boom')
      },
    }
    const rt = await startRuntime({
      handlers: { bad, slow, ok: noopHandler() },
      worker: { concurrency: 3 },
    })
    try {
      const id = await rt.coordinator.createTask({
        graph: {
          nodes: [
            { node_id: 'side', type: 'slow' },
            { node_id: 'a', type: 'bad', depends_on: [] },
            { node_id: 'b', type: 'ok', depends_on: ['a'] },
          ],
        },
      })
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 15000 })
      assert.equal(t.status, 'failed')
      assert.equal(nodeOf(t, 'a').status, 'failed')
      assert.equal(nodeOf(t, 'a').last_error?.reason_code, 'boom')
      assert.equal(nodeOf(t, 'a').attempt_epoch, 1, 'a permanent failure is not retried')
      assert.equal(nodeOf(t, 'b').status, 'cancelled')
      assert.equal(nodeOf(t, 'b').attempt_epoch, 0, 'b was never dispatched')
      assert.equal(nodeOf(t, 'side').status, 'cancelled', 'the running side branch was cancelled')
    } finally {
      hold.open()
      await rt.stop()
    }
  })
})

describe('default error classification', () => {
  for (const [id, make, reason] of [
    ['S-106', () => new TypeError('x is not a function'), 'type_error'],
    ['S-107', () => new RangeError('out of range'), 'range_error'],
    ['S-108', () => new SyntaxError('bad syntax'), 'syntax_error'],
  ] as const) {
    test(`${id} ${reason} is permanent: no retry`, async () => {
      const h = failingThen(100, make)
      const rt = await startRuntime({ handlers: { step: h } })
      try {
        const taskId = await rt.coordinator.createTask({
          graph: { nodes: [{ node_id: 'n', type: 'step', retry_policy: { max: 3, backoff_sec: 0 } }] },
        })
        const t = await rt.coordinator.waitForTask(taskId, { timeoutMs: 10000 })
        assert.equal(t.status, 'failed')
        assert.equal(nodeOf(t, 'n').last_error?.reason_code, reason)
        assert.equal(nodeOf(t, 'n').last_error?.permanent, true)
        assert.equal(h.calls, 1)
      } finally {
        await rt.stop()
      }
    })
  }

  test('S-108 a user-thrown non-retryable error is permanent; a plain Error is transient', async () => {
    const userPermanent = failingThen(100, () => Object.assign(new Error('nope'), { retryable: false, reasonCode: 'user_says_no' }))
    const plain = failingThen(1, () => new Error('network blip'))
    const rt = await startRuntime({ handlers: { perm: userPermanent, plain }, worker: { concurrency: 2 } })
    try {
      const taskId = await rt.coordinator.createTask({
        graph: {
          nodes: [
            { node_id: 'p', type: 'perm', retry_policy: { max: 3, backoff_sec: 0 }, routing: { on_failure: ['after'] } },
            { node_id: 'after', type: 'plain' },
            { node_id: 'q', type: 'plain', retry_policy: { max: 3, backoff_sec: 0 } },
          ],
        },
      })
      const t = await rt.coordinator.waitForTask(taskId, { timeoutMs: 10000 })
      assert.equal(nodeOf(t, 'p').status, 'failed')
      assert.equal(nodeOf(t, 'p').last_error?.reason_code, 'user_says_no')
      assert.equal(userPermanent.calls, 1)
      assert.equal(nodeOf(t, 'q').status, 'finished')
      assert.ok(nodeOf(t, 'q').attempt_epoch >= 2, 'plain Error was retried')
    } finally {
      await rt.stop()
    }
  })

  test('a handler classifyError overrides the default', async () => {
    const base = failingThen(1, () => new TypeError('would be permanent'))
    const h: RoleHandler = { ...base, processBatch: base.processBatch, classifyError: () => ({ reasonCode: 'retry_me', permanent: false }) }
    const rt = await startRuntime({ handlers: { step: h } })
    try {
      const taskId = await rt.coordinator.createTask({
        graph: { nodes: [{ node_id: 'n', type: 'step', retry_policy: { max: 3, backoff_sec: 0 } }] },
      })
      const t = await rt.coordinator.waitForTask(taskId, { timeoutMs: 10000 })
      assert.equal(t.status, 'finished')
      assert.equal(nodeOf(t, 'n').attempt_epoch, 2)
    } finally {
      await rt.stop()
    }
  })
})
