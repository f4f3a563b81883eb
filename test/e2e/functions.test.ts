import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryStore, type RoleHandler, type TaskView } from 'flowkit'
import { startRuntime } from '../helpers/runtime.ts'

const nodeOf = (t: TaskView | null, id: string) => t!.nodes.find((n) => n.node_id === id)!

/** Three batches with metrics count 4/4/3 and ms 10/20/30. */
const timed: RoleHandler = {
  async *iterBatches() {
    yield { batch_uid: 'a', payload: { count: 4, ms: 10 } }
    yield { batch_uid: 'b', payload: { count: 4, ms: 20 } }
    yield { batch_uid: 'c', payload: { count: 3, ms: 30 } }
  },
  async processBatch(batch) {
    return { metrics: { count: batch.payload['count'] as number, ms: batch.payload['ms'] as number }, meta: { uid: batch.batch_uid } }
  },
}

describe('coordinator functions', () => {
  for (const [mode, expected] of [
    ['sum', { count: 11, ms: 60 }],
    ['mean', { count: 11 / 3, ms: 20 }],
  ] as const) {
    test(`metrics.aggregate (${mode}) in the seed's form writes the aggregate of a node's metrics onto its stats`, async () => {
      const rt = await startRuntime({ handlers: { timed } })
      try {
        const id = await rt.coordinator.createTask({
          graph: {
            nodes: [
              { node_id: 'src', type: 'timed' },
              { node_id: 'agg', type: 'coordinator_fn', depends_on: ['src'], io: { fn: 'metrics.aggregate', fn_args: { node_id: 'src', mode } } },
            ],
          },
        })
        const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10000 })
        assert.equal(t.status, 'finished')
        const stats = nodeOf(t, 'src').stats
        assert.ok(Math.abs((stats['count'] as number) - expected.count) < 1e-9, `count ${String(stats['count'])}`)
        assert.ok(Math.abs((stats['ms'] as number) - expected.ms) < 1e-9, `ms ${String(stats['ms'])}`)
      } finally {
        await rt.stop()
      }
    })
  }

  test('metrics.aggregate over several nodes writes one stat onto a target node', async () => {
    const rt = await startRuntime({ handlers: { timed }, worker: { concurrency: 2 } })
    try {
      const id = await rt.coordinator.createTask({
        graph: {
          nodes: [
            { node_id: 'a', type: 'timed' },
            { node_id: 'b', type: 'timed' },
            { node_id: 'report', type: 'coordinator_fn', depends_on: ['a', 'b'], io: { fn: 'noop' } },
            {
              node_id: 'agg',
              type: 'coordinator_fn',
              depends_on: ['a', 'b'],
              io: { fn: 'metrics.aggregate', fn_args: { from_nodes: ['a', 'b'], metric: 'ms', mode: 'mean', target_node: 'report' } },
            },
          ],
        },
      })
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10000 })
      assert.equal(t.status, 'finished')
      assert.equal(nodeOf(t, 'report').stats['ms_mean'], 60)
    } finally {
      await rt.stop()
    }
  })

  test('merge.generic carries the seed summary beside the merged metas', async () => {
    const rt = await startRuntime({ handlers: { timed } })
    try {
      const id = await rt.coordinator.createTask({
        graph: {
          nodes: [
            { node_id: 'src', type: 'timed' },
            { node_id: 'm', type: 'coordinator_fn', depends_on: ['src'], io: { fn: 'merge.generic', fn_args: { from_nodes: ['src'], target: { node_id: 'm' } } } },
          ],
        },
      })
      await rt.coordinator.waitForTask(id, { timeoutMs: 10000 })
      const [art] = await rt.coordinator.listArtifacts(id, { nodeId: 'm' })
      assert.equal(art?.status, 'complete')
      assert.deepEqual(
        { merged_from: art?.meta['merged_from'], complete_nodes: art?.meta['complete_nodes'], partial_batches: art?.meta['partial_batches'], distinct: art?.meta['distinct_batch_uids'] },
        { merged_from: ['src'], complete_nodes: ['src'], partial_batches: 3, distinct: 3 },
      )
      assert.deepEqual(((art?.meta['merged'] ?? []) as { meta: { uid: string } }[]).map((x) => x.meta.uid), ['a', 'b', 'c'])
    } finally {
      await rt.stop()
    }
  })
})

