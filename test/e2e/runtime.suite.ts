/**
 * End-to-end scenarios written once and run on every runtime: the embedded one (memory bus +
 * memory store) and the real one (Kafka + the MongoDB-protocol server). Role names and group ids
 * are unique per test so runs on a shared broker never see each other.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { Coordinator, Worker, type Bus, type CoordinatorConfig, type RoleHandler, type Store, type TaskView, type WorkerConfig } from 'flowkit'
import { gate } from '../helpers/gate.ts'
import { waitFor } from '../helpers/wait.ts'

export interface RuntimeKit {
  bus: Bus
  store: Store
  cleanup(): Promise<void>
}

export interface RuntimeFactory {
  name: string
  skip: false | string
  create(): Promise<RuntimeKit>
  /** Deadline for a whole task on this runtime. */
  timeoutMs: number
}

const nodeOf = (t: TaskView | null, id: string) => t!.nodes.find((n) => n.node_id === id)!

function uid(): string {
  return randomUUID().slice(0, 8)
}

/** Source of `count` integers in batches of `size`, optionally holding before batch `holdAt`. */
function source(count: number, size: number, hold?: { at: number; gate: ReturnType<typeof gate> }): RoleHandler {
  return {
    async *iterBatches() {
      for (let i = 0, b = 0; i < count; i += size, b++) {
        if (hold && b === hold.at) await hold.gate.wait()
        yield { batch_uid: `s${b}`, payload: { items: Array.from({ length: Math.min(size, count - i) }, (_, k) => i + k) } }
      }
    },
    async processBatch(batch) {
      const items = batch.payload['items'] as number[]
      return { meta: { items }, metrics: { count: items.length, sum: items.reduce((a, b) => a + b, 0) } }
    },
  }
}

/** Doubles rechunked items. */
const doubler: RoleHandler = {
  async processBatch(batch) {
    const items = (batch.payload['items'] as number[]).map((n) => n * 2)
    return { meta: { items }, metrics: { count: items.length, sum: items.reduce((a, b) => a + b, 0) } }
  },
}

/** Sums what it pulls. */
const summer: RoleHandler = {
  async processBatch(batch) {
    const items = ((batch.payload['meta'] as { items?: number[] }).items ?? []) as number[]
    return { metrics: { count: items.length, sum: items.reduce((a, b) => a + b, 0) } }
  },
}

/**
 * S-001's 5-node streaming DAG: source → double (rechunk by 5, on_batch) → merge (merge.generic) →
 * regroup (second rechunk by 3 over double's batches) → sink (pulls regroup's batches).
 */
function streamingGraph(roles: { src: string; dbl: string; sink: string }): Record<string, unknown> {
  return {
    nodes: [
      { node_id: 'source', type: roles.src },
      {
        node_id: 'double',
        type: roles.dbl,
        depends_on: ['source'],
        io: {
          start_when: 'first_batch',
          input_inline: { input_adapter: 'pull.from_artifacts.rechunk:size', input_args: { from_nodes: ['source'], size: 5, meta_list_key: 'items', poll_ms: 20 } },
        },
      },
      { node_id: 'merge', type: 'coordinator_fn', depends_on: ['double'], io: { fn: 'merge.generic', fn_args: { from_nodes: ['double'] } } },
      {
        node_id: 'regroup',
        type: roles.dbl,
        depends_on: ['merge'],
        io: {
          start_when: 'first_batch',
          input_inline: { input_adapter: 'pull.from_artifacts.rechunk:size', input_args: { from_nodes: ['double'], size: 3, meta_list_key: 'items', poll_ms: 20 } },
        },
      },
      {
        node_id: 'sink',
        type: roles.sink,
        depends_on: ['regroup'],
        io: { start_when: 'first_batch', input_inline: { input_adapter: 'pull.from_artifacts', input_args: { from_nodes: ['regroup'], poll_ms: 20 } } },
      },
    ],
    edges_ex: [{ from: 'source', to: 'double', mode: 'async', trigger: 'on_batch' }],
  }
}

