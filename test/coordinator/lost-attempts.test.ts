/**
 * A node whose runs kill (or hang) the worker that runs them before its first report — a crash in
 * native code, memory running out, `process.exit` in a library, on this node's input — is failed
 * (`worker_lost`) once more attempts than `retry_policy.max` are lost so. Before, each such
 * attempt was handed back without counting (a worker that died says nothing of the node), and the
 * node took worker after worker for ever, whether the workers came back with new ids (the attempt
 * claimed and never accepted) or with the same id (the restarted process finds the attempt its
 * predecessor held).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryLogger, TestClock, type RoleHandler, type Worker } from 'flowkit'
import { startRuntime } from '../helpers/runtime.ts'
import { waitFor } from '../helpers/wait.ts'

const MAX = 2

for (const sameId of [false, true]) {
  test(`a node whose runs kill their worker before any report fails (worker_lost) after retry_policy.max + 1 lost attempts — workers restarted with ${sameId ? 'the same id' : 'new ids'}`, async () => {
    const clock = new TestClock()
    const log = new MemoryLogger()
    const runs: number[] = []
    let current: Worker | null = null
    let dead = false
    // The worker dies at once, its acceptance still held back: the attempt is claimed, never accepted.
    const poison: RoleHandler = {
      processBatch(_b, ctx) {
        runs.push(ctx.attemptEpoch)
        dead = true
        void current?.kill()
        return new Promise(() => undefined)
      },
    }
    const rt = await startRuntime({ clock, logger: log, coordinator: { acceptTimeoutSec: 1, steerAfterSec: 0 } })
    const restart = async (): Promise<void> => {
      dead = false
      current = await rt.addWorker({ job: poison }, sameId ? { workerId: 'w-fixed' } : {})
    }
    try {
      await restart()
      const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'a', type: 'job', retry_policy: { max: MAX } }] } })
      let t = await rt.coordinator.getTask(id)
      // A supervisor starts a worker again whenever it died; virtual time runs on (waits double per hand-back).
      for (let i = 0; i < 400 && t?.status === 'running'; i++) {
        if (dead) await restart()
        await clock.advance(1000)
        t = await rt.coordinator.getTask(id)
      }
      assert.equal(t?.status, 'failed', `the task ended (runs at epochs ${runs.join(', ')})`)
      const n = t?.nodes[0]
      assert.equal(n?.last_error?.reason_code, 'worker_lost')
      assert.equal(n?.last_error?.permanent, true)
      assert.match(n?.last_error?.error ?? '', /3 attempts of this node were lost so, more than retry_policy.max \(2\)/)
      assert.equal(runs.length, MAX + 1, `one run per attempt, ${MAX + 1} attempts (runs at epochs ${runs.join(', ')})`)
      assert.deepEqual(runs, [...new Set(runs)], 'never twice at one epoch')
      assert.equal(n?.failures, 1, 'no retry was used: the losses are counted on their own, only the last one (which failed the node) is a failure')
      if (sameId) assert.ok(log.records.some((r) => r.event === 'node.handed_back' && r.fields['reason'] === 'worker_restarted'), 'the restarted process gave an attempt back')
    } finally {
      await rt.stop()
    }
  })
}

test('a worker stopping for a deploy gives its runs back however often: not a lost attempt, the node runs to its end', async () => {
  const log = new MemoryLogger()
  let stops = 0
  const handler: RoleHandler = {
    async processBatch(_b, ctx) {
      if (ctx.attemptEpoch <= 3) {
        stops++
        await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }))
        ctx.throwIfCancelled()
      }
      return { metrics: { n: 1 } }
    },
  }
  const rt = await startRuntime({ logger: log })
  try {
    await rt.addWorker({ job: handler })
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'a', type: 'job', retry_policy: { max: 1 } }] } })
    for (let i = 1; i <= 3; i++) {
      const w = rt.workers.at(-1) as Worker
      await waitFor(() => w.activeRuns().length > 0, { message: `attempt ${i} runs` })
      const next = rt.addWorker({ job: handler })
      await w.stop()
      await next
    }
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })
    assert.equal(t.status, 'finished', JSON.stringify(t.nodes[0]?.last_error))
    assert.equal(stops, 3)
    assert.equal(t.nodes[0]?.attempt_epoch, 4)
    assert.equal(t.nodes[0]?.lost_attempts ?? 0, 0)
  } finally {
    await rt.stop()
  }
})