test('a coordinator function cancelled while it runs ends cancelled and its effect is not applied (vars.incr, metrics.aggregate onto another node)', async () => {
  /** Function artifacts of `inc` / `agg` are written slowly: the cancel comes while the function runs. */
  class SlowStore extends MemoryStore {
    override async upsertArtifact(...a: Parameters<MemoryStore['upsertArtifact']>): Promise<Awaited<ReturnType<MemoryStore['upsertArtifact']>>> {
      if (a[0].batch_uid === null && (a[0].node_id === 'inc' || a[0].node_id === 'agg')) await new Promise((r) => setTimeout(r, 300))
      return super.upsertArtifact(...a)
    }
  }
  const src: RoleHandler = { async processBatch() { return { metrics: { count: 7 } } } }
  const hang: RoleHandler = {
    async processBatch(_b, ctx) {
      await ctx.sleep(60_000)
      return {}
    },
  }
  const rt = await startRuntime({ store: new SlowStore(), handlers: { src, hang }, worker: { concurrency: 4 } })
  try {
    for (const fn of ['inc', 'agg']) {
      const nodes = [
        { node_id: 'src', type: 'src' },
        { node_id: 'h', type: 'hang' },
        fn === 'inc'
          ? { node_id: 'inc', type: 'coordinator_fn', depends_on: ['src'], io: { fn: 'vars.incr', fn_args: { key: 'n' } } }
          : { node_id: 'agg', type: 'coordinator_fn', depends_on: ['src'], io: { fn: 'metrics.aggregate', fn_args: { from_nodes: ['src'], mode: 'sum', target_node: 'h' } } },
      ]
      const id = await rt.coordinator.createTask({ graph: { nodes } })
      const deadline = Date.now() + 10_000
      while ((await rt.coordinator.getTask(id))?.nodes.find((n) => n.node_id === fn)?.status !== 'running' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
      await new Promise((r) => setTimeout(r, 50))
      assert.equal(await rt.coordinator.cancelTask(id), true)
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 15_000 })
      assert.equal(t.status, 'cancelled')
      assert.equal(t.nodes.find((n) => n.node_id === fn)?.status, 'cancelled', fn)
      assert.deepEqual(t.vars, {}, `${fn}: no variable changed`)
      assert.deepEqual(t.nodes.find((n) => n.node_id === 'h')?.stats, {}, `${fn}: no stats written onto h`)
    }
  } finally {
    await rt.stop()
  }
})

test('a coordinator function\'s timeout_sec counts from when it runs, not while it waits behind the task\'s other functions', async () => {
  /** Every function's artifact takes 150 ms to write; 12 of them run one after the other (about 1.8 s). */
  class SlowStore extends MemoryStore {
    override async upsertArtifact(...a: Parameters<MemoryStore['upsertArtifact']>): Promise<Awaited<ReturnType<MemoryStore['upsertArtifact']>>> {
      if (a[0].worker_id === null) await new Promise((r) => setTimeout(r, 150))
      return super.upsertArtifact(...a)
    }
  }
  const rt = await startRuntime({ store: new SlowStore() })
  try {
    const nodes = Array.from({ length: 12 }, (_, i) => ({ node_id: `inc${i}`, type: 'coordinator_fn', timeout_sec: 1, retry_policy: { max: 1 }, io: { fn: 'vars.incr', fn_args: { key: 'n' } } }))
    const id = await rt.coordinator.createTask({ graph: { nodes } })
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })
    assert.equal(t.status, 'finished', JSON.stringify(t.nodes.filter((n) => n.status !== 'finished').map((n) => [n.node_id, n.last_error])))
    assert.deepEqual(t.vars, { n: 12 })
  } finally {
    await rt.stop()
  }
})

test('a coordinator function that changes the variables it is given in place: what it returns is what the next nodes see (no cached copy or size of the old ones), and a change it does not return changes nothing', async () => {
  const seen: Array<[string, unknown]> = []
  const reader: RoleHandler = {
    async processBatch(_b, ctx) {
      seen.push([ctx.nodeId, structuredClone(ctx.vars)])
      return {}
    },
  }
  const big = 'x'.repeat(400_000) // past the inline limit of a START (256 KiB): the worker reads the task
  const rt = await startRuntime({
    handlers: { reader },
    functions: {
      bump: async (ctx) => {
        const v = ctx.task.coordinator.vars
        v['x'] = 2
        v['big'] = big
        return { vars: v }
      },
      touch: async (ctx) => {
        ctx.task.coordinator.vars['x'] = 99 // not returned: no effect
        const node = ctx.task.nodes['r1']
        if (node !== undefined) node.status = 'failed' // nor on a node's state
        return {}
      },
    },
  })
  try {
    const fn = (id: string, f: string, args: object, dep: string[]) => ({ node_id: id, type: 'coordinator_fn', depends_on: dep, io: { fn: f, fn_args: args } })
    const id = await rt.coordinator.createTask({
      graph: {
        nodes: [
          fn('set', 'vars.set', { kv: { x: 1 } }, []),
          { node_id: 'r1', type: 'reader', depends_on: ['set'] },
          fn('bump', 'bump', {}, ['r1']),
          { node_id: 'r2', type: 'reader', depends_on: ['bump'] },
          fn('touch', 'touch', {}, ['r2']),
          { node_id: 'r3', type: 'reader', depends_on: ['touch'] },
        ],
      },
    })
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })
    assert.equal(t.status, 'finished')
    assert.deepEqual(t.nodes.map((n) => n.status), ['finished', 'finished', 'finished', 'finished', 'finished', 'finished'])
    const x = (v: unknown) => (v as { x?: unknown }).x
    assert.deepEqual(seen.map(([n, v]) => [n, x(v)]), [['r1', 1], ['r2', 2], ['r3', 2]])
    assert.equal(((seen[1] as [string, { big?: string }])[1].big ?? '').length, 400_000, 'r2 got the large variables')
    assert.equal(x(t.vars), 2)
  } finally {
    await rt.stop()
  }
})
