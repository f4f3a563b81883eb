/**
 * Input adapters end to end on the memory runtime (SCENARIOS T3: S-048…S-066): which input the
 * worker streams, how bad adapters and bad args fail, rechunk determinism, and per-attempt claims.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import {
  ErrorCode,
  MemoryBus,
  MemoryLogger,
  Worker,
  protocol,
  type Batch,
  type RoleHandler,
  type RunContext,
  type TaskView,
} from 'flowkit'
import { startRuntime } from '../helpers/runtime.ts'
import { waitFor } from '../helpers/wait.ts'
import { makeNodeSpec, makeNodeState, makeTaskDoc } from '../helpers/fixtures.ts'

const nodeOf = (t: TaskView | null, id: string) => t!.nodes.find((n) => n.node_id === id)!

const range = (from: number, n: number): number[] => Array.from({ length: n }, (_, i) => from + i)

/**
 * A source of `values` in batches of `size` (uids s0, s1, ...). Each batch's partial artifact meta
 * is `metaOf(items)` (default `{ items }`); metrics are `{ count, sum }`.
 */
function numbers(values: number[], size: number, metaOf: (items: number[]) => Record<string, unknown> = (items) => ({ items })): RoleHandler {
  return {
    iterBatches() {
      const out: Batch[] = []
      for (let i = 0, b = 0; i < values.length; i += size, b++) out.push({ batch_uid: `s${b}`, payload: { items: values.slice(i, i + size) } })
      return out
    },
    async processBatch(batch) {
      const items = batch.payload['items'] as number[]
      return { meta: metaOf(items), metrics: { count: items.length, sum: items.reduce((a, b) => a + b, 0) } }
    },
  }
}

/** What a consumer saw: one entry per processBatch call. */
interface Seen {
  epoch: number
  uid: string
  payload: Record<string, unknown>
}

/** The items of a batch: a rechunk batch carries `items`; a pulled batch carries the upstream `meta`. */
function itemsOf(payload: Record<string, unknown>): unknown[] {
  if (Array.isArray(payload['items'])) return payload['items']
  const meta = payload['meta'] as { items?: unknown } | undefined
  return Array.isArray(meta?.items) ? meta.items : []
}

interface ConsumerOptions {
  /** What loadInput returns (loadInput is absent when not given). */
  load?: (inputRef: Record<string, unknown> | null, inputInline: Record<string, unknown> | null) => unknown
  /** Batches the handler's own iterBatches yields. */
  own?: Batch[]
  /** Called before each batch is processed; may throw to fail it. */
  before?: (batch: Batch, ctx: RunContext, seen: Seen[]) => void
}

/** A consumer that records every call and every batch, and counts the items it gets. */
function consumer(options: ConsumerOptions = {}) {
  const log = { loadInput: 0, iterBatches: 0, iterArg: undefined as unknown, seen: [] as Seen[] }
  const handler: RoleHandler = {
    iterBatches(loaded) {
      log.iterBatches++
      log.iterArg = loaded
      return options.own ?? []
    },
    async processBatch(batch, ctx) {
      options.before?.(batch, ctx, log.seen)
      log.seen.push({ epoch: ctx.attemptEpoch, uid: batch.batch_uid as string, payload: batch.payload })
      const items = itemsOf(batch.payload)
      return { metrics: { count: items.length }, meta: { items } }
    },
  }
  const load = options.load
  if (load) {
    handler.loadInput = async (ref, inline) => {
      log.loadInput++
      return load(ref, inline)
    }
  }
  return { handler, log }
}

const pull = (args: Record<string, unknown>) => ({ input_adapter: 'pull.from_artifacts', input_args: { poll_ms: 10, ...args } })
const rechunk = (args: Record<string, unknown>) => ({ input_adapter: 'pull.from_artifacts.rechunk:size', input_args: { poll_ms: 10, ...args } })

/** source → c, where c (type `consumer`) reads with `inline` (or with nothing in the command). */
function pipeline(inline: Record<string, unknown> | null, extra: Record<string, unknown> = {}) {
  return {
    nodes: [
      { node_id: 'source', type: 'source' },
      { node_id: 'c', type: 'consumer', depends_on: ['source'], ...(inline ? { io: { input_inline: inline } } : {}), ...extra },
    ],
  }
}

