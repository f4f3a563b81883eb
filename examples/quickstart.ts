import { Coordinator, Worker, MemoryBus, MemoryStore, type RoleHandler } from 'flowkit'

const bus = new MemoryBus()
const store = new MemoryStore()

// A handler runs one role's nodes, batch by batch.
const numbers: RoleHandler = {
  async *iterBatches() {
    for (let i = 0; i < 10; i += 4) yield { batch_uid: `b${i}`, payload: { items: [i, i + 1, i + 2, i + 3].filter((n) => n < 10) } }
  },
  async processBatch(batch, ctx) {
    ctx.throwIfCancelled()
    const items = batch.payload.items as number[]
    return { meta: { items }, metrics: { count: items.length } } // meta = this batch's partial artifact
  },
}
const squares: RoleHandler = {
  async processBatch(batch) {
    const items = batch.payload.items as number[]                 // rechunked upstream items
    return { meta: { squares: items.map((n) => n * n) }, metrics: { count: items.length } }
  },
}

const coordinator = new Coordinator({ bus, store })
const worker = new Worker({ bus, store, handlers: { numbers, squares }, config: { concurrency: 2 } })
await coordinator.start()
await worker.start()

const taskId = await coordinator.createTask({
  params: { run: 'demo' },
  graph: {
    nodes: [
      { node_id: 'source', type: 'numbers' },
      {
        node_id: 'square', type: 'squares', depends_on: ['source'],
        io: {
          start_when: 'first_batch',
          input_inline: {
            input_adapter: 'pull.from_artifacts.rechunk:size',
            input_args: { from_nodes: ['source'], size: 3, meta_list_key: 'items' },
          },
        },
        retry_policy: { max: 3, backoff_sec: 0.5, permanent_on: ['bad_input'] },
      },
    ],
  },
})
const task = await coordinator.waitForTask(taskId, { timeoutMs: 10_000 })
console.log(task.status, task.nodes.map((n) => [n.node_id, n.stats.count]))  // finished [['source', 10], ['square', 10]]
console.log(await coordinator.listArtifacts(taskId, { nodeId: 'square' }))
await worker.stop(); await coordinator.stop()
