import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import type { RoleHandler, TaskView } from 'flowkit'
import { startRuntime, noopHandler } from '../helpers/runtime.ts'
import { gate, type Gate } from '../helpers/gate.ts'
import { waitFor } from '../helpers/wait.ts'

/** Emits one batch, then holds until `hold` opens, then emits a second batch and finishes. */
function heldSource(hold: Gate): RoleHandler {
  return {
    async *iterBatches() {
      yield { batch_uid: 'first', payload: { n: 1 } }
      await hold.wait()
      yield { batch_uid: 'second', payload: { n: 2 } }
    },
    async processBatch(batch) {
      return { metrics: { count: 1 }, meta: { n: batch.payload['n'] } }
    },
  }
}

/** Holds before its first batch until `hold` opens (no output until then), then emits one batch. */
function lateSource(hold: Gate): RoleHandler {
  return {
    async *iterBatches() {
      await hold.wait()
      yield { batch_uid: 'only', payload: { n: 1 } }
    },
    async processBatch(batch) {
      return { metrics: { count: 1 }, meta: { n: batch.payload['n'] } }
    },
  }
}

/** Handler selected by node id through input_inline.name, so one role can play several parts. */
function byName(map: Record<string, RoleHandler>): RoleHandler {
  const pick = (ctxName: unknown): RoleHandler => map[String(ctxName)] ?? noopHandler()
  return {
    async loadInput(ref, inline) {
      return { name: inline?.['name'], ref, inline }
    },
    async *iterBatches(loaded) {
      const h = pick((loaded as { name: unknown }).name)
      if (h.iterBatches) yield* h.iterBatches(loaded)
      else yield { batch_uid: 'only', payload: {} }
    },
    async processBatch(batch, ctx) {
      const name = ctx.inputInline?.['name']
      return pick(name).processBatch(batch, ctx)
    },
  }
}

const node = (id: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  node_id: id,
  type: 'step',
  io: { input_inline: { name: id }, ...((extra['io'] as object) ?? {}) },
  ...Object.fromEntries(Object.entries(extra).filter(([k]) => k !== 'io')),
})

async function nodeOf(rt: Awaited<ReturnType<typeof startRuntime>>, id: string, nodeId: string) {
  const t = (await rt.coordinator.getTask(id)) as TaskView
  return t.nodes.find((n) => n.node_id === nodeId)!
}

