/**
 * The built-in coordinator functions' fn_args are checked at submission (src/coordinator/fn-args.ts):
 * what a function would refuse whatever the task's state is refuses the graph, with its path,
 * instead of failing the node when it runs; node ids the arguments name must exist. A function
 * given under a built-in name replaces the built-in one's check too.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { Coordinator, MemoryBus, MemoryStore } from '../../src/index.ts'

const fnNode = (fn: string, args: unknown) => ({ node_id: 'f', type: 'coordinator_fn', depends_on: ['a'], io: { fn, fn_args: args } })
const graphOf = (fn: string, args: unknown) => ({ nodes: [{ node_id: 'a', type: 'w' }, fnNode(fn, args)] })

async function withCoordinator(fn: (c: Coordinator) => Promise<void>, functions?: ConstructorParameters<typeof Coordinator>[0]['functions']): Promise<void> {
  const c = new Coordinator({ bus: new MemoryBus(), store: new MemoryStore(), ...(functions === undefined ? {} : { functions }) })
  await c.start()
  try {
    await fn(c)
  } finally {
    await c.stop()
  }
}

describe('built-in coordinator function arguments at submission', () => {
  test('arguments a built-in function can never run with refuse the graph, each with its path and node', async () => {
    await withCoordinator(async (c) => {
      const cases: [string, unknown, string, RegExp][] = [
        ['metrics.aggregate', { node_id: 'ghost' }, 'nodes[1].io.fn_args.node_id', /names unknown node "ghost"/],
        ['metrics.aggregate', { node_id: 'a', mode: 'median' }, 'nodes[1].io.fn_args.mode', /mode must be "sum" or "mean", got "median"/],
        ['metrics.aggregate', {}, 'nodes[1].io.fn_args', /needs node_id .* or from_nodes/],
        ['metrics.aggregate', { from_nodes: ['a'], target_node: 'nope' }, 'nodes[1].io.fn_args.target_node', /names unknown node "nope"/],
        ['metrics.aggregate', { from_nodes: ['a'], metric: 3 }, 'nodes[1].io.fn_args.metric', /metric must be a non-empty string/],
        // The two forms mixed: node_id (the seed's form) would read node a alone and ignore the rest.
        ['metrics.aggregate', { node_id: 'a', from_nodes: ['a'], mode: 'sum' }, 'nodes[1].io.fn_args.from_nodes', /from_nodes belongs to the from_nodes form, node_id to the seed's form/],
        ['metrics.aggregate', { node_id: 'a', target_key: 'total' }, 'nodes[1].io.fn_args.target_key', /give one form/],
        ['merge.generic', {}, 'nodes[1].io.fn_args', /merge.generic needs from_nodes/],
        ['merge.generic', { from_nodes: ['a'], target: 'x' }, 'nodes[1].io.fn_args.target', /target must be an object/],
        // A summary field's name: the merged items were written over by the summary, the node finished.
        ['merge.generic', { from_nodes: ['a'], target: { key: 'count' } }, 'nodes[1].io.fn_args.target.key', /target.key "count" is one of merge.generic's summary fields/],
        ['merge.generic', { from_nodes: ['a'], target: { key: 'merged_from' } }, 'nodes[1].io.fn_args.target.key', /summary fields/],
        ['vars.set', { key: 'a..$b', value: 1 }, 'nodes[1].io.fn_args', /vars.set: invalid key "a..\$b"/],
        ['vars.set', { key: 'k' }, 'nodes[1].io.fn_args', /key "k" needs a value/],
        // A key "__proto__" is refused like any reserved segment (it was dropped silently).
        ['vars.set', JSON.parse('{"kv":{"__proto__":{"x":1},"a":1}}'), 'nodes[1].io.fn_args', /invalid key "__proto__": reserved segment/],
        ['vars.incr', { key: '__proto__.x' }, 'nodes[1].io.fn_args', /reserved segment "__proto__"/],
        ['vars.incr', { key: 'n', by: 'x' }, 'nodes[1].io.fn_args', /must be a finite number/],
        ['vars.merge', { data: 3 }, 'nodes[1].io.fn_args', /data must be an object/],
        ['vars.unset', {}, 'nodes[1].io.fn_args', /needs keys/],
      ]
      for (const [fn, args, path, re] of cases) {
        await assert.rejects(c.createTask({ graph: graphOf(fn, args) }), (err: Error & { path?: string; details?: { errors?: { message: string }[] } }) => {
          assert.equal(err.path, path, `${fn} ${JSON.stringify(args)}`)
          assert.match(err.message, re)
          assert.match(err.message, /node "f"/)
          return true
        })
      }
      // Good arguments pass.
      for (const [fn, args] of [['vars.set', { kv: { a: 1 } }], ['metrics.aggregate', { node_id: 'a' }], ['metrics.aggregate', { from_nodes: ['a'], mode: 'mean', target_node: 'a' }], ['merge.generic', { from_nodes: ['a'], target: { key: 'all' } }], ['vars.unset', { key: 'a' }]] as const) {
        assert.equal(typeof (await c.createTask({ graph: graphOf(fn, args) })), 'string', `${fn} ${JSON.stringify(args)}`)
      }
    })
  })

  test('metrics.aggregate reading node_id of a node that runs after it is a dependency cycle, as from_nodes is', async () => {
    await withCoordinator(async (c) => {
      const graph = {
        nodes: [
          { node_id: 'agg', type: 'coordinator_fn', io: { fn: 'metrics.aggregate', fn_args: { node_id: 'w' } } },
          { node_id: 'w', type: 'work', depends_on: ['agg'] },
        ],
      }
      await assert.rejects(c.createTask({ graph }), (err: Error & { code?: string; path?: string }) => {
        assert.equal(err.code, 'GRAPH_CYCLE')
        assert.match(err.message, /reads the output of "w" through node_id at nodes\[0\]\.io\.fn_args\.node_id/)
        return true
      })
      // The same read of a node that runs first is fine; a target_node is written, not read.
      const ok = { nodes: [{ node_id: 'w', type: 'work' }, { node_id: 'agg', type: 'coordinator_fn', depends_on: ['w'], io: { fn: 'metrics.aggregate', fn_args: { node_id: 'w' } } }, { node_id: 'later', type: 'work', depends_on: ['agg'] }] }
      assert.equal(typeof (await c.createTask({ graph: ok })), 'string')
    })
  })

  test('fn_args nested past the depth limit are a problem of the graph (not a stack overflow); a merge whose objects land leaf by leaf is not judged by the value limit', async () => {
    await withCoordinator(async (c) => {
      let deep: unknown = 1
      for (let i = 0; i < 5000; i++) deep = [deep]
      await assert.rejects(c.createTask({ graph: graphOf('vars.set', { kv: { x: deep } }) }), (err: Error) => {
        assert.equal(err.name, 'GraphValidationError')
        assert.match(err.message, /value nested deeper than 32 levels/)
        return true
      })
      // 80 KB under one key: over the 64 KiB value limit as one value, fine merged into variables that hold cfg already.
      const big = { cfg: { a: 'x'.repeat(40_000), b: 'y'.repeat(40_000) } }
      assert.equal(typeof (await c.createTask({ graph: graphOf('vars.merge', { data: big }) })), 'string')
    })
  })

  test('from_nodes as one id, or from_node beside an empty from_nodes, run as they pass', async () => {
    await withCoordinator(async (c) => {
      for (const args of [{ from_nodes: 'a' }, { from_nodes: [], from_node: 'a' }]) {
        const id = await c.createTask({ graph: { nodes: [{ node_id: 'a', type: 'coordinator_fn', io: { fn: 'noop' } }, { node_id: 'f', type: 'coordinator_fn', depends_on: ['a'], io: { fn: 'merge.generic', fn_args: args } }] } })
        const t = await c.waitForTask(id, { timeoutMs: 10_000 })
        assert.equal(t.status, 'finished', JSON.stringify(args))
        const [art] = await c.listArtifacts(id, { nodeId: 'f' })
        assert.deepEqual(art?.meta['merged_from'], ['a'])
      }
    })
  })

  test('every problem of a graph is listed, fn_args ones with the others', async () => {
    await withCoordinator(async (c) => {
      const graph = { nodes: [{ node_id: 'a', type: 'w', fan_in: 'most' }, fnNode('metrics.aggregate', { node_id: 'ghost', mode: 'median' })] }
      await assert.rejects(c.createTask({ graph }), (err: Error & { details: { errors: { path: string }[] } }) => {
        assert.deepEqual(err.details.errors.map((p) => p.path), ['nodes[0].fan_in', 'nodes[1].io.fn_args.mode', 'nodes[1].io.fn_args.node_id'])
        return true
      })
    })
  })

  test('a function given under a built-in name replaces its check too', async () => {
    await withCoordinator(
      async (c) => {
        assert.equal(typeof (await c.createTask({ graph: graphOf('merge.generic', { anything: true }) })), 'string')
        await assert.rejects(c.createTask({ graph: graphOf('metrics.aggregate', {}) }), /needs node_id/)
      },
      { 'merge.generic': async () => ({ stats: { mine: 1 } }) },
    )
  })
})
