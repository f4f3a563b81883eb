/**
 * A TASK_START produced in the same process reaches the worker as the coordinator's own object
 * (BusRecord.decoded on the memory bus): what the handler gets of it is a copy, so a handler that
 * changes its inputs changes neither the coordinator's START nor what a retry gets.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { type Batch, MemoryBus, type RoleHandler } from 'flowkit'
import { startRuntime } from '../helpers/runtime.ts'

test('a handler that changes its inputs (inline, ref, batching) changes nothing the coordinator or a retry sees', async () => {
  const bus = new MemoryBus()
  const seen: unknown[] = []
  let attempts = 0
  const handler: RoleHandler = {
    async processBatch(_batch, ctx) {
      attempts++
      seen.push(structuredClone({ inline: ctx.inputInline, ref: ctx.inputRef, batching: ctx.batching }))
      const inline = ctx.inputInline as { rows: number[] }
      inline.rows.push(99)
      ;(ctx.inputRef as Record<string, unknown>)['changed'] = true
      ;(ctx.batching as Record<string, unknown>)['batch_size'] = 1
      if (attempts === 1) throw Object.assign(new Error('transient, once'), { retryable: true })
      return { metrics: { count: 1 } }
    },
    // No input adapter reads input_ref here: the handler is given the batch as is.
    async loadInput() {
      return [{ payload: {} }]
    },
    iterBatches(loaded) {
      return loaded as Batch[]
    },
  }
  const rt = await startRuntime({ bus, handlers: { a: handler } })
  try {
    const id = await rt.coordinator.createTask({
      graph: {
        nodes: [
          {
            node_id: 'n',
            type: 'a',
            io: { input_inline: { rows: [1, 2] }, input_ref: { uri: 'mem://x' }, batching: { batch_size: 10 } },
            retry_policy: { max: 2, backoff_sec: 0 },
          },
        ],
      },
    })
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10_000 })
    assert.equal(t.status, 'finished')
    assert.equal(attempts, 2)
    const original = { inline: { rows: [1, 2] }, ref: { uri: 'mem://x' }, batching: { batch_size: 10 } }
    assert.deepEqual(seen, [original, original], 'the retry got the inputs as the graph gives them')
    const starts = bus.records(rt.cmdTopic('a')).filter((r) => r.decoded !== undefined)
    assert.ok(starts.length >= 2, 'the STARTs went in process, as objects')
    for (const r of starts) assert.deepEqual((r.decoded as { payload: { input_inline: unknown } }).payload.input_inline, { rows: [1, 2] })
  } finally {
    await rt.stop()
  }
})
