/**
 * Records whose text is made on first read (encodedLater): the memory bus carries them without
 * making their text, a consumer that reads `value` gets the JSON of `decoded`, and the worker's
 * size check measures them by a bound until the bound does not fit.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { type BusMessage, type BusRecord, MemoryBus, type RoleHandler } from 'flowkit'
import { encodedLater, isTextLater } from '../../src/ports/bus.ts'
import { checkBusRecord, jsonLengthBound } from '../../src/worker/results.ts'
import { waitFor } from '../helpers/wait.ts'
import { startRuntime } from '../helpers/runtime.ts'

/** An object whose JSON text can be seen being made (its toJSON counts the calls). */
function watched(payload: Record<string, unknown>): { env: object; made: () => number } {
  let made = 0
  const env = {
    v: 1,
    payload,
    toJSON() {
      made++
      return { v: 1, payload }
    },
  }
  return { env, made: () => made }
}

test('the memory bus delivers a record made by encodedLater without making its text; reading value makes it once', async () => {
  const bus = new MemoryBus()
  await bus.ensureTopics([{ name: 'lazy.t', partitions: 1 }])
  const { env, made } = watched({ kind: 'X', n: 1 })
  const got: BusMessage[] = []
  const sub = await bus.subscribe({ groupId: 'g', topics: ['lazy.t'], handler: async (m) => void got.push(m) })
  try {
    await bus.produce([encodedLater('lazy.t', 'k', env)])
    await waitFor(() => got.length === 1)
    const m = got[0] as BusMessage
    assert.equal(m.decoded, env, 'the consumer gets the object')
    assert.equal(made(), 0, 'delivered, and stored, without its text')
    assert.ok(isTextLater(m))
    assert.deepEqual(JSON.parse(m.value), { v: 1, payload: { kind: 'X', n: 1 } })
    assert.equal(m.value, m.value)
    const listed = bus.records('lazy.t')[0] as BusMessage
    assert.equal(listed.value, m.value, 'a copy reads the same text')
    assert.equal(made(), 1, 'made once, on the first read, shared by the copies')
    const copied = { ...listed, value: listed.value }
    assert.deepEqual(JSON.parse(copied.value), { v: 1, payload: { kind: 'X', n: 1 } }, 'a copy that reads value carries the text')
  } finally {
    await sub.close()
    await bus.close()
  }
})

test('the size check of a record whose text is not made uses a bound, and measures the text when the bound does not fit', () => {
  const small = watched({ kind: 'BATCH_OK', metrics: { count: 1 } })
  checkBusRecord('small event', encodedLater('t', 'k', small.env))
  assert.equal(small.made(), 0, 'a bound well within the limit: no text made')

  const big = { v: 1, payload: { kind: 'BATCH_OK', metrics: { blob: 'x'.repeat(2_000_000) } } }
  assert.ok(jsonLengthBound(big, 0) >= JSON.stringify(big).length)
  assert.throws(() => checkBusRecord('big event', encodedLater('t', 'k', big), 1_000_000), /too large/)
  // Near the limit the bound does not fit: the text is measured, and it fits.
  const near = { v: 1, payload: { kind: 'BATCH_OK', metrics: { blob: 'x'.repeat(100_000) } } }
  checkBusRecord('near event', encodedLater('t', 'k', near), 1_000_000)
})

test('jsonLengthBound is never below the length of the JSON text', () => {
  const samples: unknown[] = [
    null,
    true,
    0,
    -1.5e300,
    '',
    'plain',
    'quote " backslash \\ newline \n control \u0001 unicode é 日本 \u{1F600}',
    [],
    [1, 'a', null, [2, { b: 'c' }]],
    { a: 1, 'k"ey': { nested: ['x', 2.5, false] }, empty: {} },
  ]
  for (const v of samples) assert.ok(jsonLengthBound(v, 0) >= JSON.stringify(v).length, JSON.stringify(v))
})

test('the length bound a worker gives its status records is never below their text', async () => {
  const seen: BusRecord[] = []
  class Spy extends MemoryBus {
    override async produce(records: BusRecord[]): Promise<void> {
      for (const r of records) if (isTextLater(r) && r.topic.startsWith('status.')) seen.push(r)
      return super.produce(records)
    }
  }
  const handler: RoleHandler = {
    async processBatch(batch) {
      const i = Number(String(batch.batch_uid).slice(1))
      if (i === 2) return { success: false, error: 'bad "row" \u0001 é', reason_code: 'bad_row', permanent: true }
      return { metrics: { count: 1, ratio: -1.5e-300 }, artifacts_ref: { uri: 'mem://a"b', note: 'quote " and \\ and é 日本 \u0001', nested: { deep: [1.5, null, true] } } }
    },
    async loadInput() {
      return [{ batch_uid: 'b0', payload: {} }, { batch_uid: 'b1', payload: {} }, { batch_uid: 'b2', payload: {} }]
    },
    iterBatches(loaded) {
      return loaded as Array<{ batch_uid: string; payload: Record<string, unknown> }>
    },
  }
  const rt = await startRuntime({ bus: new Spy(), handlers: { a: handler } })
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'a' }] } })
    await rt.coordinator.waitForTask(id, { timeoutMs: 10_000 })
    assert.ok(seen.length >= 4, `status records seen: ${seen.map((r) => r.value).join(" | ")}`)
    for (const r of seen) {
      const bound = (r as { lengthBound?: number }).lengthBound
      assert.equal(typeof bound, 'number')
      assert.ok((bound as number) >= r.value.length, `${bound} >= ${r.value.length}: ${r.value}`)
    }
  } finally {
    await rt.stop()
  }
})
