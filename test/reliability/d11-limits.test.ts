/**
 * Defect 11 (issue 7): no limits at submission. Graph size (nodes, dependency links), params
 * nesting and size, and retry ranges are now bounded at `createTask` (coordinator config, sane
 * defaults: docs/limits.md) with clear errors; deep or circular params are a validation error
 * naming the node and the path (was a raw RangeError / TypeError); a node reading, through its
 * input adapter, the output of a node that runs after it is refused with the cycle; `edges_ex`
 * typos are refused with a "did you mean" hint. A task of the maximum size is created, read and
 * cancelled (timings are reported, not asserted).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ErrorCode, GraphValidationError, type RoleHandler } from 'flowkit'
import { buildTask } from '../../src/coordinator/submit.ts'
import { SUBMIT_LIMIT_DEFAULTS } from '../../src/graph/limits.ts'
import { startRuntime, type Runtime } from '../helpers/runtime.ts'
import { waitFor } from '../helpers/wait.ts'

const OPTS = { coordinatorFns: new Set<string>(), rejectUnknownInputAdapters: false }

const done: RoleHandler = {
  async processBatch() {
    return { metrics: { count: 1 } }
  },
}

/** Runs until cancelled (cooperative). */
const untilCancelled: RoleHandler = {
  async processBatch(_batch, ctx) {
    await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }))
    return { metrics: {} }
  },
}

async function refused(rt: Runtime, input: Parameters<Runtime['coordinator']['createTask']>[0]): Promise<GraphValidationError> {
  try {
    await rt.coordinator.createTask(input)
  } catch (err) {
    assert.ok(err instanceof GraphValidationError, `expected a GraphValidationError, got ${String(err)}`)
    return err
  }
  assert.fail('expected createTask to refuse the graph')
}

function refusedBuild(input: Parameters<typeof buildTask>[0], limits: Record<string, number> = {}): GraphValidationError {
  try {
    buildTask(input, { ...OPTS, limits }, 0)
  } catch (err) {
    assert.ok(err instanceof GraphValidationError, `expected a GraphValidationError, got ${String(err)}`)
    return err
  }
  assert.fail('expected buildTask to refuse the graph')
}

const wide = (n: number, type = 'step') => Array.from({ length: n }, (_, i) => ({ node_id: `n${i}`, type }))

function nested(levels: number): Record<string, unknown> {
  const root: Record<string, unknown> = {}
  let cur = root
  for (let i = 1; i < levels; i++) {
    const next: Record<string, unknown> = {}
    cur['a'] = next
    cur = next
  }
  return root
}

test('defect 11: the default limits are enforced at createTask (nodes, links, retry ranges)', async () => {
  assert.equal(SUBMIT_LIMIT_DEFAULTS.maxNodes, 5000)
  const rt = await startRuntime({ handlers: { step: done } })
  try {
    const nodes = await refused(rt, { graph: { nodes: wide(5001) } })
    assert.equal(nodes.code, ErrorCode.GraphLimit)
    assert.equal(nodes.path, 'nodes')
    assert.match(nodes.message, /the graph has 5,001 nodes, over the limit of 5,000 \(coordinator config maxNodes\)/)

    // 501 nodes with 100 parents each: 50,100 links
    const parents = wide(100).map((n) => n.node_id)
    const links = await refused(rt, {
      graph: { nodes: [...wide(100), ...Array.from({ length: 501 }, (_, i) => ({ node_id: `c${i}`, type: 'step', depends_on: parents }))] },
    })
    assert.equal(links.code, ErrorCode.GraphLimit)
    assert.match(links.message, /the graph has 50,100 dependency links \(depends_on entries, edges, edges_ex and routing targets together\), over the limit of 50,000 \(coordinator config maxEdges\)/)

    const max = await refused(rt, { graph: { nodes: [{ node_id: 'r', type: 'step', retry_policy: { max: 101 } }] } })
    assert.equal(max.code, ErrorCode.GraphLimit)
    assert.equal(max.path, 'nodes[0].retry_policy.max')
    assert.match(max.message, /retry_policy.max of node "r" is 101 attempts, over the limit of 100 \(coordinator config maxRetryAttempts\)/)

    const backoff = await refused(rt, { graph: { nodes: [{ node_id: 'r', type: 'step', retry_policy: { backoff_sec: 86_400.5 } }] } })
    assert.equal(backoff.path, 'nodes[0].retry_policy.backoff_sec')
    assert.match(backoff.message, /backoff_sec of node "r" is 86,400.5 seconds, over the limit of 86,400 \(coordinator config maxRetryBackoffSec\)/)

    // at the limits: accepted
    const ok = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'r', type: 'step', retry_policy: { max: 100, backoff_sec: 86_400 } }] } })
    assert.equal((await rt.coordinator.waitForTask(ok, { timeoutMs: 30_000 })).status, 'finished')
  } finally {
    await rt.stop()
  }
})

