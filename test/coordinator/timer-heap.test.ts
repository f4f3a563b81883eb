/**
 * The coordinator's heap of deadlines: entries of tasks no longer held (ended and evicted, handed
 * over) do not stay until their time (a task deadline may be 30 days away): the heap is compacted
 * as it grows, and what remains still fires in time order.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Coordinator, MemoryBus, MemoryLogger, MemoryStore, TestClock } from 'flowkit'
import { TimerHeap, type TimerEntry } from '../../src/coordinator/timers.ts'
import { waitFor } from '../helpers/wait.ts'

test('entries of tasks no longer live are dropped as the heap grows; live ones fire in order, none early', async () => {
  const clock = new TestClock()
  const fired: TimerEntry[] = []
  const live = new Set<string>()
  const heap = new TimerHeap(clock, (due) => fired.push(...due), (id) => live.has(id))
  heap.start()
  const t0 = clock.now()
  // Deterministic pseudo-random times (an LCG), live and dead entries interleaved.
  let seed = 7
  const rnd = (): number => {
    seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31
    return seed / 2 ** 31
  }
  const want: TimerEntry[] = []
  for (let i = 0; i < 20_000; i++) {
    if (i % 10 === 0) {
      const e = { at: t0 + 1 + Math.floor(rnd() * 10_000), taskId: `live-${i}`, ord: i % 3 }
      live.add(e.taskId)
      want.push(e)
      heap.push(e)
    } else {
      heap.push({ at: t0 + 86_400_000 + i, taskId: `gone-${i}`, ord: -1 })
    }
  }
  assert.ok(heap.size < 2 * 1024 + 2 * want.length, `heap compacted: ${heap.size} entries for ${want.length} live ones`)
  for (let t = 0; t <= 10_000; t += 250) {
    await clock.advance(250)
    await waitFor(() => fired.every((e) => e.at <= clock.now()) && want.filter((e) => e.at <= clock.now()).length === fired.length, { timeoutMs: 5000, message: `fired by ${t}` })
  }
  assert.equal(fired.length, want.length, 'every live entry fired')
  assert.deepEqual(new Set(fired.map((e) => e.taskId)), new Set(want.map((e) => e.taskId)))
  for (let i = 1; i < fired.length; i++) {
    // Each drain hands over its due entries in time order.
    const a = fired[i - 1] as TimerEntry
    const b = fired[i] as TimerEntry
    assert.ok(a.at <= b.at || Math.floor((a.at - t0 - 1) / 250) !== Math.floor((b.at - t0 - 1) / 250), 'in order within a drain')
  }
  heap.stop()
})

test('tasks that ended and left memory leave no timer behind (1-day deadlines)', async () => {
  const bus = new MemoryBus()
  const store = new MemoryStore()
  const coordinator = new Coordinator({ bus, store, clock: new TestClock(), logger: new MemoryLogger() })
  await coordinator.start()
  try {
    const graph = { nodes: [{ node_id: 'j', type: 'coordinator_fn', io: { fn: 'noop' } }] }
    // Eight rounds of 1,000 tasks: at most ~1,000 are held at once, 8,000 were created.
    let peak = 0
    for (let round = 0; round < 8; round++) {
      const ids: string[] = []
      for (let i = 0; i < 1000; i++) ids.push(await coordinator.createTask({ graph, deadlineSec: 86_400 }))
      await Promise.all(ids.map((id) => coordinator.waitForTask(id, { timeoutMs: 60_000 })))
      await waitFor(() => coordinator.stats().active_tasks === 0, { timeoutMs: 30_000, message: 'every ended task left memory' })
      peak = Math.max(peak, coordinator.stats().timer_entries ?? 0)
    }
    // Bounded by twice the entries live at a compaction (the heap is compacted when it doubles).
    assert.ok(peak <= 4096, `timers held after 8,000 tasks, ~1,000 at a time: ${peak}`)
    // What the gauge shows: the timers of tasks held, none once idle.
    assert.equal(coordinator.stats().timers, 0)
  } finally {
    await coordinator.stop()
    await bus.close()
    await store.close()
  }
})
