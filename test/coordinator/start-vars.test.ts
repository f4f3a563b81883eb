/**
 * A START carries the task variables when they are small enough (256 KiB of JSON); deciding that
 * measured them once per START, so a fan-out of thousands of nodes after a task wrote large
 * variables stalled the event loop for seconds (about 1 ms per START at 1 MB). They are measured
 * once per variables object (a task's variables are replaced, never changed in place).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { startCommand } from '../../src/coordinator/commands.ts'
import { TaskRuntime } from '../../src/coordinator/runtime.ts'
import { coordinatorConfig } from '../../src/coordinator/wiring.ts'
import { makeNodeSpec, makeNodeState, makeTaskDoc } from '../helpers/fixtures.ts'

test('the STARTs of a fan-out measure the task variables once', () => {
  const ids = Array.from({ length: 50 }, (_, i) => `n${i}`)
  const doc = makeTaskDoc({
    status: 'running',
    graph: { schema_version: '1.0', nodes: ids.map((id) => makeNodeSpec(id, 'step')), edges: [], edges_ex: [] },
    nodes: Object.fromEntries(ids.map((id) => [id, makeNodeState(id, 'step', { status: 'running', attempt_epoch: 1 })])),
  })
  let measured = 0
  // toJSON runs whenever the variables are turned into JSON.
  const counted = (value: Record<string, unknown>): Record<string, unknown> => ({
    ...value,
    toJSON: () => {
      measured++
      return value
    },
  })
  doc.coordinator.vars = counted({ big: 'x'.repeat(1000) })
  const rt = new TaskRuntime(doc, 1)
  const config = coordinatorConfig({})
  for (let i = 0; i < ids.length; i++) startCommand(config, rt, i, 1, 0, Date.now())
  assert.equal(measured, 1)
  // New variables are measured again.
  rt.change({ vars: counted({ small: 1 }) })
  for (let i = 0; i < ids.length; i++) startCommand(config, rt, i, 1, 0, Date.now())
  assert.equal(measured, 2)
})
