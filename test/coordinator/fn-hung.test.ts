/**
 * A coordinator function that never returns (a user function waiting on a call without a
 * timeout, a store request without an answer) is awaited only while its attempt counts: past its
 * `timeout_sec` the retry runs and the task's other functions too; a cancel ends it at once; a
 * stop does not wait for it. Its `signal` is aborted then. Before: the task's functions queued
 * behind the hung call for ever (the retry was dispatched but never ran, so no timeout was armed
 * for it), and `Coordinator.stop()` never returned.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { type CoordinatorFn, MemoryStore, type Store } from 'flowkit'
import { startRuntime } from '../helpers/runtime.ts'

/** Resolves with `what`, or with 'pending' after `ms`. */
function within<T>(p: Promise<T>, ms: number): Promise<T | 'pending'> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const late = new Promise<'pending'>((r) => {
    timer = setTimeout(() => r('pending'), ms)
  })
  return Promise.race([p, late]).finally(() => clearTimeout(timer))
}

/** A function whose first call hangs (noting its signal), later calls return at once. */
function hangsOnce(): { fn: CoordinatorFn; calls: () => number; firstAborted: () => boolean } {
  let calls = 0
  let first: AbortSignal | null = null
  const fn: CoordinatorFn = async (ctx) => {
    calls++
    if (calls === 1) {
      first = ctx.signal
      await new Promise(() => undefined)
    }
    return { stats: { ok: 1 } }
  }
  return { fn, calls: () => calls, firstAborted: () => first?.aborted === true }
}

const withTimeout = (fn: string, fnArgs: Record<string, unknown> = {}) => ({
  nodes: [
    { node_id: 'f', type: 'coordinator_fn', timeout_sec: 1, retry_policy: { max: 3, backoff_sec: 0.1 }, io: { fn, fn_args: fnArgs } },
    { node_id: 'other', type: 'coordinator_fn', io: { fn: 'vars.set', fn_args: { kv: { other: 1 } } } },
  ],
})

test('a hung coordinator function times out, its retry and the task\'s other functions run, its signal is aborted', async () => {
  const sticky = hangsOnce()
  const rt = await startRuntime({ functions: { sticky: sticky.fn } })
  try {
    const id = await rt.coordinator.createTask({ graph: withTimeout('sticky') })
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })
    assert.equal(t.status, 'finished')
    assert.deepEqual(t.vars, { other: 1 })
    const f = t.nodes.find((n) => n.node_id === 'f')
    assert.equal(f?.attempt_epoch, 2, 'one timeout, one retry')
    assert.equal(sticky.calls(), 2)
    assert.ok(sticky.firstAborted(), 'the timed-out attempt\'s signal is aborted')
  } finally {
    assert.notEqual(await within(rt.stop(), 10_000), 'pending')
  }
})

test('a built-in function whose store write never answers is retried after its timeout and applied once', async () => {
  const inner = new MemoryStore()
  let hung = false
  const store: Store = new Proxy(inner, {
    get(target, prop) {
      const v = Reflect.get(target, prop, target)
      if (prop !== 'upsertArtifact' || typeof v !== 'function') return typeof v === 'function' ? v.bind(target) : v
      return (doc: { node_id: string }, now: number) => {
        if (doc.node_id === 'f' && !hung) {
          hung = true
          return new Promise(() => undefined)
        }
        return v.call(target, doc, now)
      }
    },
  })
  const rt = await startRuntime({ store })
  try {
    const id = await rt.coordinator.createTask({ graph: withTimeout('vars.incr', { key: 'n' }) })
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })
    assert.equal(t.status, 'finished')
    assert.deepEqual(t.vars, { other: 1, n: 1 }, 'incremented once')
    assert.ok(hung)
  } finally {
    assert.notEqual(await within(rt.stop(), 10_000), 'pending')
  }
})

test('cancelling a task whose function hangs ends it at once (not at the cancel deadline) with the cancel\'s reason, its signal aborted', async () => {
  const sticky = hangsOnce()
  // The cancel deadline is cancelGraceSec + leaseTtlSec (75 s by default): far past this test's wait.
  const rt = await startRuntime({ functions: { sticky: sticky.fn } })
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'f', type: 'coordinator_fn', io: { fn: 'sticky' } }] } })
    const deadline = Date.now() + 10_000
    while (sticky.calls() === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
    assert.equal(sticky.calls(), 1, 'the function started')
    assert.equal(await rt.coordinator.cancelTask(id, { reason: 'not needed' }), true)
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10_000 })
    assert.equal(t.status, 'cancelled')
    assert.equal(t.nodes[0]?.status, 'cancelled')
    assert.equal(t.nodes[0]?.end_reason, 'not needed', 'the cancel\'s reason (it said "finished while cancelling": it never returned)')
    assert.ok(sticky.firstAborted())
  } finally {
    assert.notEqual(await within(rt.stop(), 10_000), 'pending')
  }
})

test('Coordinator.stop() returns while a coordinator function hangs, and aborts its signal', async () => {
  const sticky = hangsOnce()
  const rt = await startRuntime({ functions: { sticky: sticky.fn } })
  let stopped = false
  try {
    await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'f', type: 'coordinator_fn', io: { fn: 'sticky' } }] } })
    const deadline = Date.now() + 10_000
    while (sticky.calls() === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
    assert.equal(sticky.calls(), 1, 'the function started')
    assert.equal(await within(rt.coordinator.stop(), 10_000), undefined, 'stop() returned')
    stopped = true
    assert.ok(sticky.firstAborted())
  } finally {
    if (!stopped) await within(rt.stop(), 1000)
    else await rt.stop()
  }
})

test('a function left behind that returns later writes nothing (its attempt no longer counts)', async () => {
  const inner = new MemoryStore()
  const writes: number[] = []
  const store: Store = new Proxy(inner, {
    get(target, prop) {
      const v = Reflect.get(target, prop, target)
      if (prop !== 'upsertArtifact' || typeof v !== 'function') return typeof v === 'function' ? v.bind(target) : v
      return (doc: { node_id: string; attempt_epoch: number }, now: number) => {
        if (doc.node_id === 'f') writes.push(doc.attempt_epoch)
        return v.call(target, doc, now)
      }
    },
  })
  let calls = 0
  // The first call waits until it is told its attempt no longer counts, then returns anyway.
  const late: CoordinatorFn = async (ctx) => {
    calls++
    if (calls === 1) await new Promise((r) => ctx.signal.addEventListener('abort', r, { once: true }))
    return { meta: { call: calls } }
  }
  const rt = await startRuntime({ store, functions: { late } })
  try {
    const id = await rt.coordinator.createTask({ graph: withTimeout('late') })
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 20_000 })
    assert.equal(t.status, 'finished')
    assert.deepEqual(writes, [2], 'only the attempt that counts wrote its complete artifact')
  } finally {
    await rt.stop()
  }
})