test('defect 11: deep or circular params are a validation error naming the node and the path, not a RangeError', async () => {
  const rt = await startRuntime({ handlers: { step: done } })
  try {
    const deepParams = await refused(rt, { params: nested(10_000), graph: { nodes: [{ node_id: 'a', type: 'step' }] } })
    assert.equal(deepParams.code, ErrorCode.GraphLimit)
    assert.equal(deepParams.path, `params${'.a'.repeat(32)}`)
    assert.match(deepParams.message, /task params: value nested deeper than 32 levels \(coordinator config maxParamsDepth\)/)

    const deepIo = await refused(rt, { graph: { nodes: [{ node_id: 'a', type: 'step' }, { node_id: 'deep', type: 'step', io: { input_inline: nested(10_000) } }] } })
    assert.equal(deepIo.code, ErrorCode.GraphLimit)
    assert.ok(deepIo.path.startsWith('nodes[1].io.input_inline.a.a'), deepIo.path)
    assert.match(deepIo.message, /node "deep": value nested deeper than 32 levels/)

    const loop: Record<string, unknown> = { x: 1 }
    loop['self'] = { back: loop }
    const circularParams = await refused(rt, { params: loop, graph: { nodes: [{ node_id: 'a', type: 'step' }] } })
    assert.equal(circularParams.code, ErrorCode.BadField)
    assert.equal(circularParams.path, 'params.self.back')
    assert.match(circularParams.message, /task params: circular reference/)

    const circularArgs = await refused(rt, { graph: { nodes: [{ node_id: 'loopy', type: 'step', io: { input_inline: { input_args: loop } } }] } })
    assert.equal(circularArgs.path, 'nodes[0].io.input_inline.input_args.self.back')
    assert.match(circularArgs.message, /node "loopy": circular reference/)

    // 32 levels of params are fine
    const ok = await rt.coordinator.createTask({ params: nested(32), graph: { nodes: [{ node_id: 'a', type: 'step' }] } })
    assert.equal((await rt.coordinator.waitForTask(ok, { timeoutMs: 30_000 })).status, 'finished')
  } finally {
    await rt.stop()
  }
})

