/**
 * flowkit_tasks_created_total counts each task once across coordinators: a task created on a
 * coordinator that does not own it is counted there, and not again by its owner when the owner
 * adopts it from the inline hand-over (a review found 13 counted for 10 tasks).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Coordinator, MemoryBus, MemoryStore } from 'flowkit'
import { waitFor } from '../helpers/wait.ts'
import { overrideMethods, overrideStore } from '../helpers/store-proxy.ts'

const created = async (c: Coordinator, name = 'flowkit_tasks_created_total'): Promise<number> =>
  Number(((await c.observability?.registry?.getMetricsAsJSON()) ?? []).find((m) => m.name === name)?.values[0]?.value ?? 0)

test('tasks created on a coordinator that does not own them are counted once in all', async () => {
  const bus = new MemoryBus()
  const store = new MemoryStore()
  const cfg = { sweepIntervalSec: 3600 }
  const c1 = new Coordinator({ bus, store, config: { ...cfg, coordinatorId: 'c1' } })
  const c2 = new Coordinator({ bus, store, config: { ...cfg, coordinatorId: 'c2' } })
  await Promise.all([c1.start(), c2.start()])
  try {
    await waitFor(() => c1.ownership.partitions.length > 0 && c2.ownership.partitions.length > 0 && c1.ownership.partitions.length + c2.ownership.partitions.length === c1.ownership.of, { message: 'the partitions were never shared' })
    const ids: string[] = []
    for (let i = 0; i < 10; i++) ids.push(await c1.createTask({ graph: { nodes: [{ node_id: 'a', type: 'step' }] } }))
    const foreign = ids.filter((id) => !c1.ownsTask(id))
    assert.ok(foreign.length > 0, 'some tasks belong to c2')
    // c2 took each of its tasks up (it adopted them from c1's hand-over).
    await waitFor(async () => (await created(c2, 'flowkit_tasks_adopted_total')) === foreign.length, { message: 'c2 never adopted its tasks' })
    assert.equal((await created(c1)) + (await created(c2)), 10, 'each task counted once')
  } finally {
    await Promise.all([c1.stop(), c2.stop()])
  }
})

test('tasks loaded at a restart count as adopted; those submitted through the store and never taken up count as created once', async () => {
  const bus = new MemoryBus()
  const store = new MemoryStore()
  const cfg = { sweepIntervalSec: 3600 }
  const first = new Coordinator({ bus, store, config: { ...cfg, coordinatorId: 'c1' } })
  await first.start()
  const ids: string[] = []
  // Running on the first coordinator (no worker serves `step`): active in the store.
  for (let i = 0; i < 3; i++) ids.push(await first.createTask({ graph: { nodes: [{ node_id: 'a', type: 'step' }] } }))
  // (Written as running: a task killed before its first write would be taken for a submission.)
  await waitFor(async () => (await Promise.all(ids.map((id) => store.getTask(id)))).every((t) => t?.status === 'running'))
  await first.kill()
  // Two more submitted through the store while no coordinator ran (as `flowkit submit` does).
  const { buildTask } = await import('../../src/coordinator/submit.ts')
  for (let i = 0; i < 2; i++) await store.createTask(buildTask({ graph: { nodes: [{ node_id: 'a', type: 'step' }] } }, { coordinatorFns: new Set(), rejectUnknownInputAdapters: false }, Date.now()))
  const second = new Coordinator({ bus, store, config: { ...cfg, coordinatorId: 'c2' } })
  await second.start()
  try {
    await waitFor(async () => (await created(second, 'flowkit_tasks_adopted_total')) === 5, { message: `adopted: ${await created(second, 'flowkit_tasks_adopted_total')}` })
    assert.equal(await created(second), 2, 'the two store submissions are created here; the three recovered ones were created before')
  } finally {
    await second.stop()
  }
})

test('a task created on a coordinator that ends before writing anything about it is not counted again by the one that takes it up', async () => {
  const bus = new MemoryBus()
  const store = new MemoryStore()
  const cfg = { sweepIntervalSec: 3600 }
  // The first coordinator's journal writes never complete: the task stays queued at version 0
  // in the store, exactly as a task submitted through the store looks (but this one was counted).
  const frozen = overrideStore(store, { appendJournal: () => () => new Promise<never>(() => undefined) })
  const first = new Coordinator({ bus, store: frozen, config: { ...cfg, coordinatorId: 'c1' } })
  await first.start()
  const id = await first.createTask({ graph: { nodes: [{ node_id: 'a', type: 'step' }] } })
  assert.equal(await created(first), 1)
  await first.kill()
  const stored = await store.getTask(id)
  assert.equal(stored?.status, 'queued')
  assert.equal((stored as { v?: number } | null)?.v, 0, 'nothing was written about it')
  const second = new Coordinator({ bus, store, config: { ...cfg, coordinatorId: 'c2' } })
  await second.start()
  try {
    await waitFor(async () => (await created(second, 'flowkit_tasks_adopted_total')) === 1, { message: 'the task was never taken up' })
    assert.equal(await created(second), 0, 'created (and counted) by the first coordinator')
  } finally {
    await second.stop()
  }
})

test('a store submission adopted while the status topic takes a while to join counts as created (its claim entry is written meanwhile)', async () => {
  const bus = new MemoryBus()
  const store = new MemoryStore()
  // Status subscriptions join 300 ms late (as a Kafka consumer group does): the claim entry of the
  // adopted task is written before the coordinator asks whether it was ever written.
  const late = overrideMethods(bus, {
    subscribe: (f) => async (...a: unknown[]) => {
      const o = a[0] as { topics: string[] }
      if (o.topics.some((t) => t.startsWith('status.'))) await new Promise((r) => setTimeout(r, 300))
      return f(...a)
    },
  })
  const c = new Coordinator({ bus: late, store, config: { sweepIntervalSec: 3600, coordinatorId: 'c1' } })
  await c.start()
  try {
    const { buildTask } = await import('../../src/coordinator/submit.ts')
    const { controlRequest, sendControl } = await import('../../src/coordinator/control.ts')
    const t = buildTask({ graph: { nodes: [{ node_id: 'a', type: 'late-step' }] } }, { coordinatorFns: new Set(), rejectUnknownInputAdapters: false }, Date.now())
    await store.createTask(t)
    await sendControl(bus, c.config.topicControl, controlRequest('adopt', t.id, Date.now()))
    await waitFor(async () => (await created(c, 'flowkit_tasks_adopted_total')) === 1, { message: 'never adopted' })
    assert.ok(((await store.getTask(t.id)) as { v?: number } | null)?.v !== 0, 'its claim entry was written')
    assert.equal(await created(c), 1)
  } finally {
    await c.stop()
  }
})
