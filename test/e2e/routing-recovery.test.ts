import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { Coordinator, MemoryBus, MemoryStore, PermanentError, protocol, type RoleHandler, type TaskView, Worker } from 'flowkit'
import { startRuntime, noopHandler } from '../helpers/runtime.ts'
import { gate } from '../helpers/gate.ts'
import { waitFor } from '../helpers/wait.ts'

const nodeOf = (t: TaskView | null, id: string) => t!.nodes.find((n) => n.node_id === id)!
const failing: RoleHandler = { async processBatch() { throw new PermanentError('no', 'broken') } }

describe('routing', () => {
  test('S-044 routing.on_success targets run only when the node succeeds; on_failure targets are skipped', async () => {
    const rt = await startRuntime({ handlers: { ok: noopHandler() }, worker: { concurrency: 2 } })
    try {
      const id = await rt.coordinator.createTask({
        graph: {
          nodes: [
            { node_id: 'check', type: 'ok', routing: { on_success: ['good'], on_failure: ['bad'] } },
            { node_id: 'good', type: 'ok' },
            { node_id: 'bad', type: 'ok' },
            { node_id: 'after_bad', type: 'ok', depends_on: ['bad'] },
          ],
        },
      })
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10000 })
      assert.equal(t.status, 'finished')
      assert.equal(nodeOf(t, 'good').status, 'finished')
      assert.equal(nodeOf(t, 'bad').status, 'skipped')
      assert.equal(nodeOf(t, 'after_bad').status, 'skipped', 'a node whose parent was skipped is skipped')
    } finally {
      await rt.stop()
    }
  })

  test('S-046 routing.on_failure runs on a permanent failure, which is then handled; the success branch is skipped', async () => {
    const rt = await startRuntime({ handlers: { ok: noopHandler(), fail: failing }, worker: { concurrency: 2 } })
    try {
      const id = await rt.coordinator.createTask({
        graph: {
          nodes: [
            { node_id: 'check', type: 'fail', routing: { on_success: ['good'], on_failure: ['recover'] } },
            { node_id: 'good', type: 'ok' },
            { node_id: 'recover', type: 'ok' },
            { node_id: 'needs_check', type: 'ok', depends_on: ['check'] },
          ],
        },
      })
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10000 })
      assert.equal(t.status, 'finished', 'a handled failure does not fail the task')
      assert.equal(nodeOf(t, 'check').status, 'failed')
      assert.equal(nodeOf(t, 'recover').status, 'finished')
      assert.equal(nodeOf(t, 'good').status, 'skipped')
      assert.equal(nodeOf(t, 'needs_check').status, 'skipped')
    } finally {
      await rt.stop()
    }
  })
})

