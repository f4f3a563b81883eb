/**
 * A pulling consumer rides out a short store outage (docs/fault-handling.md, "Store outages"):
 * its reads and claims are retried as artifact writes are. A fuzzer found that one failed
 * `listArtifacts` failed the consumer's attempt (`store_unavailable`), and the task with it when
 * the node had no retries left.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Coordinator, ErrorCode, FlowkitError, MemoryBus, MemoryLogger, MemoryStore, Worker, type RoleHandler } from 'flowkit'
import { overrideStore } from '../helpers/store-proxy.ts'
import { gate } from '../helpers/gate.ts'
import { waitFor } from '../helpers/wait.ts'

const unavailable = (call: string) => new FlowkitError(ErrorCode.StoreUnavailable, `injected: store unavailable (${call})`, { retryable: true })

/** Three batches of two items; the second and third wait for `more`. */
function source(more: { wait(): Promise<void> }): RoleHandler {
  return {
    async *iterBatches() {
      for (let i = 0; i < 3; i++) {
        if (i > 0) await more.wait()
        yield { batch_uid: `b${i}`, payload: { i } }
      }
    },
    async processBatch(b) {
      const i = b.payload['i'] as number
      return { metrics: { items: 2 }, meta: { items: [2 * i, 2 * i + 1] } }
    },
  }
}
const count: RoleHandler = {
  async processBatch(batch) {
    const meta = batch.payload['meta'] as { items?: unknown[] }
    return { metrics: { items: meta.items?.length ?? 0 } }
  },
}
const graph = {
  nodes: [
    { node_id: 'src', type: 'src' },
    {
      node_id: 'sink',
      type: 'count',
      depends_on: ['src'],
      retry_policy: { max: 1 },
      io: { start_when: 'first_batch', input_inline: { input_adapter: 'pull.from_artifacts', input_args: { from_nodes: ['src'], poll_ms: 10 } } },
    },
  ],
}

test('a pulling consumer rides out a store outage: its listings are retried, and a claim whose reply was lost still reads its batch (exact items, one attempt)', async () => {
  const bus = new MemoryBus()
  const store = new MemoryStore()
  const log = new MemoryLogger()
  let listFailures = 0
  let claimFailures = 0
  let lists = 0
  const workerStore = overrideStore(store, {
    listArtifacts: (orig) => async (...a) => {
      lists++
      if (listFailures > 0) {
        listFailures--
        throw unavailable('listArtifacts')
      }
      return orig(...a)
    },
    // The claims are written, then the call fails (a reply lost): a retry finds them taken.
    claimStreamBatches: (orig) => async (...a) => {
      const res = await orig(...a)
      if (claimFailures > 0) {
        claimFailures--
        throw unavailable('claimStreamBatches')
      }
      return res
    },
  })
  const more = gate()
  const coordinator = new Coordinator({ bus, store, logger: log, observability: false, config: { discoveryWindowSec: 0.2 } })
  const worker = new Worker({ bus, store: workerStore, logger: log, observability: false, handlers: { src: source(more), count }, config: { concurrency: 4 } })
  await coordinator.start()
  await worker.start()
  try {
    const id = await coordinator.createTask({ graph })
    // The consumer reads the first batch, then the store goes away for five listings and one claim.
    await waitFor(async () => ((await coordinator.getTask(id))?.nodes.find((n) => n.node_id === 'sink')?.stats['items'] ?? 0) === 2, { message: 'sink read b0' })
    const before = lists
    listFailures = 5
    claimFailures = 1
    await waitFor(() => lists >= before + 5, { message: 'the listings failed' })
    more.open()
    const t = await coordinator.waitForTask(id, { timeoutMs: 20_000 })
    const sink = t.nodes.find((n) => n.node_id === 'sink')
    assert.equal(t.status, 'finished', `task ${t.status}: ${sink?.last_error?.error ?? ''}`)
    assert.equal(sink?.attempt_epoch, 1, 'no second attempt')
    assert.equal(sink?.stats['items'], 6, 'every item read once')
    assert.equal(claimFailures, 0, 'the claim failed once')
    const retried = log.records.filter((r) => r.event === 'worker.pull_store_retry').map((r) => r.fields['call'])
    assert.ok(retried.includes('listArtifacts') && retried.includes('claimStreamBatches'), `retries logged: ${retried.join(', ')}`)
  } finally {
    more.open()
    await worker.stop()
    await coordinator.stop()
  }
})

test("a pulling consumer's cancel ends its wait for the store at once", async () => {
  const bus = new MemoryBus()
  const store = new MemoryStore()
  let down = false
  const workerStore = overrideStore(store, {
    listArtifacts: (orig) => async (...a) => {
      if (down) throw unavailable('listArtifacts')
      return orig(...a)
    },
  })
  const more = gate()
  const coordinator = new Coordinator({ bus, store, observability: false, config: { discoveryWindowSec: 0.2 } })
  const worker = new Worker({ bus, store: workerStore, observability: false, handlers: { src: source(more), count }, config: { concurrency: 4 } })
  await coordinator.start()
  await worker.start()
  try {
    const id = await coordinator.createTask({ graph })
    await waitFor(async () => ((await coordinator.getTask(id))?.nodes.find((n) => n.node_id === 'sink')?.stats['items'] ?? 0) === 2, { message: 'sink read b0' })
    down = true
    assert.equal(await coordinator.cancelTask(id, { reason: 'operator' }), true)
    // The store stays down: the consumer must not wait out the 30 s of retries to stop.
    const t = await coordinator.waitForTask(id, { timeoutMs: 10_000 })
    assert.equal(t.status, 'cancelled')
    assert.equal(t.nodes.find((n) => n.node_id === 'sink')?.status, 'cancelled')
  } finally {
    more.open()
    await worker.stop()
    await coordinator.stop()
  }
})