/** Status events a worker produced for one task, decoded, in topic order. */
function eventsOf(bus: MemoryBus, role: string, taskId: string): protocol.Envelope[] {
  return bus
    .records(`status.${role}.v1`)
    .map((r) => JSON.parse(r.value) as protocol.Envelope)
    .filter((e) => e.task_id === taskId)
}

describe('input adapters', () => {
  for (const shape of ['top-level', 'input_inline'] as const) {
    test(`S-048 with no adapter in the command, a known adapter suggested by loadInput is used (${shape} suggestion)`, async () => {
      const suggestion = pull({ from_nodes: ['source'] })
      const c = consumer({
        load: () => (shape === 'top-level' ? { ...suggestion } : { input_inline: { ...suggestion } }),
        own: [{ batch_uid: 'own', payload: { items: ['not', 'from', 'upstream'] } }],
      })
      const rt = await startRuntime({ handlers: { source: numbers(range(0, 5), 2), consumer: c.handler } })
      try {
        const id = await rt.coordinator.createTask({ graph: pipeline(null) })
        const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10000 })
        assert.equal(t.status, 'finished')
        assert.equal(c.log.loadInput, 1)
        assert.equal(c.log.iterBatches, 0, "the handler's own iterBatches is not used when an adapter is suggested")
        assert.deepEqual(
          c.log.seen.map((s) => [s.uid, s.payload['from_node'], itemsOf(s.payload)]),
          [
            ['source:s0', 'source', [0, 1]],
            ['source:s1', 'source', [2, 3]],
            ['source:s2', 'source', [4]],
          ],
        )
        assert.equal(nodeOf(t, 'c').stats['count'], 5)
      } finally {
        await rt.stop()
      }
    })
  }

  test("S-049 with no adapter in the command and none suggested, the handler's own iterBatches is used", async () => {
    const loaded = { rows: [1, 2, 3] }
    const c = consumer({
      load: () => loaded,
      own: [
        { batch_uid: 'o1', payload: { items: [1, 2] } },
        { batch_uid: 'o2', payload: { items: [3] } },
      ],
    })
    const rt = await startRuntime({ handlers: { source: numbers(range(0, 5), 2), consumer: c.handler } })
    try {
      const id = await rt.coordinator.createTask({ graph: pipeline(null, { io: { input_ref: { uri: 'mem://rows' } } }) })
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10000 })
      assert.equal(t.status, 'finished')
      assert.equal(c.log.loadInput, 1)
      assert.equal(c.log.iterBatches, 1)
      assert.equal(c.log.iterArg, loaded, 'iterBatches gets what loadInput returned')
      assert.deepEqual(
        c.log.seen.map((s) => [s.uid, itemsOf(s.payload)]),
        [
          ['o1', [1, 2]],
          ['o2', [3]],
        ],
        'only the handler-made batches, nothing pulled from upstream',
      )
      assert.equal(nodeOf(t, 'c').stats['count'], 3)
    } finally {
      await rt.stop()
    }
  })

  for (const adapter of ['pull.from_nowhere', 42] as const) {
    test(`S-050/S-056 an unknown adapter (${JSON.stringify(adapter)}) in the command fails the node permanently with bad_input_adapter before any batch`, async () => {
      const bus = new MemoryBus()
      const c = consumer({ own: [{ batch_uid: 'own', payload: { items: [1] } }] })
      const rt = await startRuntime({ bus, handlers: { consumer: c.handler } })
      try {
        // A Python coordinator may send what our graph validator would refuse: inject its command,
        // after writing its task document as a coordinator does before it sends.
        const taskId = `py-task-${typeof adapter}`
        await rt.store.createTask(
          makeTaskDoc({
            id: taskId,
            status: 'running',
            graph: { schema_version: '1.0', nodes: [makeNodeSpec('n', 'consumer')], edges: [], edges_ex: [] },
            nodes: { n: makeNodeState('n', 'consumer', { status: 'running', attempt_epoch: 1 }) },
          }),
        )
        const env = protocol.makeEnvelope({
          msg_type: 'cmd',
          role: 'coordinator',
          task_id: taskId,
          node_id: 'n',
          step_type: 'consumer',
          attempt_epoch: 1,
          ts_ms: Date.now(),
          dedup_id: `start-${taskId}`,
          payload: {
            cmd: 'TASK_START',
            input_ref: null,
            input_inline: { input_adapter: adapter, input_args: { from_nodes: ['upstream'], poll_ms: 10 } },
            batching: null,
            cancel_token: 'tok',
          },
        })
        await bus.produce([{ topic: 'cmd.consumer.v1', key: `${taskId}:n`, value: protocol.encode(env) }])
        await waitFor(() => eventsOf(bus, 'consumer', taskId).some((e) => e.payload['kind'] === 'TASK_FAILED'), {
          message: 'the worker never reported TASK_FAILED',
        })
        const events = eventsOf(bus, 'consumer', taskId)
        assert.deepEqual(
          events.map((e) => e.payload['kind']),
          ['TASK_ACCEPTED', 'TASK_FAILED'],
          'no batch event before the failure',
        )
        const failed = events[1]!
        assert.equal(failed.attempt_epoch, 1)
        assert.equal(failed.payload['reason_code'], 'bad_input_adapter')
        assert.equal(failed.payload['permanent'], true)
        assert.equal(c.log.iterBatches, 0, 'iterBatches is never called')
        assert.equal(c.log.seen.length, 0, 'no batch is processed')
      } finally {
        await rt.stop()
      }
    })
  }

  test('S-050/S-056 a graph naming an unknown input adapter runs, and the worker fails that node permanently (bad_input_adapter) before any batch', async () => {
    const c = consumer({ own: [{ batch_uid: 'own', payload: { items: [1] } }] })
    const rt = await startRuntime({ handlers: { source: numbers(range(0, 4), 2), consumer: c.handler } })
    try {
      const id = await rt.coordinator.createTask({ graph: pipeline({ input_adapter: 'pull.from_nowhere', input_args: { from_nodes: ['source'] } }) })
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10000 })
      assert.equal(t.status, 'failed')
      const n = t.nodes.find((x) => x.node_id === 'c')!
      assert.equal(n.status, 'failed')
      assert.equal(n.attempt_epoch, 1, 'a permanent failure: no retry')
      assert.equal(n.last_error?.reason_code, 'bad_input_adapter')
      assert.equal(n.last_error?.permanent, true)
      assert.equal(c.log.iterBatches, 0, 'iterBatches is never called')
      assert.equal(c.log.seen.length, 0, 'no batch is processed')
    } finally {
      await rt.stop()
    }
  })

  test('S-050/S-056 with rejectUnknownInputAdapters, createTask refuses such a graph (GRAPH_UNKNOWN_INPUT_ADAPTER)', async () => {
    const rt = await startRuntime({ coordinator: { rejectUnknownInputAdapters: true } })
    try {
      await assert.rejects(
        rt.coordinator.createTask({ graph: pipeline({ input_adapter: 'pull.from_nowhere', input_args: { from_nodes: ['source'] } }) }),
        (err: unknown) => {
          const e = err as { code?: unknown; details?: { path?: unknown } }
          assert.equal(e.code, ErrorCode.UnknownInputAdapter)
          assert.equal(e.code, 'GRAPH_UNKNOWN_INPUT_ADAPTER')
          assert.match(String(e.details?.path), /input_inline\.input_adapter/)
          return true
        },
      )
    } finally {
      await rt.stop()
    }
  })

  test('S-051 from_node (one string) is an alias of from_nodes: [one]', async () => {
    const results: unknown[] = []
    for (const args of [{ from_node: 'source' }, { from_nodes: ['source'] }]) {
      const c = consumer()
      const rt = await startRuntime({ handlers: { source: numbers(range(10, 7), 3), consumer: c.handler } })
      try {
        const id = await rt.coordinator.createTask({ graph: pipeline(pull(args)) })
        const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10000 })
        assert.equal(t.status, 'finished', JSON.stringify(args))
        assert.equal(nodeOf(t, 'c').stats['count'], 7)
        results.push(c.log.seen.map((s) => [s.uid, s.payload['from_node'], itemsOf(s.payload)]))
      } finally {
        await rt.stop()
      }
    }
    assert.deepEqual(results[0], [
      ['source:s0', 'source', [10, 11, 12]],
      ['source:s1', 'source', [13, 14, 15]],
      ['source:s2', 'source', [16]],
    ])
    assert.deepEqual(results[0], results[1], 'from_node and from_nodes read the same input')
  })

  const suggestions: [string, Record<string, unknown>][] = [
    ['a different adapter', rechunk({ from_nodes: ['other'], size: 2, meta_list_key: 'items' })],
    ['a bogus adapter', { input_adapter: 'pull.bogus', input_args: { from_nodes: ['other'] } }],
    ['the same adapter with different args', pull({ from_nodes: ['other'] })],
  ]
  for (const [label, suggestion] of suggestions) {
    test(`S-052/S-062 the adapter named by the command wins over ${label} suggested by the handler, and the suggestion is logged as ignored`, async () => {
      const logger = new MemoryLogger()
      const c = consumer({ load: () => ({ ...suggestion }) })
      const rt = await startRuntime({ handlers: { source: numbers(range(0, 4), 2), other: numbers(range(100, 4), 2) } })
      const w = new Worker({ bus: rt.bus, store: rt.store, handlers: { consumer: c.handler }, logger, config: { ...rt.workerBase } })
      rt.workers.push(w)
      try {
        await w.start()
        const graph = {
          nodes: [
            { node_id: 'source', type: 'source' },
            { node_id: 'other', type: 'other' },
            { node_id: 'c', type: 'consumer', depends_on: ['source', 'other'], io: { input_inline: pull({ from_nodes: ['source'] }) } },
          ],
        }
        const id = await rt.coordinator.createTask({ graph })
        const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10000 })
        assert.equal(t.status, 'finished')
        assert.deepEqual(
          c.log.seen.map((s) => [s.uid, itemsOf(s.payload)]),
          [
            ['source:s0', [0, 1]],
            ['source:s1', [2, 3]],
          ],
          "the command's input, not the suggested one",
        )
        assert.equal(c.log.iterBatches, 0)
        assert.equal(nodeOf(t, 'c').stats['count'], 4)
        const ignored = logger.records.filter((r) => r.event === 'worker.adapter_suggestion_ignored' && r.fields['task_id'] === id)
        assert.equal(ignored.length, 1, 'the ignored suggestion is logged once')
        assert.equal(ignored[0]!.fields['node_id'], 'c')
        assert.equal(ignored[0]!.fields['suggested'], suggestion['input_adapter'])
        assert.equal(ignored[0]!.fields['chosen'], 'pull.from_artifacts')
      } finally {
        await rt.stop()
      }
    })
  }

  test('S-052/S-062 a suggestion equal to the command (same adapter, same args) is not reported as ignored', async () => {
    const logger = new MemoryLogger()
    const inline = pull({ from_nodes: ['source'] })
    const c = consumer({ load: () => structuredClone(inline) })
    const rt = await startRuntime({ handlers: { source: numbers(range(0, 3), 2) } })
    const w = new Worker({ bus: rt.bus, store: rt.store, handlers: { consumer: c.handler }, logger, config: { ...rt.workerBase } })
    rt.workers.push(w)
    try {
      await w.start()
      const id = await rt.coordinator.createTask({ graph: pipeline(inline) })
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10000 })
      assert.equal(t.status, 'finished')
      assert.equal(nodeOf(t, 'c').stats['count'], 3)
      assert.deepEqual(logger.events().filter((e) => e === 'worker.adapter_suggestion_ignored'), [])
    } finally {
      await rt.stop()
    }
  })

  const emptyReaders: [string, Record<string, unknown>][] = [
    ['pull.from_artifacts', pull({ from_nodes: ['source'] })],
    ['rechunk with meta_list_key', rechunk({ from_nodes: ['source'], size: 3, meta_list_key: 'items' })],
    ['rechunk without meta_list_key', rechunk({ from_nodes: ['source'], size: 3 })],
  ]
  for (const [label, inline] of emptyReaders) {
    test(`S-053/S-055 an empty upstream is not an error: the consumer finishes with a count of 0 (${label})`, async () => {
      const c = consumer()
      // The upstream yields no batch at all: no partial artifact, only its complete marker.
      const rt = await startRuntime({ handlers: { source: numbers([], 4), consumer: c.handler } })
      try {
        const id = await rt.coordinator.createTask({ graph: pipeline(inline, { retry_policy: { max: 1, backoff_sec: 0 } }) })
        const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10000 })
        assert.equal(t.status, 'finished')
        const n = nodeOf(t, 'c')
        assert.equal(n.status, 'finished')
        assert.equal(n.attempt_epoch, 1)
        assert.equal(n.last_error, null)
        assert.equal(n.stats['count'] ?? 0, 0, 'a count of 0')
        assert.deepEqual(c.log.seen, [], 'no batch reaches the consumer')
        const arts = await rt.coordinator.listArtifacts(id, { nodeId: 'c' })
        assert.deepEqual(
          arts.map((a) => a.status),
          ['complete'],
          'only the complete marker, no partial',
        )
      } finally {
        await rt.stop()
      }
    })
  }

  test('S-053/S-055 upstream batches whose meta_list_key lists are empty rechunk to nothing: count 0', async () => {
    const c = consumer()
    const rt = await startRuntime({ handlers: { source: numbers(range(0, 4), 2, () => ({ items: [] })), consumer: c.handler } })
    try {
      const id = await rt.coordinator.createTask({ graph: pipeline(rechunk({ from_nodes: ['source'], size: 3, meta_list_key: 'items' })) })
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10000 })
      assert.equal(t.status, 'finished')
      assert.equal(nodeOf(t, 'c').stats['count'] ?? 0, 0)
      assert.equal(nodeOf(t, 'c').last_error, null)
      assert.deepEqual(c.log.seen, [])
    } finally {
      await rt.stop()
    }
  })

  test('S-053/S-045 a coordinator function upstream is read as one item (its complete artifact is its output); a worker upstream is read by its partials only', async () => {
    const c = consumer()
    const rt = await startRuntime({ handlers: { source: numbers(range(0, 5), 2), consumer: c.handler } })
    try {
      const graph = {
        nodes: [
          { node_id: 'source', type: 'source' },
          { node_id: 'm', type: 'coordinator_fn', depends_on: ['source'], io: { fn: 'merge.generic', fn_args: { from_nodes: ['source'], target: { key: 'all' } } } },
          { node_id: 'c', type: 'consumer', depends_on: ['m', 'source'], io: { input_inline: pull({ from_nodes: ['m', 'source'] }) } },
        ],
      }
      const id = await rt.coordinator.createTask({ graph })
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10000 })
      assert.equal(t.status, 'finished')
      const fromM = c.log.seen.filter((s) => s.payload['from_node'] === 'm')
      assert.equal(fromM.length, 1, "merge's output is one item")
      assert.equal(fromM[0]!.uid, 'm:complete')
      const merged = (fromM[0]!.payload['meta'] as { all: unknown[] }).all
      assert.equal(merged.length, 3, 'it carries the 3 merged source batches')
      assert.deepEqual(
        c.log.seen.filter((s) => s.payload['from_node'] === 'source').map((s) => s.uid),
        ['source:s0', 'source:s1', 'source:s2'],
        "the source's complete marker is not an item",
      )
    } finally {
      await rt.stop()
    }
  })

  const badArgs: [string, Record<string, unknown>][] = [
    ['S-054 missing size', { from_nodes: ['source'], meta_list_key: 'items' }],
    ['S-057 non-integer size 2.5', { from_nodes: ['source'], size: 2.5, meta_list_key: 'items' }],
    ['S-057 string size "3"', { from_nodes: ['source'], size: '3', meta_list_key: 'items' }],
    ['S-058 size 0', { from_nodes: ['source'], size: 0, meta_list_key: 'items' }],
    ['S-058 negative size', { from_nodes: ['source'], size: -2, meta_list_key: 'items' }],
    ['S-054 non-string meta_list_key 42', { from_nodes: ['source'], size: 2, meta_list_key: 42 }],
    ['S-054 non-string meta_list_key ["items"]', { from_nodes: ['source'], size: 2, meta_list_key: ['items'] }],
  ]
  for (const [label, args] of badArgs) {
    test(`S-054/S-057/S-058 rechunk with ${label} fails permanently with bad_input_args before any batch`, async () => {
      const bus = new MemoryBus()
      const c = consumer({ own: [{ batch_uid: 'own', payload: { items: [1] } }] })
      const rt = await startRuntime({ bus, handlers: { source: numbers(range(0, 4), 2), consumer: c.handler } })
      try {
        const inline = { input_adapter: 'pull.from_artifacts.rechunk:size', input_args: { poll_ms: 10, ...args } }
        // Retries are allowed, so only a permanent failure ends the task at epoch 1.
        const id = await rt.coordinator.createTask({ graph: pipeline(inline, { retry_policy: { max: 3, backoff_sec: 0 } }) })
        const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10000 })
        assert.equal(t.status, 'failed')
        const n = nodeOf(t, 'c')
        assert.equal(n.status, 'failed')
        assert.equal(n.attempt_epoch, 1, 'not retried')
        assert.equal(n.last_error?.reason_code, 'bad_input_args')
        assert.equal(n.last_error?.permanent, true)
        assert.equal(c.log.iterBatches, 0)
        assert.deepEqual(c.log.seen, [])
        assert.deepEqual(
          eventsOf(bus, 'consumer', id).map((e) => e.payload['kind']),
          ['TASK_ACCEPTED', 'TASK_FAILED'],
          'no batch event before the failure',
        )
      } finally {
        await rt.stop()
      }
    })
  }

  test('S-059/S-065 rechunk with meta_list_key slices that list into chunks of size; chunk ids are stable across runs', async () => {
    const c = consumer()
    // Metas carry a second list ("tags") that must not be touched: only meta_list_key is read.
    const src = numbers(range(0, 11), 4, (items) => ({ items, tags: items.map((i) => `t${i}`) }))
    const rt = await startRuntime({ handlers: { source: src, consumer: c.handler } })
    try {
      const runs: unknown[] = []
      for (let run = 0; run < 2; run++) {
        const id = await rt.coordinator.createTask({ graph: pipeline(rechunk({ from_nodes: ['source'], size: 3, meta_list_key: 'items' })) })
        const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10000 })
        assert.equal(t.status, 'finished')
        assert.equal(nodeOf(t, 'c').stats['count'], 11)
        const chunks = (await rt.coordinator.listArtifacts(id, { nodeId: 'c' }))
          .filter((a) => a.status === 'partial')
          .map((a) => [a.batch_uid, a.meta['items']])
          .sort((a, b) => String(a[0]).localeCompare(String(b[0])))
        runs.push(chunks)
      }
      assert.deepEqual(runs[0], [
        ['c:chunk-0', [0, 1, 2]],
        ['c:chunk-1', [3, 4, 5]],
        ['c:chunk-2', [6, 7, 8]],
        ['c:chunk-3', [9, 10]],
      ])
      assert.deepEqual(runs[1], runs[0], 'the same chunk ids hold the same items in both runs')
      assert.deepEqual(
        c.log.seen.map((s) => s.payload['size']),
        [3, 3, 3, 2, 3, 3, 3, 2],
      )
    } finally {
      await rt.stop()
    }
  })

  test('S-060/S-066 rechunk without meta_list_key takes each upstream meta as one item and guesses no domain key', async () => {
    const c = consumer()
    const rt = await startRuntime({ handlers: { source: numbers(range(0, 11), 4), consumer: c.handler } })
    try {
      const id = await rt.coordinator.createTask({ graph: pipeline(rechunk({ from_nodes: ['source'], size: 2 })) })
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10000 })
      assert.equal(t.status, 'finished')
      // The metas have an "items" list, yet without meta_list_key each meta is one item.
      assert.deepEqual(
        c.log.seen.map((s) => [s.uid, s.payload['items']]),
        [
          ['c:chunk-0', [{ items: [0, 1, 2, 3] }, { items: [4, 5, 6, 7] }]],
          ['c:chunk-1', [{ items: [8, 9, 10] }]],
        ],
      )
    } finally {
      await rt.stop()
    }
  })

  test('S-066 a meta_list_key absent from the metas yields no items: no other list is guessed', async () => {
    const c = consumer()
    const rt = await startRuntime({ handlers: { source: numbers(range(0, 6), 3, (items) => ({ items, rows: items })), consumer: c.handler } })
    try {
      const id = await rt.coordinator.createTask({ graph: pipeline(rechunk({ from_nodes: ['source'], size: 2, meta_list_key: 'records' })) })
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10000 })
      assert.equal(t.status, 'finished')
      assert.deepEqual(c.log.seen, [])
      assert.equal(nodeOf(t, 'c').stats['count'] ?? 0, 0)
    } finally {
      await rt.stop()
    }
  })

  test('S-061 with strictInputAdapters, rechunk without meta_list_key fails with bad_input_args; with it, it runs', async () => {
    const c = consumer()
    const rt = await startRuntime({ handlers: { source: numbers(range(0, 5), 2), consumer: c.handler }, worker: { strictInputAdapters: true } })
    try {
      const bad = await rt.coordinator.createTask({ graph: pipeline(rechunk({ from_nodes: ['source'], size: 2 }), { retry_policy: { max: 3, backoff_sec: 0 } }) })
      const tb = await rt.coordinator.waitForTask(bad, { timeoutMs: 10000 })
      assert.equal(tb.status, 'failed')
      assert.equal(nodeOf(tb, 'c').attempt_epoch, 1)
      assert.equal(nodeOf(tb, 'c').last_error?.reason_code, 'bad_input_args')
      assert.equal(nodeOf(tb, 'c').last_error?.permanent, true)
      assert.deepEqual(c.log.seen, [])

      const good = await rt.coordinator.createTask({ graph: pipeline(rechunk({ from_nodes: ['source'], size: 2, meta_list_key: 'items' })) })
      const tg = await rt.coordinator.waitForTask(good, { timeoutMs: 10000 })
      assert.equal(tg.status, 'finished')
      assert.equal(nodeOf(tg, 'c').stats['count'], 5)
    } finally {
      await rt.stop()
    }
  })

  const retryReaders: [string, Record<string, unknown>, string[]][] = [
    ['pull.from_artifacts', pull({ from_nodes: ['source'] }), ['source:s0', 'source:s1', 'source:s2', 'source:s3']],
    ['rechunk', rechunk({ from_nodes: ['source'], size: 2, meta_list_key: 'items' }), ['c:chunk-0', 'c:chunk-1', 'c:chunk-2', 'c:chunk-3', 'c:chunk-4']],
  ]
  for (const [label, inline, uids] of retryReaders) {
    test(`each consumer node claims each upstream batch once per attempt; a retried consumer sees its whole input again (${label})`, async () => {
      const c = consumer({
        before(batch, ctx, seen) {
          // Attempt 1: the first batch succeeds, the second fails transiently.
          if (ctx.attemptEpoch === 1 && seen.filter((s) => s.epoch === 1).length === 1) throw new Error(`flaky on ${batch.batch_uid}`)
        },
      })
      const other = consumer()
      const rt = await startRuntime({ handlers: { source: numbers(range(0, 10), 3), consumer: c.handler, other: other.handler } })
      try {
        const graph = {
          nodes: [
            { node_id: 'source', type: 'source' },
            { node_id: 'c', type: 'consumer', depends_on: ['source'], io: { input_inline: inline }, retry_policy: { max: 3, backoff_sec: 0 } },
            { node_id: 'd', type: 'other', depends_on: ['source'], io: { input_inline: pull({ from_nodes: ['source'] }) } },
          ],
        }
        const id = await rt.coordinator.createTask({ graph })
        const t = await rt.coordinator.waitForTask(id, { timeoutMs: 15000 })
        assert.equal(t.status, 'finished')
        const n = nodeOf(t, 'c')
        assert.equal(n.attempt_epoch, 2)
        assert.equal(n.failures, 1)
        const first = c.log.seen.filter((s) => s.epoch === 1)
        const second = c.log.seen.filter((s) => s.epoch === 2)
        assert.deepEqual(first.map((s) => s.uid), uids.slice(0, 1), 'attempt 1 completed one batch (the second failed before being recorded)')
        assert.deepEqual(second.map((s) => s.uid), uids, 'attempt 2 gets every batch, each once, in the same ids')
        assert.deepEqual(second.flatMap((s) => itemsOf(s.payload)), range(0, 10), 'attempt 2 sees the whole input')
        assert.equal(n.stats['count'], 10, 'the batch done in both attempts is counted once')
        // Another consumer of the same upstream has its own claims: it sees every batch once too.
        assert.deepEqual(
          other.log.seen.map((s) => s.uid),
          ['source:s0', 'source:s1', 'source:s2', 'source:s3'],
        )
        assert.equal(nodeOf(t, 'd').stats['count'], 10)
      } finally {
        await rt.stop()
      }
    })
  }
})

