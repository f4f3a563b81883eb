/**
 * Coordinator.watch: a task followed as it runs (issue 8, task events API), and the
 * `flowkit:task-events` diagnostics channel.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { ErrorCode, FlowkitError, TASK_EVENTS_CHANNEL, type RoleHandler, type TaskEvent } from 'flowkit'
import { gate } from '../helpers/gate.ts'
import { waitFor } from '../helpers/wait.ts'
import { noopHandler, sourceHandler, startRuntime } from '../helpers/runtime.ts'

test('watch yields a snapshot, every node transition once durable, and ends with the task', async () => {
  const rt = await startRuntime({ handlers: { src: sourceHandler(6, 2), sink: noopHandler() } })
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'a', type: 'src' }, { node_id: 'b', type: 'sink', depends_on: ['a'] }] } })
    const events: TaskEvent[] = []
    for await (const e of rt.coordinator.watch(id)) events.push(e)
    assert.equal(events[0]?.type, 'snapshot')
    const last = events.at(-1)
    assert.deepEqual(last?.type === 'task' ? last.status : last, 'finished')
    const b = events.filter((e) => e.type === 'node' && e.node_id === 'b').map((e) => (e.type === 'node' ? e.status : ''))
    assert.ok(b.includes('finished'), `b's events: ${b.join(',')}`)
    const aDone = events.find((e) => e.type === 'node' && e.node_id === 'a' && e.status === 'finished')
    assert.ok(aDone?.type === 'node' && aDone.stats['count'] === 6, 'a finished with its stats')
    // Once ended, watching again gives the final snapshot alone.
    const again: TaskEvent[] = []
    for await (const e of rt.coordinator.watch(id)) again.push(e)
    assert.equal(again.length, 1)
    assert.equal(again[0]?.type === 'snapshot' ? again[0].task.status : null, 'finished')
  } finally {
    await rt.stop()
  }
})

test('a task that fails while another node runs ends, on watch, with its error (not null)', async () => {
  const bad: RoleHandler = {
    async processBatch() {
      throw Object.assign(new Error('bad input'), { permanent: true })
    },
  }
  const hang: RoleHandler = {
    async processBatch(_b, ctx) {
      await ctx.sleep(30_000)
      return {}
    },
  }
  const rt = await startRuntime({ handlers: { bad, hang }, worker: { concurrency: 2 } })
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'x', type: 'hang' }, { node_id: 'b', type: 'bad', retry_policy: { max: 1 } }] } })
    const events: TaskEvent[] = []
    for await (const e of rt.coordinator.watch(id)) events.push(e)
    const last = events.at(-1)
    const t = await rt.coordinator.getTask(id)
    assert.equal(t?.status, 'failed')
    assert.match(t?.error ?? '', /node b failed/)
    assert.deepEqual(last?.type === 'task' ? [last.status, last.error] : last, ['failed', t?.error])
  } finally {
    await rt.stop()
  }
})

test('watch of an unknown task throws TASK_NOT_FOUND; an abort ends it', async () => {
  const rt = await startRuntime({ handlers: { sink: noopHandler() } })
  try {
    await assert.rejects(
      async () => {
        for await (const _ of rt.coordinator.watch('nope')) void _
      },
      (err: unknown) => err instanceof FlowkitError && err.code === ErrorCode.TaskNotFound,
    )
    // A task that never runs (no worker for its type): the watch ends when aborted.
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'x', type: 'nobody' }] } })
    const ac = new AbortController()
    const seen: TaskEvent[] = []
    for await (const e of rt.coordinator.watch(id, { signal: ac.signal })) {
      seen.push(e)
      ac.abort()
    }
    assert.equal(seen[0]?.type, 'snapshot')
    await rt.coordinator.cancelTask(id)
  } finally {
    await rt.stop()
  }
})

test('every task event is published on the flowkit:task-events diagnostics channel', async () => {
  const got: TaskEvent[] = []
  const onEvent = (m: unknown): void => {
    got.push(m as TaskEvent)
  }
  subscribe(TASK_EVENTS_CHANNEL, onEvent)
  const rt = await startRuntime({ handlers: { sink: noopHandler() } })
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'x', type: 'sink' }] } })
    await rt.coordinator.waitForTask(id)
    const mine = got.filter((e) => e.task_id === id)
    assert.ok(mine.some((e) => e.type === 'node' && e.node_id === 'x' && e.status === 'running'))
    assert.ok(mine.some((e) => e.type === 'task' && e.status === 'finished'))
  } finally {
    unsubscribe(TASK_EVENTS_CHANNEL, onEvent)
    await rt.stop()
  }
})

test('a watch whose coordinator stops before the task ends throws CLOSED after the events it had, instead of waiting for ever', async () => {
  const held = gate()
  const holding: RoleHandler = {
    async processBatch(_b, ctx) {
      await held.wait(ctx.signal)
      return { metrics: { count: 1 } }
    },
  }
  const rt = await startRuntime({ handlers: { hold: holding } })
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'a', type: 'hold' }] } })
    const events: TaskEvent[] = []
    const watching = (async () => {
      for await (const e of rt.coordinator.watch(id)) events.push(e)
    })()
    const outcome = watching.then(
      () => 'ended',
      (err: unknown) => err,
    )
    await waitFor(() => events.some((e) => e.type === 'node' && e.node_id === 'a' && e.status === 'running'), { message: 'the watch saw the node run' })
    await rt.coordinator.stop()
    const err = await outcome
    assert.ok(err instanceof FlowkitError && err.code === ErrorCode.Closed, `the watch ended with ${String(err)}`)
    assert.equal(events[0]?.type, 'snapshot')
  } finally {
    held.open()
    await rt.stop()
  }
})
