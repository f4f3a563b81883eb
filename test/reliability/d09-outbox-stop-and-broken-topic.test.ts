/**
 * Defect 9 (issue 7): `Coordinator.stop()` waited for the outbox to work through everything it
 * had claimed (89 s with 40 failing rows), and one broken topic delayed every other command sent
 * in the same round. Now a stop does not wait on a hung or failing send (bounded), and a failing
 * topic backs off alone while the other topics' commands go out.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ErrorCode, FlowkitError, MemoryLogger } from 'flowkit'
import { noopHandler, startRuntime } from '../helpers/runtime.ts'
import { withBusFaults } from '../helpers/bus-faults.ts'
import { waitFor } from '../helpers/wait.ts'

test('defect 9: one broken topic does not hold back the commands of other topics', async () => {
  const rt = await startRuntime({
    handlers: { ok: noopHandler() },
    // A failed send backs off for at least 30 s: what fails with the broken topic waits that long.
    coordinator: { outboxBackoffMinMs: 30_000, outboxBackoffMaxMs: 60_000 },
    coordinatorBus: (bus) =>
      withBusFaults(bus, {
        produce: (records) => {
          if (records.some((r) => r.topic.includes('cmd.broken.'))) throw new Error('injected: topic cmd.broken is unavailable')
          return records
        },
      }),
  })
  try {
    // Both starts leave in the same round: one for the broken topic, one for a healthy one.
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'x', type: 'broken' }, { node_id: 'y', type: 'ok' }] } })
    await waitFor(async () => (await rt.coordinator.getTask(id))?.nodes.find((n) => n.node_id === 'y')?.status === 'finished', {
      timeoutMs: 10_000,
      message: 'node y (healthy topic) finished while x keeps failing',
    })
    await rt.coordinator.cancelTask(id)
  } finally {
    await rt.stop()
  }
})

test('defect 9: stop() does not wait for a send that hangs', async () => {
  const log = new MemoryLogger()
  let hung = 0
  const rt = await startRuntime({
    logger: log,
    handlers: { ok: noopHandler() },
    coordinatorBus: (bus) =>
      withBusFaults(bus, {
        produce: async (records) => {
          if (records.some((r) => r.topic.includes('cmd.stuck.'))) {
            hung++
            await new Promise(() => undefined) // the broker never answers
          }
          return records
        },
      }),
  })
  try {
    await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'x', type: 'stuck' }] } })
    await waitFor(() => hung > 0, { message: 'the send hangs' })
    let stopped = false
    const stop = rt.coordinator.stop().then(() => {
      stopped = true
    })
    // Bounded: the last send gets a few seconds, then the next coordinator re-issues from the state.
    await waitFor(() => stopped, { timeoutMs: 20_000, message: 'coordinator.stop() returned' })
    await stop
    assert.ok(log.records.some((r) => r.event === 'coordinator.stopped'))
  } finally {
    await rt.stop()
  }
})

test('defect 9: a record the broker refuses for good does not hold back the others of its topic', async () => {
  const rt = await startRuntime({
    handlers: { ok: noopHandler() },
    coordinator: { outboxBackoffMinMs: 30_000, outboxBackoffMaxMs: 60_000 },
    coordinatorBus: (bus) =>
      withBusFaults(bus, {
        produce: (records) => {
          if (records.some((r) => r.key?.includes('poison'))) throw new FlowkitError(ErrorCode.BusError, 'injected: MESSAGE_TOO_LARGE')
          return records
        },
      }),
  })
  try {
    // Three starts of one type leave in one round; the broker refuses one of them for good.
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'a', type: 'ok' }, { node_id: 'poison', type: 'ok' }, { node_id: 'b', type: 'ok' }] } })
    await waitFor(
      async () => {
        const t = await rt.coordinator.getTask(id)
        return ['a', 'b'].every((n) => t?.nodes.find((x) => x.node_id === n)?.status === 'finished')
      },
      { timeoutMs: 10_000, message: 'a and b finished while the poison record backs off' },
    )
    await rt.coordinator.cancelTask(id)
  } finally {
    await rt.stop()
  }
})