test('S-059 rechunk of several upstreams is deterministic: a retried rechunker gives its streaming reader every item once', async () => {
  /** A source of 8 items named `<prefix><i>`, 2 per batch, one batch every `delay` ms. */
  const src = (prefix: string, delay: number): RoleHandler => ({
    async *iterBatches() {
      for (let i = 0; i < 4; i++) yield { batch_uid: `s${i}`, payload: { items: [`${prefix}${2 * i}`, `${prefix}${2 * i + 1}`] } }
    },
    async processBatch(b, ctx) {
      await ctx.sleep(delay)
      return { metrics: { count: 2 }, meta: { items: b.payload['items'] } }
    },
  })
  const chunks: string[] = []
  let failed = false
  const rechunker: RoleHandler = {
    async processBatch(b, ctx) {
      chunks.push(`${ctx.attemptEpoch} ${b.batch_uid} ${JSON.stringify(b.payload['items'])}`)
      // The first attempt fails on its third chunk, once the sink has read the first two.
      if (!failed && chunks.length === 3) {
        failed = true
        await ctx.sleep(300)
        throw new Error('transient')
      }
      return { metrics: { count: (b.payload['items'] as unknown[]).length }, meta: { items: b.payload['items'] } }
    },
  }
  const got: string[] = []
  const sink: RoleHandler = {
    async processBatch(b) {
      const items = (b.payload['meta'] as { items: string[] }).items
      got.push(...items)
      return { metrics: { count: items.length } }
    },
  }
  const rt = await startRuntime({ handlers: { a: src('a', 60), b: src('b', 90), rechunker, sink }, worker: { concurrency: 8 } })
  try {
    const id = await rt.coordinator.createTask({
      graph: {
        nodes: [
          { node_id: 'A', type: 'a' },
          { node_id: 'B', type: 'b' },
          { node_id: 'rc', type: 'rechunker', depends_on: ['A', 'B'], retry_policy: { max: 3, backoff_sec: 0.05 }, io: { start_when: 'first_batch', input_inline: rechunk({ from_nodes: ['A', 'B'], size: 3, meta_list_key: 'items' }) } },
          { node_id: 'sink', type: 'sink', depends_on: ['rc'], io: { start_when: 'first_batch', input_inline: pull({ from_nodes: ['rc'] }) } },
        ],
      },
    })
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })
    assert.equal(t.status, 'finished')
    assert.equal(nodeOf(t, 'rc').attempt_epoch, 2, 'the rechunker was retried')
    const expected = [...range(0, 8).map((i) => `a${i}`), ...range(0, 8).map((i) => `b${i}`)].sort()
    assert.deepEqual([...got].sort(), expected, `every item once: ${chunks.join(' | ')}`)
    // A chunk holds one upstream's items, in its order: the same under an id in both attempts.
    const byId = new Map<string, string>()
    for (const c of chunks) {
      const [, uid, items] = c.split(' ')
      assert.match(uid as string, /^rc:[AB]:chunk-\d$/)
      if (byId.has(uid as string)) assert.equal(byId.get(uid as string), items, `chunk ${uid} changed between attempts`)
      byId.set(uid as string, items as string)
    }
  } finally {
    await rt.stop()
  }
})

