/**
 * Nodes that wait for a concurrency slot while what they wait on changes: a guard that stops
 * holding, a yielded consumer whose upstream fails again or for good. Each ended with the task
 * stuck `running` or a consumer wrongly skipped (found by the scheduling audit).
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryLogger, type RoleHandler, type TaskView } from 'flowkit'
import { gate } from '../helpers/gate.ts'
import { startRuntime } from '../helpers/runtime.ts'
import { waitFor } from '../helpers/wait.ts'

const node = (t: TaskView | null, id: string) => {
  const n = t?.nodes.find((x) => x.node_id === id)
  assert.ok(n, `node ${id}`)
  return n
}

/** Counts the items of the upstream batches it is given (pull.from_artifacts payloads). */
const counting: RoleHandler = {
  async processBatch(batch) {
    const meta = (batch.payload as { meta?: { items?: unknown[] } } | null)?.meta
    return { metrics: { count: meta?.items?.length ?? 0, batches: 1 } }
  },
}

/** A source of `batches` batches (one item each) whose attempts listed in `failing` fail at batch `failAt`. */
function source(batches: number, failAt: number, failing: (epoch: number) => boolean, beforeFailMs = 0): RoleHandler {
  return {
    async *iterBatches() {
      for (let i = 0; i < batches; i++) yield { batch_uid: `b${i}`, payload: { i } }
    },
    async processBatch(batch, ctx) {
      const i = (batch.payload as { i: number }).i
      if (i === failAt && failing(ctx.attemptEpoch)) {
        if (beforeFailMs > 0) await ctx.sleep(beforeFailMs)
        throw new Error(`batch ${i} failed (attempt ${ctx.attemptEpoch})`)
      }
      await ctx.sleep(20)
      return { metrics: { count: 1 }, meta: { items: [`${ctx.nodeId}:${i}`] } }
    },
  }
}

describe('nodes waiting for a concurrency slot', () => {
  test('a node whose guard stops holding while it waits for a slot is skipped when the slot frees (it hung queued)', async () => {
    const busy = gate()
    let guardedRuns = 0
    const rt = await startRuntime({
      handlers: {
        busy: { async processBatch(_b, ctx) { await busy.wait(ctx.signal); return {} } },
        guarded: { async processBatch() { guardedRuns++; return {} } },
      },
      coordinator: { maxRunningNodes: 1 },
    })
    try {
      const id = await rt.coordinator.createTask({
        graph: {
          nodes: [
            { node_id: 'busy', type: 'busy' },
            { node_id: 'x', type: 'guarded', when: { var: 'flag', op: 'ne', value: 'off' } },
            { node_id: 'setter', type: 'coordinator_fn', io: { fn: 'vars.set', fn_args: { kv: { flag: 'off' } } } },
          ],
        },
      })
      // x was ready (its guard held) and waits for busy's slot; the guard stops holding meanwhile.
      await waitFor(async () => {
        const t = await rt.coordinator.getTask(id)
        return node(t, 'setter').status === 'finished' && node(t, 'busy').status === 'running'
      }, { message: 'setter never ran beside busy' })
      assert.equal(node(await rt.coordinator.getTask(id), 'x').status, 'queued')
      busy.open()
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 15_000 })
      assert.equal(t.status, 'finished')
      assert.equal(node(t, 'x').status, 'skipped')
      assert.match(String(node(t, 'x').end_reason), /guard/)
      assert.equal(guardedRuns, 0)
    } finally {
      await rt.stop()
    }
  })

  test('a pulling consumer that yielded its slot runs after its upstream failed once and was retried (it stayed queued for good)', async () => {
    const logger = new MemoryLogger()
    const rt = await startRuntime({
      logger,
      handlers: { src: source(2, 0, (epoch) => epoch === 1, 100), pull: counting },
      coordinator: { maxRunningNodes: 1 },
    })
    try {
      const id = await rt.coordinator.createTask({
        graph: {
          nodes: [
            // c comes first: it takes the only slot, then yields it to a (whose data it waits for).
            { node_id: 'c', type: 'pull', io: { input_inline: { input_adapter: 'pull.from_artifacts', input_args: { from_nodes: ['a'], poll_ms: 20 } } } },
            { node_id: 'a', type: 'src', retry_policy: { max: 2, backoff_sec: 0.3 } },
          ],
        },
      })
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })
      assert.equal(t.status, 'finished')
      assert.equal(node(t, 'a').attempt_epoch, 2, 'a failed once')
      assert.equal(node(t, 'c').status, 'finished')
      assert.equal(node(t, 'c').stats['count'], 2, 'c read both items of the retry')
      assert.ok(logger.records.some((r) => r.event === 'node.requeued' && r.fields['node_id'] === 'c'), 'c yielded its slot to a')
    } finally {
      await rt.stop()
    }
  })

  test('a streaming consumer that yielded its slot finishes on the batches written when its upstream then fails for good (it was skipped)', async () => {
    const logger = new MemoryLogger()
    const rt = await startRuntime({
      logger,
      handlers: { src: source(3, 1, () => true), alert: { async processBatch() { return {} } }, pull: counting },
      coordinator: { maxRunningNodes: 1 },
    })
    try {
      const id = await rt.coordinator.createTask({
        graph: {
          nodes: [
            { node_id: 'a', type: 'src', retry_policy: { max: 2, backoff_sec: 0.3 }, routing: { on_failure: ['alert'] } },
            { node_id: 'alert', type: 'alert' },
            { node_id: 'c', type: 'pull', depends_on: ['a'], io: { start_when: 'first_batch', input_inline: { input_adapter: 'pull.from_artifacts', input_args: { from_nodes: ['a'], poll_ms: 20 } } } },
          ],
        },
      })
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })
      assert.equal(node(t, 'a').status, 'failed')
      assert.ok(logger.records.some((r) => r.event === 'node.requeued' && r.fields['node_id'] === 'c'), 'c yielded its slot to a')
      // As without the limit: a dependent that started goes on with the batches written.
      assert.equal(node(t, 'c').status, 'finished', `c: ${node(t, 'c').status} (${node(t, 'c').end_reason})`)
      assert.equal(node(t, 'c').stats['count'], 1, "c read a's one written batch")
      assert.equal(node(t, 'alert').status, 'finished')
      assert.equal(t.status, 'finished')
    } finally {
      await rt.stop()
    }
  })
})
