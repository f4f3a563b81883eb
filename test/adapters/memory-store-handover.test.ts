import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryStore } from '../../src/adapters/memory/store.ts'
import { handOver, isHandedOver } from '../../src/ports/store-rules.ts'
import type { TaskDoc } from '../../src/ports/store.ts'

const doc = (id: string): TaskDoc =>
  ({
    id,
    status: 'queued',
    params: { nested: { n: 1 } },
    graph: Object.freeze({ nodes: [] }),
    nodes: {},
    coordinator: { vars: {}, cancelled: false, cancel_reason: null },
    result: null,
    error: null,
    created_at_ms: 1,
    updated_at_ms: 1,
    finished_at_ms: null,
  }) as unknown as TaskDoc

test('the memory store keeps by reference only what was handed over: a shallowly frozen document is copied in', async () => {
  const store = new MemoryStore()
  await store.init()
  const frozen = Object.freeze(doc('t-frozen'))
  await store.createTask(frozen)
  ;(frozen.params['nested'] as { n: number }).n = 2 // the caller's nested object was never frozen
  assert.deepEqual((await store.getTask('t-frozen'))?.params, { nested: { n: 1 } }, 'a frozen caller document is copied in')
  const given = handOver(doc('t-given'))
  await store.createTask(given)
  assert.deepEqual((await store.getTask('t-given'))?.params, { nested: { n: 1 } })
  const out = await store.getTask('t-given')
  ;(out?.params['nested'] as { n: number }).n = 3 // what comes out is a copy
  assert.deepEqual((await store.getTask('t-given'))?.params, { nested: { n: 1 } })
})

test('the hand-over mark is invisible and is not copied: spreads, JSON and structuredClone of a handed-over document are not handed over', () => {
  const doc = { a: 1, nested: { b: [1, 2] } }
  assert.equal(isHandedOver(doc), false)
  assert.equal(handOver(doc), doc)
  assert.equal(handOver(doc), doc, 'handing over twice is harmless')
  assert.equal(isHandedOver(doc), true)
  assert.deepEqual(Object.keys(doc), ['a', 'nested'])
  assert.equal(JSON.stringify(doc), '{"a":1,"nested":{"b":[1,2]}}')
  assert.equal(isHandedOver({ ...doc }), false)
  assert.equal(isHandedOver(Object.assign({}, doc)), false)
  assert.equal(isHandedOver(JSON.parse(JSON.stringify(doc))), false)
  assert.equal(isHandedOver(structuredClone(doc)), false)
  assert.equal(isHandedOver(doc.nested), false, 'only the document itself is marked')
})