test('rechunk of an upstream whose metas lack meta_list_key (a misspelt key) warns once per upstream, naming the key and what it found', async () => {
  const logger = new MemoryLogger()
  const c = consumer()
  const rt = await startRuntime({ handlers: { good: numbers(range(0, 4), 2), bad: numbers(range(10, 6), 2, (items) => ({ rowz: items })) } })
  const w = new Worker({ bus: rt.bus, store: rt.store, handlers: { consumer: c.handler }, logger, config: { ...rt.workerBase } })
  rt.workers.push(w)
  try {
    await w.start()
    const graph = {
      nodes: [
        { node_id: 'good', type: 'good' },
        { node_id: 'bad', type: 'bad' },
        { node_id: 'c', type: 'consumer', depends_on: ['good', 'bad'], io: { input_inline: rechunk({ from_nodes: ['good', 'bad'], size: 2, meta_list_key: 'items' }) } },
      ],
    }
    const id = await rt.coordinator.createTask({ graph })
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10000 })
    assert.equal(t.status, 'finished')
    assert.equal(nodeOf(t, 'c').stats['count'], 4, 'only the good upstream has items')
    const warned = logger.records.filter((r) => r.event === 'worker.input_meta_list_missing' && r.fields['task_id'] === id)
    assert.deepEqual(
      warned.map((r) => [r.level, r.fields['node_id'], r.fields['from_node'], r.fields['meta_list_key'], r.fields['found']]),
      [['warn', 'c', 'bad', 'items', 'nothing']],
      'once, for the upstream without the list (three of its metas lack it)',
    )
  } finally {
    await rt.stop()
  }
})