test('defect 11: a node whose input from_nodes names a node that runs after it is refused with the cycle', async () => {
  const rt = await startRuntime({ handlers: { step: done } })
  try {
    const err = await refused(rt, {
      graph: {
        nodes: [
          { node_id: 'a', type: 'step', io: { input_inline: { input_adapter: 'pull.from_artifacts', input_args: { from_nodes: ['c'] } } } },
          { node_id: 'b', type: 'step', depends_on: ['a'] },
          { node_id: 'c', type: 'step', depends_on: ['b'] },
        ],
      },
    })
    assert.equal(err.code, ErrorCode.Cycle)
    assert.equal(err.path, 'nodes[0].io.input_inline.input_args.from_nodes[0]')
    assert.deepEqual(err.details['cycle'], ['a', 'b', 'c', 'a'])
    assert.match(err.message, /dependency cycle: a -> b -> c -> a \(node "a" reads the output of "c" through from_nodes/)

    // fn_args.from_node (the alias) of a coordinator function counts too
    const fn = await refused(rt, {
      graph: {
        nodes: [
          { node_id: 'merge', type: 'coordinator_fn', io: { fn: 'merge.generic', fn_args: { from_node: 'late' } } },
          { node_id: 'late', type: 'step', depends_on: ['merge'] },
        ],
      },
    })
    assert.equal(fn.code, ErrorCode.Cycle)
    assert.deepEqual(fn.details['cycle'], ['merge', 'late', 'merge'])

    // reading an upstream node (or one with no order relation) is fine
    const ok = await rt.coordinator.createTask({
      graph: {
        nodes: [
          { node_id: 'a', type: 'step' },
          { node_id: 'b', type: 'step', depends_on: ['a'], io: { input_inline: { input_adapter: 'pull.from_artifacts', input_args: { from_nodes: ['a'] } } } },
        ],
      },
    })
    assert.equal((await rt.coordinator.waitForTask(ok, { timeoutMs: 30_000 })).status, 'finished')
  } finally {
    await rt.stop()
  }
})

test('defect 11: edges_ex mode typo is rejected (unknown values and keys, with a did-you-mean hint)', async () => {
  const rt = await startRuntime({ handlers: { step: done } })
  try {
    const nodes = [
      { node_id: 'src', type: 'step' },
      { node_id: 'dst', type: 'step' },
    ]
    const mode = await refused(rt, { graph: { nodes, edges_ex: [{ from: 'src', to: 'dst', mode: 'asnyc', trigger: 'on_batch' }] } })
    assert.equal(mode.code, ErrorCode.BadField)
    assert.equal(mode.path, 'edges_ex[0].mode')
    assert.match(mode.message, /unknown mode "asnyc" of edges_ex edge "src" -> "dst" \(did you mean "async"\?\); expected "async" or "sync"/)

    const trigger = await refused(rt, { graph: { nodes, edges_ex: [{ from: 'src', to: 'dst', mode: 'async', trigger: 'on_bacth' }] } })
    assert.equal(trigger.path, 'edges_ex[0].trigger')
    assert.match(trigger.message, /unknown trigger "on_bacth" .*\(did you mean "on_batch"\?\); expected "on_batch" or "on_done"/)

    const key = await refused(rt, { graph: { nodes, edges_ex: [{ from: 'src', to: 'dst', mode: 'async', triger: 'on_batch' }] } })
    assert.equal(key.path, 'edges_ex[0].triger')
    assert.match(key.message, /unknown field "triger" in edges_ex edge "src" -> "dst" \(did you mean "trigger"\?\); allowed fields: "from", "to", "mode", "trigger"/)

    // the same near misses on a node and its io and retry_policy
    const dep = await refused(rt, { graph: { nodes: [{ node_id: 'a', type: 'step' }, { node_id: 'b', type: 'step', depend_on: ['a'] }] } })
    assert.equal(dep.path, 'nodes[1].depend_on')
    assert.match(dep.message, /\(did you mean "depends_on"\?\)/)
    const io = await refused(rt, { graph: { nodes: [{ node_id: 'a', type: 'step', io: { start_wen: 'first_batch' } }] } })
    assert.match(io.message, /unknown io field "start_wen" on node "a" \(did you mean "start_when"\?\)/)
    const retry = await refused(rt, { graph: { nodes: [{ node_id: 'a', type: 'step', retry_policy: { backoff: 2 } }] } })
    assert.match(retry.message, /unknown field "backoff" in retry_policy of node "a" \(did you mean "backoff_sec"\?\)/)

    // valid spellings still run
    const ok = await rt.coordinator.createTask({ graph: { nodes, edges_ex: [{ from: 'src', to: 'dst', mode: 'async', trigger: 'on_batch' }] } })
    assert.equal((await rt.coordinator.waitForTask(ok, { timeoutMs: 30_000 })).status, 'finished')
  } finally {
    await rt.stop()
  }
})

test('defect 11: every limit is configurable (limits given to buildTask, as the coordinator config)', () => {
  const nodes = refusedBuild({ graph: { nodes: wide(11) } }, { maxNodes: 10 })
  assert.match(nodes.message, /11 nodes, over the limit of 10 \(coordinator config maxNodes\)/)
  const links = refusedBuild({ graph: { nodes: wide(3), edges: [['n0', 'n1'], ['n1', 'n2']], edges_ex: [{ from: 'n0', to: 'n2' }] } }, { maxEdges: 2 })
  assert.match(links.message, /3 dependency links .*over the limit of 2 \(coordinator config maxEdges\)/)
  const depth = refusedBuild({ params: nested(5), graph: { nodes: wide(1) } }, { maxParamsDepth: 4 })
  assert.equal(depth.path, 'params.a.a.a.a')
  const retry = refusedBuild({ graph: { nodes: [{ node_id: 'x', type: 'step', retry_policy: { max: 6, backoff_sec: 61 } }] } }, { maxRetryAttempts: 5, maxRetryBackoffSec: 60 })
  assert.equal((retry.details['errors'] as unknown[]).length, 2)
  assert.throws(() => buildTask({ graph: { nodes: wide(1) } }, { ...OPTS, limits: { maxNodes: 0 } }, 0), (err: unknown) => err instanceof Error && /"maxNodes" must be a number > 0/.test(err.message))
  // raised limits let a bigger graph through
  buildTask({ graph: { nodes: wide(6000) } }, { ...OPTS, limits: { maxNodes: 6000 } }, 0)
})

test(
  'defect 11: coordinator config limits reach createTask',
  async () => {
    const rt = await startRuntime({ handlers: { step: done }, coordinator: { maxNodes: 3 } })
    try {
      const err = await refused(rt, { graph: { nodes: wide(4) } })
      assert.match(err.message, /over the limit of 3 \(coordinator config maxNodes\)/)
    } finally {
      await rt.stop()
    }
  },
)

test('defect 11: a task of the maximum size (5,000 nodes) is created, read and cancelled', async (t) => {
  const n = SUBMIT_LIMIT_DEFAULTS.maxNodes
  let running = 0
  const rt = await startRuntime({
    handlers: {
      source: {
        async processBatch(batch, ctx) {
          running++
          return untilCancelled.processBatch(batch, ctx)
        },
      },
      step: done,
    },
    worker: { concurrency: 4 },
  })
  try {
    // A source that runs until cancelled, and the rest of the maximum graph behind it.
    const nodes = [{ node_id: 'n0', type: 'source' }, ...Array.from({ length: n - 1 }, (_, i) => ({ node_id: `n${i + 1}`, type: 'step', depends_on: ['n0'] }))]
    let t0 = performance.now()
    const id = await rt.coordinator.createTask({ graph: { nodes } })
    const createMs = performance.now() - t0
    t0 = performance.now()
    const view = await rt.coordinator.getTask(id)
    const readMs = performance.now() - t0
    assert.equal(view?.nodes.length, n)
    await waitFor(() => running > 0, { timeoutMs: 60_000, message: 'the source runs' })
    t0 = performance.now()
    assert.equal(await rt.coordinator.cancelTask(id), true)
    const end = await rt.coordinator.waitForTask(id, { timeoutMs: 180_000 })
    const cancelMs = performance.now() - t0
    assert.equal(end.status, 'cancelled')
    t0 = performance.now()
    const stored = await rt.store.getTask(id)
    const storeReadMs = performance.now() - t0
    assert.equal(Object.keys(stored?.nodes ?? {}).length, n)
    t.diagnostic(`${n} nodes: createTask ${createMs.toFixed(0)} ms, getTask ${readMs.toFixed(0)} ms, cancel to terminal ${cancelMs.toFixed(0)} ms, store read ${storeReadMs.toFixed(0)} ms`)
  } finally {
    await rt.stop()
  }
})
