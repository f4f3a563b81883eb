/**
 * `clip` (src/util/text.ts), which bounds every error text a node keeps: at most `max` characters
 * in all, with how many were cut; cut twice (a worker, then a coordinator adding the attempt
 * count), the count still says what the original lost. Before, 100,000 characters came out as
 * 8,218 ending "(29 more characters cut)", and 8,253 with the attempt count.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Coordinator, MemoryBus, MemoryStore, PermanentError, Worker } from 'flowkit'
import { MAX_ERROR_CHARS, clip, isWellFormed } from '../../src/util/text.ts'

test('clip: at most max characters in all; a second cut adds up the counts; no split surrogate pair', () => {
  assert.equal(clip('short', 10), 'short')
  const once = clip('x'.repeat(100_000), 8192)
  assert.equal(once.length <= 8192, true)
  assert.match(once, /^x+… \((\d+) more characters cut\)$/)
  const kept = once.indexOf('…')
  assert.equal(Number(/\((\d+) more/.exec(once)?.[1]), 100_000 - kept, 'the count is what was cut')
  const twice = clip(`reason: ${once}`, 8100)
  assert.ok(twice.length <= 8100)
  const kept2 = twice.indexOf('…') - 'reason: '.length
  assert.equal(Number(/\((\d+) more/.exec(twice)?.[1]), 100_000 - kept2, 'what the original lost, after two cuts')
  const emoji = clip(`${'a'.repeat(5)}${'😀'.repeat(50)}`, 40)
  assert.ok(emoji.length <= 40)
  const head = emoji.slice(0, emoji.indexOf('…'))
  assert.equal(isWellFormed(head), true, 'no lone surrogate')
})

test('a handler error of 100,000 characters is kept as at most MAX_ERROR_CHARS, with the true count; also with the attempt count of a last retry', async () => {
  const bus = new MemoryBus()
  const store = new MemoryStore()
  const c = new Coordinator({ bus, store })
  const w = new Worker({
    bus,
    store,
    handlers: {
      perm: { async processBatch() { throw new PermanentError({ code: 'p', message: 'x'.repeat(100_000) }) } },
      flaky: { async processBatch() { throw new Error('y'.repeat(100_000)) } },
    },
  })
  await c.start()
  await w.start()
  try {
    const a = await c.createTask({ graph: { nodes: [{ node_id: 'n', type: 'perm' }] } })
    const e = (await c.waitForTask(a, { timeoutMs: 10_000 })).nodes[0]?.last_error?.error ?? ''
    assert.ok(e.length <= MAX_ERROR_CHARS, `kept ${e.length}`)
    assert.equal(Number(/\((\d+) more characters cut\)$/.exec(e)?.[1]), 100_000 - e.indexOf('…'))
    const b = await c.createTask({ graph: { nodes: [{ node_id: 'n', type: 'flaky', retry_policy: { max: 2, backoff_sec: 0 } }] } })
    const f = (await c.waitForTask(b, { timeoutMs: 10_000 })).nodes[0]?.last_error
    assert.equal(f?.reason_code, 'retries_exhausted')
    const text = f?.error ?? ''
    assert.ok(text.length <= MAX_ERROR_CHARS, `kept ${text.length}`)
    assert.match(text, /more characters cut\) \(attempt 2 of 2\)$/)
  } finally {
    await w.stop()
    await c.stop()
  }
})
