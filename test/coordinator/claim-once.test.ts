/**
 * Two claims of one task at once (a hand-over's load and an adopt request, for a task whose batch
 * ledger lives in rows, so the load awaits a read): one runtime, its running nodes' slots taken
 * once. Before, both passed the "already held?" check, both took the slots (a running node counted
 * twice against maxRunningNodes, one never given back) and the second runtime replaced the first.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryStore } from 'flowkit'
import { claim } from '../../src/coordinator/claim.ts'
import type { HandoverDeps } from '../../src/coordinator/handover.ts'
import { Limits } from '../../src/coordinator/limits.ts'
import type { TaskRuntime } from '../../src/coordinator/runtime.ts'
import { makeNodeState, makeTaskDoc } from '../helpers/fixtures.ts'
import { overrideStore } from '../helpers/store-proxy.ts'

test('a task claimed twice at once is loaded once: its running node takes one slot', async () => {
  const store = new MemoryStore()
  let open!: () => void
  const gate = new Promise<void>((r) => {
    open = r
  })
  let rowReads = 0
  // The batch rows' read is held, so both claims are under way together.
  const slow = overrideStore(store, {
    listBatchMetrics: (original) => async (...args: unknown[]) => {
      rowReads++
      await gate
      return original(...args)
    },
  })
  const tasks = new Map<string, TaskRuntime>()
  const limits = new Limits(5, {})
  const marked: TaskRuntime[] = []
  const d = { store: slow, engine: { tasks }, limits, writer: 'c-test', mark: (rt: TaskRuntime) => void marked.push(rt) } as unknown as HandoverDeps
  const doc = makeTaskDoc({ status: 'running' })
  doc.nodes['extract'] = makeNodeState('extract', 'extractor', { status: 'running', attempt_epoch: 1, dispatched_at_ms: 1, accepted_at_ms: 2 })
  const stored = { ...doc, v: 3, sent_through: 3, batches: {}, batches_in_rows: true }
  const first = claim(d, stored, 1)
  const second = claim(d, stored, 1)
  assert.ok(first !== null && second !== null)
  open()
  const [a, b] = await Promise.all([first, second])
  assert.ok(a !== null)
  assert.equal(b, null, 'the second claim finds it held')
  assert.equal(tasks.get(doc.id), a)
  assert.equal(limits.running, 1, 'the running node holds one slot')
  assert.equal(rowReads, 1)
  assert.equal(marked.length, 1)
  // Once loaded, a later claim is refused at once, as before.
  assert.equal(claim(d, stored, 1), null)
})

test('when the claim under way fails (a store error), the other claim loads the task itself', async () => {
  const store = new MemoryStore()
  let reads = 0
  let release!: () => void
  const held = new Promise<void>((r) => {
    release = r
  })
  const failing = overrideStore(store, {
    listBatchMetrics: (original) => async (...args: unknown[]) => {
      reads++
      if (reads === 1) {
        await held
        throw new Error('store down')
      }
      return original(...args)
    },
  })
  const tasks = new Map<string, TaskRuntime>()
  const limits = new Limits(5, {})
  const d = { store: failing, engine: { tasks }, limits, writer: 'c-test', mark: () => undefined } as unknown as HandoverDeps
  const doc = makeTaskDoc({ status: 'running' })
  doc.nodes['extract'] = makeNodeState('extract', 'extractor', { status: 'running', attempt_epoch: 1, dispatched_at_ms: 1, accepted_at_ms: 2 })
  const stored = { ...doc, v: 3, sent_through: 3, batches: {}, batches_in_rows: true }
  const first = claim(d, stored, 1)
  const second = claim(d, stored, 1)
  release()
  await assert.rejects(first as Promise<unknown>, /store down/)
  const rt = await second
  assert.ok(rt !== null, 'loaded by the second claim')
  assert.equal(tasks.get(doc.id), rt)
  assert.equal(limits.running, 1)
  assert.equal(reads, 2)
})