describe('leases and recovery', () => {
  test('S-024/S-040/S-026 heartbeats move the lease deadline forward, never backwards', async () => {
    const hold = gate()
    const h: RoleHandler = { async processBatch(_b, ctx) { await hold.wait(ctx.signal); return {} } }
    const rt = await startRuntime({ handlers: { step: h } })
    try {
      const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'step' }] } })
      await waitFor(async () => typeof nodeOf(await rt.coordinator.getTask(id), 'n').lease.deadline_ts_ms === 'number')
      const n0 = nodeOf(await rt.coordinator.getTask(id), 'n')
      const d0 = n0.lease.deadline_ts_ms as number
      const hb = (deadline: number, tag: string) =>
        protocol.encode(
          protocol.makeEnvelope({
            msg_type: 'event', role: 'worker', task_id: id, node_id: 'n', step_type: 'step', attempt_epoch: 1, ts_ms: Date.now(),
            dedup_id: `hb-${tag}`,
            payload: { kind: 'TASK_HEARTBEAT', worker_id: n0.lease.worker_id, lease_id: n0.lease.lease_id, lease_deadline_ts_ms: deadline },
          }),
        )
      await rt.bus.produce([{ topic: rt.statusTopic('step'), key: `${id}:n`, value: hb(d0 + 60_000, 'fwd') }])
      await waitFor(async () => nodeOf(await rt.coordinator.getTask(id), 'n').lease.deadline_ts_ms === d0 + 60_000, { message: 'deadline never moved forward' })
      // A backwards heartbeat, then a marker on the same key that leaves the lease alone (a batch
      // report): once the marker is applied, so is the heartbeat before it.
      const marker = protocol.encode(
        protocol.makeEnvelope({
          msg_type: 'event', role: 'worker', task_id: id, node_id: 'n', step_type: 'step', attempt_epoch: 1, ts_ms: Date.now(),
          dedup_id: 'marker-batch',
          payload: { kind: 'BATCH_OK', worker_id: n0.lease.worker_id, batch_uid: 'marker', metrics: {}, artifacts_ref: null },
        }),
      )
      const before = nodeOf(await rt.coordinator.getTask(id), 'n')
      const seen = before.batches_seen ?? 0
      await rt.bus.produce([
        { topic: rt.statusTopic('step'), key: `${id}:n`, value: hb(d0 - 30_000, 'back') },
        { topic: rt.statusTopic('step'), key: `${id}:n`, value: marker },
      ])
      await waitFor(async () => (nodeOf(await rt.coordinator.getTask(id), 'n').batches_seen ?? 0) > seen, { message: 'marker batch not applied' })
      const after = nodeOf(await rt.coordinator.getTask(id), 'n')
      assert.equal(after.lease.deadline_ts_ms, d0 + 60_000, 'the backwards heartbeat did not move the deadline back')
      assert.ok((after.lease_expires_at_ms ?? 0) >= (before.lease_expires_at_ms ?? 0), 'nor the lease expiry')
      // A later heartbeat still moves it forward.
      await rt.bus.produce([{ topic: rt.statusTopic('step'), key: `${id}:n`, value: hb(d0 + 60_001, 'again') }])
      await waitFor(async () => nodeOf(await rt.coordinator.getTask(id), 'n').lease.deadline_ts_ms === d0 + 60_001, { message: 'a later heartbeat not applied' })
      hold.open()
      assert.equal((await rt.coordinator.waitForTask(id, { timeoutMs: 10000 })).status, 'finished')
    } finally {
      hold.open()
      await rt.stop()
    }
  })

  test('S-020 on restart, a running node whose complete artifact exists is finished without a new dispatch', async () => {
    const bus = new MemoryBus()
    const store = new MemoryStore()
    const first = new Coordinator({ bus, store })
    await first.start()
    const id = await first.createTask({ graph: { nodes: [{ node_id: 'a', type: 'step' }, { node_id: 'b', type: 'coordinator_fn', depends_on: ['a'], io: { fn: 'noop' } }] } })
    await waitFor(async () => nodeOf(await first.getTask(id), 'a').status === 'running')
    await first.stop()
    // A worker finished the node and wrote its complete artifact, but its TASK_DONE never arrived.
    await store.upsertArtifact({ task_id: id, node_id: 'a', batch_uid: null, status: 'complete', meta: { rows: 3 }, attempt_epoch: 1, worker_id: 'gone' }, Date.now())
    const cmdsBefore = bus.records('cmd.step.v1').length
    const second = new Coordinator({ bus, store, config: { discoveryWindowSec: 0.2 } })
    await second.start()
    try {
      const t = await second.waitForTask(id, { timeoutMs: 10000 })
      assert.equal(t.status, 'finished')
      assert.equal(nodeOf(t, 'a').attempt_epoch, 1)
      assert.equal(bus.records('cmd.step.v1').length, cmdsBefore, 'no new command was sent')
    } finally {
      await second.stop()
    }
  })
})

