/**
 * A run's batches do not wait for their partial artifacts: the next batch is processed while the
 * previous one's artifact is written, and each BATCH_OK still goes out only once its artifact is
 * durable, in batch order. A partial artifact that cannot be written fails its own batch.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ErrorCode, FlowkitError, MemoryBus, type RoleHandler } from 'flowkit'
import { sourceHandler, startRuntime } from '../helpers/runtime.ts'
import { storeWithArtifactHook } from '../helpers/artifact-hook.ts'
import { gate } from '../helpers/gate.ts'
import { waitFor } from '../helpers/wait.ts'

interface Env {
  node_id: string
  payload: { kind: string; batch_uid?: string }
}

const storeWith = storeWithArtifactHook

/** A source of `count` items in batches of 10 that calls `before(batch_uid)` before each batch. */
function sourceWith(count: number, before: (uid: string) => void | Promise<void>): RoleHandler {
  const src = sourceHandler(count, 10)
  return {
    ...src,
    async processBatch(batch, ctx) {
      await before(batch.batch_uid as string)
      return src.processBatch(batch, ctx)
    },
  }
}

const kinds = (bus: MemoryBus, topic: string): string[] =>
  bus.records(topic).map((r) => {
    const env = JSON.parse(r.value) as Env
    return env.payload.batch_uid === undefined ? env.payload.kind : `${env.payload.kind} ${env.payload.batch_uid}`
  })

test('the next batch runs while the previous partial artifact is written; its BATCH_OK waits for the artifact, in order', async () => {
  const held = gate()
  const stored: string[] = []
  const store = storeWith(async (list) => {
    if (list.some((a) => a.batch_uid === 's0')) await held.wait()
    for (const a of list) stored.push(a.batch_uid ?? 'complete')
  })
  const processed: string[] = []
  const bus = new MemoryBus()
  const rt = await startRuntime({ bus, store, handlers: { src: sourceWith(30, (uid) => void processed.push(uid)) } })
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'src' }] } })
    // All three batches are processed while the first artifact's write is held...
    await waitFor(() => processed.length === 3)
    assert.deepEqual(stored, [])
    // ...and no BATCH_OK goes out before its artifact is stored.
    assert.deepEqual(kinds(bus, rt.statusTopic('src')).filter((k) => k.startsWith('BATCH_OK')), [])
    held.open()
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10_000 })
    assert.equal(t.status, 'finished')
    assert.deepEqual(stored.slice(0, 3), ['s0', 's1', 's2'])
    assert.deepEqual(kinds(bus, rt.statusTopic('src')), ['TASK_ACCEPTED', 'BATCH_OK s0', 'BATCH_OK s1', 'BATCH_OK s2', 'TASK_DONE'])
    const partials = (await store.listArtifacts(id)).filter((a) => a.status === 'partial').map((a) => a.batch_uid)
    assert.deepEqual(partials.sort(), ['s0', 's1', 's2'])
    assert.equal(t.nodes[0]?.stats?.['count'], 30)
  } finally {
    await rt.stop()
  }
})

test('a partial artifact that cannot be written fails its own batch; no later BATCH_OK is sent', async () => {
  const stored: string[] = []
  const store = storeWith(async (list) => {
    if (list.some((a) => a.batch_uid === 's1')) throw new FlowkitError(ErrorCode.StoreError, 'injected: artifact s1 refused', { retryable: false })
    for (const a of list) stored.push(a.batch_uid ?? 'complete')
  })
  const bus = new MemoryBus()
  // s1 is processed once s0 is stored, so that s1's artifact goes in a write of its own.
  const src = sourceWith(40, async (uid) => {
    if (uid === 's1') await waitFor(() => stored.includes('s0'))
  })
  const rt = await startRuntime({ bus, store, handlers: { src } })
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'src', retry_policy: { max: 1 } }] } })
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10_000 })
    assert.equal(t.status, 'failed')
    const seen = kinds(bus, rt.statusTopic('src'))
    assert.deepEqual(seen.slice(0, 3), ['TASK_ACCEPTED', 'BATCH_OK s0', 'BATCH_FAILED s1'])
    assert.equal(seen.filter((k) => k.startsWith('BATCH_OK')).length, 1, seen.join(', '))
    assert.ok(!seen.includes('TASK_DONE'), seen.join(', '))
    assert.equal(seen.at(-1), 'TASK_FAILED')
    assert.deepEqual((await store.listArtifacts(id)).map((a) => a.batch_uid), ['s0'])
  } finally {
    await rt.stop()
  }
})
