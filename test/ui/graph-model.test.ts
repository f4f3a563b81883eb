/** Dashboard graph model: edge kinds (ready vs streaming vs routing) and resubmission input. */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { parseGraph } from 'flowkit'
import { graphJson, graphModel, resubmitInput } from '../../src/ui/graph-model.ts'
import { buildTask } from '../../src/coordinator/submit.ts'
import { demoGraph } from './harness.ts'

const OPTIONS = { coordinatorFns: new Set(['metrics.aggregate']) }

test('graph model: on_batch edges_ex, first_batch children and plain dependencies get their kind; routing targets are edges of their own', () => {
  const g = parseGraph(
    {
      ...demoGraph(),
      nodes: [
        ...(demoGraph()['nodes'] as unknown[]),
        { node_id: 'preview', type: 'stream', depends_on: ['extract'], io: { start_when: 'first_batch' } },
        { node_id: 'alert', type: 'sink', depends_on: ['load'], fan_in: 'any', routing: { on_failure: ['fallback'], on_success: [] } },
        { node_id: 'fallback', type: 'sink' },
      ],
      edges: [['count', 'alert']],
      // A sync edge does not stream, whatever its trigger (it was drawn as streaming).
      edges_ex: [...(demoGraph()['edges_ex'] as unknown[]), { from: 'load', to: 'fallback', mode: 'sync', trigger: 'on_batch' }],
    },
    OPTIONS,
  )
  const m = graphModel(g)
  const kinds = Object.fromEntries(m.edges.map((e) => [`${e.from}->${e.to}`, `${e.kind}/${e.via}`]))
  assert.deepEqual(kinds, {
    'extract->transform': 'on_batch/edges_ex',
    'transform->load': 'ready/depends_on',
    'transform->count': 'ready/depends_on',
    'extract->preview': 'first_batch/depends_on',
    'load->alert': 'ready/depends_on',
    'count->alert': 'ready/edges',
    'load->fallback': 'ready/edges_ex',
    'alert->fallback': 'on_failure/routing',
  })
  const transform = m.nodes.find((n) => n.id === 'transform')
  assert.deepEqual(transform, { id: 'transform', type: 'stream', fan_in: 'all', start_when: 'first_batch', input_adapter: 'pull.from_artifacts', guarded: false })
  assert.equal(m.nodes.find((n) => n.id === 'count')?.fn, 'metrics.aggregate')
})

test('resubmit: a stored graph turned back into JSON parses to the same graph (every node field kept), with params and deadline', () => {
  const raw = {
    schema_version: '1.0',
    nodes: [
      { node_id: 'a', type: 'src', retry_policy: { max: 4, backoff_sec: 0.5, backoff_factor: 2, permanent_on: ['bad'] }, timeout_sec: 30, owner: { team: 'data' } },
      { node_id: 'b', type: 'work', depends_on: ['a'], fan_in: 'count:1', when: { var: 'mode', op: 'eq', value: 'full' }, io: { start_when: 'first_batch', input_inline: { input_adapter: 'pull.from_artifacts', input_args: { from_nodes: ['a'] } } } },
      { node_id: 'c', type: 'work', routing: { on_success: [], on_failure: ['d'] } },
      { node_id: 'd', type: 'sink' },
      { node_id: 'e', type: 'sink' },
    ],
    edges: [['b', 'c']],
    edges_ex: [{ from: 'a', to: 'e', mode: 'sync', trigger: 'on_batch' }],
  }
  const spec = parseGraph(raw, OPTIONS)
  assert.deepEqual(parseGraph(graphJson(spec), OPTIONS), spec)
  const task = buildTask({ graph: raw, params: { day: '2030-01-01' }, deadlineSec: 90 }, { coordinatorFns: new Set(), rejectUnknownInputAdapters: false }, 1_000)
  const input = resubmitInput(task)
  assert.deepEqual(input.params, { day: '2030-01-01' })
  assert.equal(input.deadlineSec, 90)
  assert.equal(input.id, undefined, 'a new task gets a new id')
  assert.deepEqual(parseGraph(input.graph, OPTIONS), task.graph)
})