describe('outbox', () => {
  test('S-029/S-031 enqueueing the same (topic, key, dedup_id) twice gives one row and one send', async () => {
    const bus = new MemoryBus()
    const store = new MemoryStore()
    const c = new Coordinator({ bus, store })
    await c.start()
    try {
      const row = { topic: 'cmd.x.v1', key: 'k', value: '{}', dedup_id: 'same' }
      assert.equal(await c.outbox.enqueue(row), true)
      assert.equal(await c.outbox.enqueue(row), false)
      await waitFor(() => bus.records('cmd.x.v1').length === 1)
    } finally {
      await c.stop()
    }
  })

  test('S-031 across a restart: a coordinator restarted cleanly sends none of the commands its predecessor sent', async () => {
    // The coordinator's commands are effects of its journal entries; what was sent is recorded
    // (sent_through) before a clean stop ends, so the next coordinator re-issues only the unsent.
    const bus = new MemoryBus()
    const store = new MemoryStore()
    const first = new Coordinator({ bus, store })
    await first.start()
    let second: Coordinator | null = null
    const worker = new Worker({ bus, store, handlers: { step: noopHandler() } })
    try {
      // No worker yet: a's START is sent and nothing else happens before the stop.
      const id = await first.createTask({ graph: { nodes: [{ node_id: 'a', type: 'step' }, { node_id: 'b', type: 'step', depends_on: ['a'] }] } })
      const startsOf = (node: string): number => bus.records('cmd.step.v1').filter((r) => r.key === `${id}:${node}`).length
      await waitFor(() => startsOf('a') === 1, { message: "a's START never went out" })
      await first.stop()
      second = new Coordinator({ bus, store, config: { discoveryWindowSec: 0.2 } })
      await second.start()
      await waitFor(async () => (await second?.getTask(id))?.status === 'running', { message: 'the second coordinator never took the task up' })
      await bus.waitForIdle()
      assert.equal(startsOf('a'), 1, "a's START was not sent again by the second coordinator")
      await worker.start()
      const t = await second.waitForTask(id, { timeoutMs: 10_000 })
      assert.equal(t.status, 'finished')
      assert.equal(nodeOf(t, 'a').attempt_epoch, 1)
      assert.equal(startsOf('a'), 1)
      assert.equal(startsOf('b'), 1)
    } finally {
      await worker.stop()
      await second?.stop()
      await first.stop()
    }
  })

  test('S-030 a crash between send and mark-sent: the restarted coordinator sends the command again, the worker runs it once', async () => {
    const bus = new MemoryBus()
    const store = new MemoryStore()
    const first = new Coordinator({ bus, store })
    await first.start()
    let second: Coordinator | null = null
    let runs = 0
    const worker = new Worker({ bus, store, handlers: { step: { async processBatch() { runs++; return { metrics: { count: 1 } } } } } })
    try {
      const id = await first.createTask({ graph: { nodes: [{ node_id: 'a', type: 'step' }] } })
      const starts = (): number => bus.records('cmd.step.v1').filter((r) => r.key === `${id}:a`).length
      await waitFor(() => starts() === 1, { message: "a's START never went out" })
      // Sent, not yet recorded as sent (nothing else was written since): a crash now.
      await first.kill()
      second = new Coordinator({ bus, store, config: { discoveryWindowSec: 0.2 } })
      await second.start()
      await waitFor(() => starts() === 2, { message: 'the restarted coordinator did not send the unrecorded START again (at least once)' })
      await worker.start()
      const t = await second.waitForTask(id, { timeoutMs: 10_000 })
      assert.equal(t.status, 'finished')
      assert.equal(nodeOf(t, 'a').attempt_epoch, 1, 'the same attempt')
      assert.equal(runs, 1, 'the worker ran it once (it dedups the second START)')
      assert.equal(nodeOf(t, 'a').stats['count'], 1)
    } finally {
      await worker.stop()
      await second?.stop()
    }
  })

  test('S-028/S-033 failed sends are retried with backoff, parked as failed after max attempts, and an operator can retry them', async () => {
    const bus = new MemoryBus()
    const store = new MemoryStore()
    let broken = true
    bus.setInterceptor(() => {
      if (broken) throw new Error('broker down')
      return { action: 'pass' }
    })
    const c = new Coordinator({ bus, store, config: { outboxMaxRetry: 3, outboxBackoffMinMs: 5, outboxBackoffMaxMs: 20, outboxDispatchTickSec: 0.01 } })
    await c.start()
    try {
      await c.outbox.enqueue({ topic: 'cmd.x.v1', key: 'k', value: '{}', dedup_id: 'd1' })
      await waitFor(async () => (await c.listDeadLetters()).length === 1, { message: 'never dead-lettered' })
      const [dead] = await c.listDeadLetters()
      assert.equal(dead!.attempts, 3)
      assert.match(dead!.last_error ?? '', /broker down/)
      broken = false
      assert.equal(await c.retryDeadLetter(dead!.id), true)
      await waitFor(async () => (await store.outboxList({ status: 'sent' })).length === 1, { message: 'requeued row never sent' })
      assert.equal(bus.records('cmd.x.v1').length, 1)
      assert.equal(await c.retryDeadLetter(dead!.id), false, 'a sent row is not dead-lettered')
    } finally {
      await c.stop()
    }
  })

  test('a dead-lettered TASK_START whose attempt ended (start_undeliverable, the task failed) is not retried: DEAD_LETTER_STALE, it stays a dead letter', async () => {
    const bus = new MemoryBus()
    const store = new MemoryStore()
    let broken = true
    bus.setInterceptor((r) => {
      if (broken && r.topic.startsWith('cmd.')) throw new Error('message too large')
      return { action: 'pass' }
    })
    const c = new Coordinator({ bus, store, config: { outboxMaxRetry: 2, outboxBackoffMinMs: 5, outboxBackoffMaxMs: 20, outboxDispatchTickSec: 0.01 } })
    await c.start()
    try {
      const id = await c.createTask({ graph: { nodes: [{ node_id: 'n', type: 'big', retry_policy: { max: 1 } }] } })
      const t = await c.waitForTask(id, { timeoutMs: 10_000 })
      assert.equal(t.status, 'failed')
      assert.match(t.nodes[0]?.last_error?.error ?? '', /message too large/)
      const [dead] = await c.listDeadLetters()
      assert.ok(dead !== undefined)
      broken = false
      await assert.rejects(c.retryDeadLetter(dead.id), (err: Error & { code?: string }) => {
        assert.equal(err.code, 'DEAD_LETTER_STALE')
        assert.match(err.message, new RegExp(`its task ${id} has ended \\(failed\\)`))
        return true
      })
      assert.equal((await c.listDeadLetters()).length, 1, 'it stays a dead letter')
      assert.equal(bus.records('cmd.big.v1').length, 0, 'no START went out')
    } finally {
      await c.stop()
    }
  })
})

