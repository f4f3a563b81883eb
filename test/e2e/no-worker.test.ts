/**
 * Nodes that cannot run say so (issue 8): a node whose type no live worker has announced is shown
 * `waiting_for_worker` and logged once (`node.no_worker`, with the known types) within seconds;
 * `requireKnownTypes` refuses such a graph at createTask.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { GraphValidationError, MemoryLogger } from 'flowkit'
import { noopHandler, startRuntime } from '../helpers/runtime.ts'
import { waitFor } from '../helpers/wait.ts'

test('a node whose type no worker serves is shown waiting_for_worker and logged, then runs once a worker comes', async () => {
  const log = new MemoryLogger()
  const rt = await startRuntime({ logger: log, handlers: { reader: noopHandler() } })
  try {
    await waitFor(async () => (await rt.coordinator.listWorkers()).length > 0, { message: 'the worker announced itself' })
    // A misspelled role: no worker serves "enrichr".
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'e', type: 'enrichr' }] } })
    await waitFor(async () => (await rt.coordinator.getTask(id))?.nodes[0]?.waiting_for_worker === true, { message: 'waiting_for_worker in the view' })
    await waitFor(() => log.records.some((r) => r.event === 'node.no_worker'), { timeoutMs: 15_000, message: 'node.no_worker logged' })
    const warn = log.records.find((r) => r.event === 'node.no_worker')!
    assert.equal(warn.level, 'warn')
    assert.equal(warn.fields['type'], 'enrichr')
    assert.deepEqual(warn.fields['known_types'], ['reader'])
    await rt.addWorker({ enrichr: noopHandler() })
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 60_000 })
    assert.equal(t.status, 'finished')
    assert.equal(t.nodes[0]?.waiting_for_worker, undefined)
  } finally {
    await rt.stop()
  }
})

test('requireKnownTypes refuses at createTask a graph whose type no live worker serves', async () => {
  const rt = await startRuntime({ handlers: { reader: noopHandler() }, coordinator: { requireKnownTypes: true } })
  try {
    await waitFor(async () => (await rt.coordinator.listWorkers()).length > 0, { message: 'the worker announced itself' })
    await assert.rejects(
      rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'r', type: 'reader' }, { node_id: 'e', type: 'enrichr', depends_on: ['r'] }] } }),
      (err: unknown) => err instanceof GraphValidationError && /"enrichr"/.test(err.message) && /known types: reader/.test(err.message),
    )
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'r', type: 'reader' }] } })
    assert.equal((await rt.coordinator.waitForTask(id)).status, 'finished')
  } finally {
    await rt.stop()
  }
})
