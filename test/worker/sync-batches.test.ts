/**
 * A run whose batches each compute synchronously (no await on I/O between them) no longer holds
 * the event loop for the whole run: the batch loop yields a turn every few tens of milliseconds,
 * so timers in the process run (heartbeats, the node's timeout_sec, a cancel). Before, 30 batches
 * of 100 ms each saw one 50 ms interval tick in 3 s, and the node finished 1.5 s past its timeout.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { RoleHandler } from 'flowkit'
import { startRuntime } from '../helpers/runtime.ts'

/** Busy for `ms` of wall time, without yielding. */
function spin(ms: number): void {
  const until = Date.now() + ms
  while (Date.now() < until) {
    // computing
  }
}

test('batches that compute synchronously leave turns to timers: the node times out at its timeout_sec, ticks go on', async () => {
  const cpu: RoleHandler = {
    async *iterBatches() {
      for (let i = 0; i < 30; i++) yield { batch_uid: `b${i}`, payload: { i } }
    },
    async processBatch() {
      spin(60)
      return { metrics: { n: 1 } }
    },
  }
  const rt = await startRuntime({ handlers: { cpu } })
  let ticks = 0
  const ticker = setInterval(() => ticks++, 50)
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'cpu', timeout_sec: 0.6, retry_policy: { max: 1 } }] } })
    const t0 = Date.now()
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 60_000 })
    const ran = Date.now() - t0
    const node = t.nodes.find((n) => n.node_id === 'n')
    assert.equal(t.status, 'failed', `the node ran ${ran} ms: ${JSON.stringify(node?.last_error)}`)
    // Its one attempt timed out: its attempts are used up.
    assert.equal(node?.last_error?.reason_code, 'retries_exhausted')
    assert.match(node?.last_error?.error ?? '', /timeout/i)
    assert.ok(ticks >= 5, `a 50 ms interval ticked ${ticks} times in ${ran} ms`)
  } finally {
    clearInterval(ticker)
    await rt.stop()
  }
})