export function runRuntimeScenarios(factory: RuntimeFactory): void {
  describe(`end-to-end on ${factory.name}`, { skip: factory.skip }, () => {
    const coordConfig = (): Partial<CoordinatorConfig> => ({ groupId: `flowkit.test.${uid()}`, schedulerTickSec: 0.2 })
    const workerConfig: Partial<WorkerConfig> = { concurrency: 3, hbIntervalSec: 1, leaseTtlSec: 10 }

    test(`S-001/S-002 streaming DAG with partial artifacts and a coordinator function: exact values (${factory.name})`, async () => {
      const kit = await factory.create()
      const roles = { src: `src_${uid()}`, dbl: `dbl_${uid()}`, sink: `sink_${uid()}` }
      const coordinator = new Coordinator({ bus: kit.bus, store: kit.store, config: coordConfig() })
      const worker = new Worker({ bus: kit.bus, store: kit.store, handlers: { [roles.src]: source(23, 4), [roles.dbl]: doubler, [roles.sink]: summer }, config: workerConfig })
      try {
        await coordinator.start()
        await worker.start()
        const id = await coordinator.createTask({ graph: streamingGraph(roles) })
        const t = await coordinator.waitForTask(id, { timeoutMs: factory.timeoutMs })
        assert.equal(t.status, 'finished')
        const expectedSum = (22 * 23) / 2
        assert.deepEqual(nodeOf(t, 'source').stats, { count: 23, sum: expectedSum })
        assert.deepEqual(nodeOf(t, 'double').stats, { count: 23, sum: expectedSum * 2 })
        assert.deepEqual(nodeOf(t, 'regroup').stats, { count: 23, sum: expectedSum * 4 })
        assert.deepEqual(nodeOf(t, 'sink').stats, { count: 23, sum: expectedSum * 4 })
        const regroup = (await coordinator.listArtifacts(id, { nodeId: 'regroup' })).filter((a) => a.status === 'partial')
        assert.equal(regroup.length, 8, '23 items rechunked by 3')
        assert.equal(regroup.filter((a) => a.status === 'partial').length, 8)
        const src = await coordinator.listArtifacts(id, { nodeId: 'source' })
        assert.equal(src.filter((a) => a.status === 'partial').length, 6, '23 items in batches of 4')
        assert.equal(src.filter((a) => a.status === 'complete').length, 1)
        const dbl = (await coordinator.listArtifacts(id, { nodeId: 'double' })).filter((a) => a.status === 'partial')
        assert.equal(dbl.length, 5, '23 items rechunked by 5')
        assert.deepEqual(dbl.flatMap((a) => a.meta['items'] as number[]).sort((a, b) => a - b), Array.from({ length: 23 }, (_, i) => i * 2))
        const merged = (await coordinator.listArtifacts(id, { nodeId: 'merge' }))[0]
        assert.equal(merged?.status, 'complete')
        assert.equal(merged?.meta['count'], 5)
      } finally {
        await worker.stop()
        await coordinator.stop()
        await kit.cleanup()
      }
    })

    test(`S-012/S-038 coordinator stopped mid-stream and replaced: no event lost, nothing re-dispatched (${factory.name})`, async () => {
      const kit = await factory.create()
      const roles = { src: `src_${uid()}`, dbl: `dbl_${uid()}`, sink: `sink_${uid()}` }
      const hold = gate()
      const config = coordConfig()
      const first = new Coordinator({ bus: kit.bus, store: kit.store, config })
      const worker = new Worker({ bus: kit.bus, store: kit.store, handlers: { [roles.src]: source(23, 4, { at: 2, gate: hold }), [roles.dbl]: doubler, [roles.sink]: summer }, config: workerConfig })
      let second: Coordinator | null = null
      try {
        await first.start()
        await worker.start()
        const id = await first.createTask({ graph: streamingGraph(roles) })
        await waitFor(async () => nodeOf(await first.getTask(id), 'double').status === 'running', { timeoutMs: factory.timeoutMs, message: 'double never started' })
        await first.stop()
        // While no coordinator runs, the source finishes and every status event waits on the bus.
        hold.open()
        await waitFor(async () => worker.activeRuns().length === 0, { timeoutMs: factory.timeoutMs, message: 'runs never drained' })
        second = new Coordinator({ bus: kit.bus, store: kit.store, config })
        await second.start()
        const t = await second.waitForTask(id, { timeoutMs: factory.timeoutMs })
        assert.equal(t.status, 'finished')
        for (const n of t.nodes) assert.equal(n.attempt_epoch, 1, `${n.node_id} finished at its original epoch`)
        assert.deepEqual(nodeOf(t, 'source').stats, { count: 23, sum: 253 })
        assert.deepEqual(nodeOf(t, 'sink').stats, { count: 23, sum: 1012 })
      } finally {
        hold.open()
        await worker.stop()
        await second?.stop()
        await first.stop()
        await kit.cleanup()
      }
    })

    test(`S-003/S-045 merge.generic runs without a worker after its parents; a first_batch child consumes it (${factory.name})`, async () => {
      const kit = await factory.create()
      const roles = { src: `src_${uid()}`, sink: `sink_${uid()}` }
      const partsReader: RoleHandler = {
        async processBatch(batch) {
          const parts = ((batch.payload['meta'] as { parts?: unknown[] }).parts ?? []) as unknown[]
          return { metrics: { parts: parts.length } }
        },
      }
      const coordinator = new Coordinator({ bus: kit.bus, store: kit.store, config: coordConfig() })
      const worker = new Worker({ bus: kit.bus, store: kit.store, handlers: { [roles.src]: source(7, 3), [roles.sink]: partsReader }, config: workerConfig })
      try {
        await coordinator.start()
        await worker.start()
        const id = await coordinator.createTask({
          graph: {
            nodes: [
              { node_id: 'a', type: roles.src },
              { node_id: 'b', type: roles.src },
              { node_id: 'merge', type: 'coordinator_fn', depends_on: ['a', 'b'], io: { fn: 'merge.generic', fn_args: { from_nodes: ['a', 'b'], target: { key: 'parts' } } } },
              {
                node_id: 'reader',
                type: roles.sink,
                depends_on: ['merge'],
                io: { start_when: 'first_batch', input_inline: { input_adapter: 'pull.from_artifacts', input_args: { from_node: 'merge', poll_ms: 20 } } },
              },
            ],
          },
        })
        const t = await coordinator.waitForTask(id, { timeoutMs: factory.timeoutMs })
        assert.equal(t.status, 'finished')
        const merge = nodeOf(t, 'merge')
        assert.equal(merge.attempt_epoch, 1)
        assert.equal(merge.lease.worker_id ?? null, null, 'no worker ran merge.generic')
        assert.ok(merge.dispatched_at_ms! >= Math.max(nodeOf(t, 'a').finished_at_ms!, nodeOf(t, 'b').finished_at_ms!))
        const art = (await coordinator.listArtifacts(id, { nodeId: 'merge' }))
        assert.equal(art.length, 1)
        assert.equal(art[0]!.status, 'complete')
        const parts = art[0]!.meta['parts'] as { node_id: string; meta: { items: number[] } }[]
        assert.equal(parts.length, 6, 'three batches from each parent')
        assert.deepEqual(parts.flatMap((p) => p.meta.items).sort((x, y) => x - y), [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6])
        assert.equal(nodeOf(t, 'reader').stats['parts'], 6, 'the child consumed the merged artifact')
      } finally {
        await worker.stop()
        await coordinator.stop()
        await kit.cleanup()
      }
    })

    test(`S-004 cancel a running task: handler aborted, CANCELLED reported, downstream never starts (${factory.name})`, async () => {
      const kit = await factory.create()
      const role = `long_${uid()}`
      const downRole = `down_${uid()}`
      const started = gate()
      let aborted = false
      let downstream = 0
      const long: RoleHandler = {
        async processBatch(_b, ctx) {
          started.open()
          try {
            await ctx.sleep(120_000)
          } catch (err) {
            aborted = ctx.signal.aborted
            throw err
          }
          return {}
        },
      }
      const coordinator = new Coordinator({ bus: kit.bus, store: kit.store, config: coordConfig() })
      const worker = new Worker({
        bus: kit.bus,
        store: kit.store,
        handlers: { [role]: long, [downRole]: { async processBatch() { downstream++; return {} } } },
        config: workerConfig,
      })
      try {
        await coordinator.start()
        await worker.start()
        const id = await coordinator.createTask({ graph: { nodes: [{ node_id: 'a', type: role }, { node_id: 'b', type: downRole, depends_on: ['a'] }] } })
        await started.wait()
        await coordinator.cancelTask(id, { reason: 'test' })
        const t = await coordinator.waitForTask(id, { timeoutMs: factory.timeoutMs })
        assert.equal(t.status, 'cancelled')
        assert.equal(aborted, true)
        assert.equal(nodeOf(t, 'a').status, 'cancelled')
        assert.equal(nodeOf(t, 'a').end_reason, 'test', "the worker's CANCELLED (with the cancel's reason) ended it")
        assert.equal(nodeOf(t, 'b').status, 'cancelled')
        assert.equal(downstream, 0)
      } finally {
        await worker.stop()
        await coordinator.stop()
        await kit.cleanup()
      }
    })
  })
}
