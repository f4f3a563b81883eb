/**
 * A handler's error is logged with where it was thrown: the worker's `node.failed` record carries
 * its stack frames (the node's error, sent and stored, stays its message). The new-user audit
 * found no file or line anywhere — log, CLI, dashboard — for a handler's TypeError.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryLogger, type RoleHandler } from 'flowkit'
import { failureStack } from '../../src/worker/results.ts'
import { startRuntime } from '../helpers/runtime.ts'
import { waitFor } from '../helpers/wait.ts'

test("a handler's exception is logged by its worker with its stack frames (this file among them)", async () => {
  const logger = new MemoryLogger()
  const broken: RoleHandler = {
    async processBatch(batch) {
      const payload = batch.payload as Record<string, { deeper: number } | undefined>
      return { metrics: { n: (payload['nope'] as { deeper: number }).deeper } }
    },
  }
  const rt = await startRuntime({ logger, handlers: { broken } })
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'broken', retry_policy: { max: 1, backoff_sec: 0 } }] } })
    assert.equal((await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })).status, 'failed')
    await waitFor(() => logger.records.some((r) => r.event === 'node.failed' && typeof r.fields['stack'] === 'string'), { message: 'no node.failed with a stack' })
    const rec = logger.records.find((r) => r.event === 'node.failed' && typeof r.fields['stack'] === 'string')!
    assert.match(String(rec.fields['error']), /Cannot read properties of undefined/)
    assert.match(String(rec.fields['stack']), /^at .*failure-stack\.test\.ts:\d+:\d+/m)
  } finally {
    await rt.stop()
  }
})

test('failureStack: at most 12 frames, secrets masked, nothing for a value without a stack', () => {
  const e = new Error('x')
  e.stack = ['Error: x', ...Array.from({ length: 20 }, (_, i) => `    at f${i} (https://user:hunter2@example.com/a.js:${i}:1)`)].join('\n')
  const s = failureStack(e) as string
  assert.equal(s.split('\n').length, 12)
  assert.doesNotMatch(s, /hunter2/)
  assert.equal(failureStack('a string'), undefined)
  assert.equal(failureStack({ stack: 'at x' }), undefined)
})

test("a thrown plain object keeps its text: its message, else its JSON (the node's error said \"[object Object]\")", async () => {
  const thrown: unknown[] = [
    { reason_code: 'quota', permanent: true, message: 'monthly quota used up for account 42' },
    { reason_code: 'quota', permanent: true, status: 429, body: 'slow down' },
  ]
  const seen: string[] = []
  for (const value of thrown) {
    const h: RoleHandler = {
      async processBatch() {
        throw value
      },
    }
    const rt = await startRuntime({ handlers: { h } })
    try {
      const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'h' }] } })
      const n = (await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })).nodes[0]!
      assert.equal(n.status, 'failed')
      assert.equal(n.last_error?.reason_code, 'quota')
      assert.equal(n.last_error?.permanent, true)
      seen.push(String(n.last_error?.error))
    } finally {
      await rt.stop()
    }
  }
  assert.match(seen[0] as string, /monthly quota used up for account 42/)
  assert.match(seen[1] as string, /"status":429/)
  assert.match(seen[1] as string, /slow down/)
  for (const s of seen) assert.doesNotMatch(s, /\[object Object\]/)
})
