/**
 * A node whose START waits because every worker slot of its type is held — by the streaming
 * consumers that wait for its own data (one worker of one slot: a `first_batch` consumer took the
 * slot its upstream's retry needs) — has them yield at its steering check (`steerAfterSec`, 5 s),
 * not at its accept timeout (30 s). The differential fuzz found a 3-node streaming graph on one
 * slot taking 60 s (two such waits), 10 s now.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryLogger, TestClock, type RoleHandler } from 'flowkit'
import { startRuntime } from '../helpers/runtime.ts'

test('consumers holding the only slot yield it to their upstream at the steering check, long before the accept timeout', async () => {
  const clock = new TestClock()
  const log = new MemoryLogger()
  const up: RoleHandler = {
    async *iterBatches() {
      for (let i = 0; i < 3; i++) yield { batch_uid: `b${i}`, payload: { items: [i, i] } }
    },
    async processBatch(batch, ctx) {
      // The first attempt fails after its first batch: the consumer's START, queued at the worker
      // since that batch, takes the freed slot before the retry's START.
      if (ctx.attemptEpoch === 1 && batch.batch_uid === 'b1') throw new Error('transient upstream failure')
      return { metrics: { items: 2 }, meta: { items: batch.payload['items'] } }
    },
  }
  const down: RoleHandler = {
    async processBatch(batch) {
      return { metrics: { items: (batch.payload['items'] as unknown[] | undefined)?.length ?? 0 } }
    },
  }
  // Defaults: acceptTimeoutSec 30, steerAfterSec 5.
  const rt = await startRuntime({ clock, logger: log, handlers: { up, down }, worker: { concurrency: 1, leaseTtlSec: 3600, hbIntervalSec: 600 }, coordinator: { defaultBackoffSec: 0 } })
  try {
    const id = await rt.coordinator.createTask({
      graph: {
        nodes: [
          { node_id: 'u', type: 'up', retry_policy: { max: 3, backoff_sec: 0 } },
          {
            node_id: 'd',
            type: 'down',
            depends_on: ['u'],
            io: { start_when: 'first_batch', input_inline: { input_adapter: 'pull.from_artifacts', input_args: { from_nodes: ['u'], poll_ms: 10 } } },
          },
        ],
      },
    })
    const start = clock.now()
    let status = 'running'
    while (clock.now() - start < 20_000) {
      await clock.advance(250)
      status = (await rt.coordinator.getTask(id))?.status ?? 'gone'
      if (status === 'finished' || status === 'failed') break
    }
    const t = await rt.coordinator.getTask(id)
    assert.equal(status, 'finished', `after ${(clock.now() - start) / 1000} s of the test clock: ${JSON.stringify(t?.nodes.map((n) => [n.node_id, n.status, n.attempt_epoch]))}`)
    assert.ok(log.records.some((r) => r.event === 'node.yielded' && r.fields['node_id'] === 'd'), 'the consumer yielded')
    assert.equal(log.records.filter((r) => r.event === 'node.not_accepted').length, 0)
  } finally {
    await rt.stop()
  }
})
