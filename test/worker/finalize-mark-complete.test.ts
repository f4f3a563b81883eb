/**
 * A `markComplete` called from `finalize` is written once finalize returned, not at once. The
 * complete artifact says the node's work is done: a coordinator finishes the node from it when its
 * worker dies, and a pulling consumer stops reading at it. Written at once (found by an
 * adversarial probe):
 * - a worker that died later in finalize left the node `finished` from that artifact, with the
 *   provisional meta and without the finalize metrics, and nothing retried;
 * - a `first_batch` consumer ended before a partial written after it, and, when finalize then
 *   failed, before the retry's batches (it finished on the failed attempt).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Coordinator, MemoryBus, MemoryStore, type RoleHandler, type TaskView, Worker } from 'flowkit'
import { gate } from '../helpers/gate.ts'

const nodeOf = (t: TaskView, id: string) => t.nodes.find((n) => n.node_id === id)

test('a worker that dies in finalize after markComplete: the node is run again, not finished from the provisional artifact', async () => {
  const bus = new MemoryBus()
  const store = new MemoryStore()
  const inFinalize = gate()
  const up: RoleHandler = {
    async *iterBatches() {
      for (let i = 0; i < 3; i++) yield { batch_uid: `b${i}`, payload: { i } }
    },
    async processBatch() {
      return { metrics: { rows: 10 } }
    },
    async finalize(ctx) {
      await ctx.artifacts.markComplete({ manifest: 'pending' })
      if (ctx.workerId === 'w1') {
        inFinalize.open()
        await new Promise(() => undefined) // the process dies here
      }
      return { metrics: { files: 1 }, meta: { manifest: 'final' } }
    },
  }
  const c = new Coordinator({ bus, store })
  const wc = { leaseTtlSec: 2, hbIntervalSec: 0.5 }
  const w1 = new Worker({ bus, store, handlers: { up }, config: { ...wc, workerId: 'w1' } })
  const w2 = new Worker({ bus, store, handlers: { up }, config: { ...wc, workerId: 'w2' } })
  await c.start()
  await w1.start()
  let killed = false
  try {
    const id = await c.createTask({ graph: { nodes: [{ node_id: 'a', type: 'up' }] } })
    await inFinalize.wait()
    // The artifact of the dying attempt is not written: nothing says the work is done.
    assert.deepEqual((await store.listArtifacts(id, { nodeId: 'a', status: 'complete' })).length, 0)
    await w1.kill()
    killed = true
    await w2.start()
    const t = await c.waitForTask(id, { timeoutMs: 30_000 })
    assert.equal(t.status, 'finished')
    const a = nodeOf(t, 'a')
    assert.equal(a?.attempt_epoch, 2, 'run again after the lease ran out')
    assert.deepEqual(a?.stats, { rows: 30, files: 1 })
    assert.deepEqual((await c.getOutput(id)).map((o) => o.artifact?.meta), [{ manifest: 'final' }])
  } finally {
    if (!killed) await w1.kill()
    await w2.stop()
    await c.stop()
  }
})

for (const scenario of ['a partial written in finalize after markComplete', 'finalize failing after markComplete, then retried'] as const)
test(`a first_batch consumer reads every batch of its upstream: ${scenario}`, async () => {
  const bus = new MemoryBus()
  const store = new MemoryStore()
  const late = scenario.startsWith('a partial')
  // The attempt's epoch, from init (one worker runs one attempt of `a` at a time).
  let epoch = 0
  const up: RoleHandler = {
    async init(info) {
      epoch = info.attemptEpoch
    },
    async *iterBatches() {
      for (let i = 0; i < (epoch === 1 ? 3 : 5); i++) yield { batch_uid: `p${i}`, payload: { i } }
    },
    async processBatch(b, ctx) {
      await ctx.sleep(20)
      return { meta: { page: (b.payload as { i: number }).i }, metrics: { pages: 1 } }
    },
    async finalize(ctx) {
      await ctx.artifacts.markComplete({ manifest: `m-e${ctx.attemptEpoch}` })
      if (late) {
        await ctx.sleep(200)
        await ctx.artifacts.writePartial('summary', { total: 3 })
      } else if (ctx.attemptEpoch === 1) {
        throw new Error('could not publish the manifest') // transient: retried
      }
    },
  }
  const read: string[] = []
  const sink: RoleHandler = {
    async processBatch(b, ctx) {
      read.push(`${ctx.nodeId}<-${b.batch_uid}`)
      return { metrics: { n: 1 } }
    },
  }
  const c = new Coordinator({ bus, store })
  const w = new Worker({ bus, store, handlers: { up, sink }, config: { concurrency: 3 } })
  await c.start()
  await w.start()
  try {
    const io = (start_when: string) => ({ start_when, input_inline: { input_adapter: 'pull.from_artifacts', input_args: { from_nodes: ['a'], poll_ms: 20 } } })
    const id = await c.createTask({
      graph: {
        nodes: [
          { node_id: 'a', type: 'up', retry_policy: { max: 2, backoff_sec: 0.3 } },
          { node_id: 'streaming', type: 'sink', depends_on: ['a'], io: io('first_batch') },
          { node_id: 'after', type: 'sink', depends_on: ['a'], io: io('ready') },
        ],
      },
    })
    const t = await c.waitForTask(id, { timeoutMs: 30_000 })
    assert.equal(t.status, 'finished')
    const want = late ? ['a:p0', 'a:p1', 'a:p2', 'a:summary'] : ['a:p0', 'a:p1', 'a:p2', 'a:p3', 'a:p4']
    const of = (node: string) => read.filter((r) => r.startsWith(`${node}<-`)).map((r) => r.slice(node.length + 2)).sort()
    assert.deepEqual(of('after'), want)
    assert.deepEqual(of('streaming'), want, 'the streaming consumer read them all too')
    assert.equal(nodeOf(t, 'a')?.attempt_epoch, late ? 1 : 2)
  } finally {
    await w.stop()
    await c.stop()
  }
})