describe('heartbeat limits', () => {
  test('S-017/S-018 silent past the soft limit → suspected, recovers when the worker speaks; past the hard limit → lease lost, retried', async () => {
    const { TestClock } = await import('flowkit')
    const clock = new TestClock()
    const hold = gate()
    let runs = 0
    const h: RoleHandler = { async processBatch(_b, ctx) { runs++; if (runs === 1) await hold.wait(ctx.signal); return {} } }
    const rt = await startRuntime({
      clock,
      handlers: { step: h },
      coordinator: { heartbeatSoftSec: 5, heartbeatHardSec: 10 },
      worker: { leaseTtlSec: 1000, hbIntervalSec: 500 },
    })
    try {
      const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'step', retry_policy: { max: 3, backoff_sec: 0 } }] } })
      await waitFor(async () => nodeOf(await rt.coordinator.getTask(id), 'n').accepted_at_ms !== null)
      await clock.advance(6_000)
      await waitFor(async () => nodeOf(await rt.coordinator.getTask(id), 'n').suspected === true, { message: 'never suspected' })
      const n = nodeOf(await rt.coordinator.getTask(id), 'n')
      await rt.bus.produce([{
        topic: rt.statusTopic('step'),
        key: `${id}:n`,
        value: protocol.encode(protocol.makeEnvelope({
          msg_type: 'event', role: 'worker', task_id: id, node_id: 'n', step_type: 'step', attempt_epoch: 1, ts_ms: clock.now(), dedup_id: 'hb-1',
          payload: { kind: 'TASK_HEARTBEAT', worker_id: n.lease.worker_id, lease_id: n.lease.lease_id, lease_deadline_ts_ms: clock.now() + 1_000_000 },
        })),
      }])
      await waitFor(async () => nodeOf(await rt.coordinator.getTask(id), 'n').suspected === false, { message: 'never recovered' })
      assert.equal(nodeOf(await rt.coordinator.getTask(id), 'n').status, 'running')
      await clock.advance(11_000)
      await waitFor(async () => nodeOf(await rt.coordinator.getTask(id), 'n').attempt_epoch === 2, { message: 'never re-dispatched after the hard limit' })
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10000 })
      assert.equal(t.status, 'finished')
      assert.equal(nodeOf(t, 'n').failures, 1)
    } finally {
      hold.open()
      await rt.stop()
    }
  })
})

describe('retention', () => {
  test('the sweep purges journal entries older than retentionSec (no TTL indexes)', async () => {
    const { TestClock } = await import('flowkit')
    const clock = new TestClock()
    const rt = await startRuntime({ clock, handlers: { step: noopHandler() }, coordinator: { retentionSec: 3600, schedulerTickSec: 1 } })
    try {
      const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'step' }] } })
      await rt.coordinator.waitForTask(id, { timeoutMs: 10000 })
      assert.ok((await rt.store.readJournal([id])).length > 0)
      await clock.advance(2 * 3600 * 1000)
      // Keep time moving while waiting: the sweep sleeps on this clock between passes.
      await waitFor(
        async () => {
          await clock.advance(60_000)
          return (await rt.store.readJournal([id])).length === 0
        },
        { timeoutMs: 30_000, intervalMs: 50, message: 'journal entries never purged' },
      )
    } finally {
      await rt.stop()
    }
  })
})