describe('scheduling: fan-in and start rules', () => {
  test('S-041 fan_in any starts early: first_batch child starts on the first batch of one parent', async () => {
    const holdA = gate()
    const holdB = gate()
    const rt = await startRuntime({
      // b writes nothing until its gate opens: only a's first batch can start c (as `all` would not).
      handlers: { step: byName({ a: heldSource(holdA), b: lateSource(holdB) }) },
      worker: { concurrency: 4 },
    })
    try {
      const id = await rt.coordinator.createTask({
        graph: {
          nodes: [node('a'), node('b'), node('c', { depends_on: ['a', 'b'], fan_in: 'any', io: { start_when: 'first_batch' } })],
        },
      })
      await waitFor(async () => (await nodeOf(rt, id, 'c')).status !== 'queued', { message: 'child c never started' })
      const a = await nodeOf(rt, id, 'a')
      const b = await nodeOf(rt, id, 'b')
      assert.equal(a.status, 'running', 'parent a must still be running when c starts')
      assert.equal(b.status, 'running', 'parent b must still be running when c starts')
      assert.equal(b.batches_seen, 0, 'c started before b had any batch')
      holdA.open()
      holdB.open()
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 15000 })
      assert.equal(t.status, 'finished')
    } finally {
      holdA.open()
      holdB.open()
      await rt.stop()
    }
  })

  test('S-042 fan_in all without start_when waits for every parent to finish', async () => {
    const holdA = gate()
    const rt = await startRuntime({ handlers: { step: byName({ a: heldSource(holdA) }) }, worker: { concurrency: 4 } })
    try {
      const id = await rt.coordinator.createTask({
        graph: { nodes: [node('a'), node('b'), node('c', { depends_on: ['a', 'b'] })] },
      })
      await waitFor(async () => (await nodeOf(rt, id, 'b')).status === 'finished', { message: 'b never finished' })
      await waitFor(async () => (await nodeOf(rt, id, 'a')).has_output, { message: 'a never produced its first batch' })
      assert.equal((await nodeOf(rt, id, 'c')).status, 'queued', 'c must wait while a runs')
      holdA.open()
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 15000 })
      assert.equal(t.status, 'finished')
      const c = t.nodes.find((n) => n.node_id === 'c')!
      const aDone = t.nodes.find((n) => n.node_id === 'a')!.finished_at_ms!
      assert.ok(c.dispatched_at_ms! >= aDone, 'c dispatched after a finished')
    } finally {
      holdA.open()
      await rt.stop()
    }
  })

  test('S-043 fan_in count:N starts once N parents finished', async () => {
    const holdB = gate()
    const holdC = gate()
    const rt = await startRuntime({ handlers: { step: byName({ p2: heldSource(holdB), p3: heldSource(holdC) }) }, worker: { concurrency: 4 } })
    try {
      const id = await rt.coordinator.createTask({
        graph: { nodes: [node('p1'), node('p2'), node('p3'), node('child', { depends_on: ['p1', 'p2', 'p3'], fan_in: 'count:2' })] },
      })
      // One parent finished: not enough. The coordinator decides readiness when it applies the
      // parent's end (the same step), so the child would already show started here.
      await waitFor(async () => (await nodeOf(rt, id, 'p1')).status === 'finished', { message: 'p1 never finished' })
      assert.equal((await nodeOf(rt, id, 'child')).status, 'queued', 'one finished parent of count:2 must not start the child')
      holdB.open()
      await waitFor(async () => (await nodeOf(rt, id, 'child')).status !== 'queued', { message: 'child never started' })
      assert.equal((await nodeOf(rt, id, 'p3')).status, 'running', 'third parent still running when child starts')
      const p1 = await nodeOf(rt, id, 'p1')
      const p2 = await nodeOf(rt, id, 'p2')
      assert.equal(p1.status, 'finished')
      assert.equal(p2.status, 'finished')
      holdC.open()
      assert.equal((await rt.coordinator.waitForTask(id, { timeoutMs: 15000 })).status, 'finished')
    } finally {
      holdB.open()
      holdC.open()
      await rt.stop()
    }
  })

  test('S-043 count:N with first_batch counts parents that produced an artifact (fan_in is not overridden)', async () => {
    const holds = [gate(), gate(), gate()]
    const rt = await startRuntime({
      handlers: { step: byName({ p1: heldSource(holds[0]!), p2: heldSource(holds[1]!), p3: { async processBatch() { await holds[2]!.wait(); return {} } } }) },
      worker: { concurrency: 4 },
    })
    try {
      const id = await rt.coordinator.createTask({
        graph: {
          nodes: [
            node('p1'),
            node('p2'),
            node('p3'),
            node('child', { depends_on: ['p1', 'p2', 'p3'], fan_in: 'count:3', io: { start_when: 'first_batch' } }),
          ],
        },
      })
      await waitFor(async () => (await nodeOf(rt, id, 'p1')).has_output && (await nodeOf(rt, id, 'p2')).has_output, {
        message: 'p1/p2 never produced a batch',
      })
      assert.equal((await nodeOf(rt, id, 'child')).status, 'queued', 'two producing parents do not meet count:3')
      holds[2]!.open()
      await waitFor(async () => (await nodeOf(rt, id, 'child')).status !== 'queued', { message: 'child never started' })
      assert.equal((await nodeOf(rt, id, 'p1')).status, 'running', 'child starts on first batches, not on finish')
      holds[0]!.open()
      holds[1]!.open()
      assert.equal((await rt.coordinator.waitForTask(id, { timeoutMs: 15000 })).status, 'finished')
    } finally {
      for (const h of holds) h.open()
      await rt.stop()
    }
  })

  test('S-047 one upstream, two children: the first_batch child starts while upstream runs, the other waits', async () => {
    const hold = gate()
    const rt = await startRuntime({ handlers: { step: byName({ up: heldSource(hold) }) }, worker: { concurrency: 4 } })
    try {
      const id = await rt.coordinator.createTask({
        graph: {
          nodes: [node('up'), node('streamer', { depends_on: ['up'], io: { start_when: 'first_batch' } }), node('waiter', { depends_on: ['up'] })],
        },
      })
      await waitFor(async () => (await nodeOf(rt, id, 'streamer')).status !== 'queued', { message: 'streamer never started' })
      assert.equal((await nodeOf(rt, id, 'up')).status, 'running')
      assert.equal((await nodeOf(rt, id, 'waiter')).status, 'queued')
      hold.open()
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 15000 })
      assert.equal(t.status, 'finished')
      const up = t.nodes.find((n) => n.node_id === 'up')!
      const waiter = t.nodes.find((n) => n.node_id === 'waiter')!
      assert.ok(waiter.dispatched_at_ms! >= up.finished_at_ms!)
    } finally {
      hold.open()
      await rt.stop()
    }
  })

  test('edges count as dependencies (depends_on ∪ edges)', async () => {
    const hold = gate()
    const rt = await startRuntime({ handlers: { step: byName({ a: heldSource(hold) }) }, worker: { concurrency: 2 } })
    try {
      const id = await rt.coordinator.createTask({ graph: { nodes: [node('a'), node('b')], edges: [['a', 'b']] } })
      await waitFor(async () => (await nodeOf(rt, id, 'a')).has_output, { message: 'a never produced' })
      assert.equal((await nodeOf(rt, id, 'b')).status, 'queued')
      hold.open()
      assert.equal((await rt.coordinator.waitForTask(id, { timeoutMs: 15000 })).status, 'finished')
    } finally {
      hold.open()
      await rt.stop()
    }
  })
})
