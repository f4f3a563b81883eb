/**
 * MemoryBus retention: a long-running process does not keep every record it ever carried. Records
 * every subscribed group consumed go once they are older than the partition's last
 * `retention.records`; past `retention.maxRecords` the oldest go regardless, and a group behind
 * resumes at the oldest record kept (told in a warning). Offsets never change.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { MemoryBus } from '../../src/adapters/memory/bus.ts'
import type { MemoryBusOptions } from '../../src/adapters/memory/bus.ts'
import type { BusMessage, BusRecord } from '../../src/ports/bus.ts'
import { waitFor } from '../helpers/wait.ts'

function newBus(t: TestContext, options: MemoryBusOptions = {}): MemoryBus {
  const bus = new MemoryBus(options)
  t.after(() => bus.close())
  return bus
}

const records = (topic: string, from: number, n: number): BusRecord[] => Array.from({ length: n }, (_, i) => ({ topic, key: 'k', value: String(from + i) }))

describe('MemoryBus: retention', () => {
  it('drops what every group consumed beyond the records kept; a group subscribing later starts at the oldest kept, offsets unchanged', async (t) => {
    const bus = newBus(t, { retention: { records: 100 } })
    await bus.ensureTopics([{ name: 'r', partitions: 1 }])
    const seen: number[] = []
    await bus.subscribe({ groupId: 'g', topics: ['r'], batchHandler: async (ms) => void seen.push(...ms.map((m) => Number(m.value))) })
    for (let i = 0; i < 6; i++) await bus.produce(records('r', i * 1000, 1000))
    await waitFor(() => seen.length === 6000)
    assert.deepEqual(seen, Array.from({ length: 6000 }, (_, i) => i), 'the consuming group got every record, in order')
    await bus.produce(records('r', 6000, 1)) // a commit after the last records checks retention again
    await waitFor(() => seen.length === 6001)
    const kept = bus.records('r')
    assert.ok(kept.length >= 100 && kept.length < 100 + 1024 + 1, `kept ${kept.length} records`)
    assert.equal(kept.at(-1)?.offset, 6000)
    assert.equal(kept[0]?.offset, 6001 - kept.length, 'offsets are those the records were appended with')
    const late: BusMessage[] = []
    await bus.subscribe({ groupId: 'late', topics: ['r'], handler: async (m) => void late.push(m) })
    await waitFor(() => late.length === kept.length)
    assert.deepEqual(
      late.map((m) => m.offset),
      kept.map((m) => m.offset),
    )
    assert.deepEqual(
      late.map((m) => m.value),
      kept.map((m) => m.value),
    )
  })

  it('keeps what a subscribed group has not consumed yet (up to maxRecords)', async (t) => {
    const bus = newBus(t, { retention: { records: 10, maxRecords: 100_000 } })
    await bus.ensureTopics([{ name: 'p', partitions: 1 }])
    let fast = 0
    await bus.subscribe({ groupId: 'fast', topics: ['p'], batchHandler: async (ms) => {
        fast += ms.length
      },
    })
    const slow: string[] = []
    const sub = await bus.subscribe({ groupId: 'slow', topics: ['p'], handler: async (m) => void slow.push(m.value) })
    sub.pause()
    await bus.produce(records('p', 0, 5000))
    await waitFor(() => fast === 5000)
    assert.equal(bus.records('p').length, 5000, 'nothing the paused group has not read is dropped')
    sub.resume()
    await waitFor(() => slow.length === 5000)
    assert.equal(slow[4999], '4999')
  })

  it('past maxRecords drops the oldest even unconsumed; the group behind resumes at the oldest kept, with a warning', async (t) => {
    const warnings: Record<string, unknown>[] = []
    const bus = newBus(t, { retention: { records: 0, maxRecords: 2000 }, logger: { warn: (obj) => void warnings.push(obj) } })
    await bus.ensureTopics([{ name: 'c', partitions: 1 }])
    let fast = 0
    await bus.subscribe({ groupId: 'fast', topics: ['c'], batchHandler: async (ms) => {
        fast += ms.length
      },
    })
    const slow: BusMessage[] = []
    let first = true
    const sub = await bus.subscribe({
      groupId: 'slow',
      topics: ['c'],
      handler: async (m) => {
        slow.push(m)
        if (first) {
          first = false
          sub.pause() // after its first record: its position is 1 from now on
        }
      },
    })
    await bus.produce(records('c', 0, 1))
    await waitFor(() => slow.length === 1 && fast === 1)
    await bus.produce(records('c', 1, 5000))
    await waitFor(() => fast === 5001)
    const kept = bus.records('c')
    assert.ok(kept.length <= 2000, `kept ${kept.length} records`)
    sub.resume()
    await waitFor(() => slow.length === 1 + kept.length)
    assert.equal(slow[1]?.offset, kept[0]?.offset, 'resumed at the oldest record kept')
    assert.equal(slow.at(-1)?.value, '5000')
    const w = warnings.find((x) => x['event'] === 'bus.records_dropped')
    assert.ok(w !== undefined, 'the drop is reported')
    assert.equal(w['groupId'], 'slow')
    assert.equal(w['from'], 1)
  })

  it('by default keeps about the last 1,000 consumed records of a partition, and trims no partition no group has read', async (t) => {
    const bus = newBus(t)
    await bus.ensureTopics([
      { name: 'read', partitions: 1 },
      { name: 'unread', partitions: 1 },
    ])
    let seen = 0
    await bus.subscribe({
      groupId: 'g',
      topics: ['read'],
      batchHandler: async (ms) => {
        seen += ms.length
      },
    })
    for (let i = 0; i < 5; i++) {
      await bus.produce(records('read', i * 1000, 1000))
      await bus.produce(records('unread', i * 1000, 1000))
    }
    await waitFor(() => seen === 5000)
    await bus.produce(records('read', 5000, 1)) // a commit after the last records checks retention again
    await waitFor(() => seen === 5001)
    const kept = bus.records('read').length
    assert.ok(kept >= 1000 && kept <= 1000 + 1024, `kept ${kept} consumed records`)
    assert.equal(bus.records('unread').length, 5000, 'records no group has read yet all stay (a consumer that starts late finds them)')
    const late: BusMessage[] = []
    await bus.subscribe({ groupId: 'late', topics: ['unread'], batchHandler: async (ms) => void late.push(...ms) })
    await waitFor(() => late.length === 5000)
    assert.equal(late[0]?.value, '0')
  })

  it('refuses a retention that keeps more than it may hold', () => {
    assert.throws(() => new MemoryBus({ retention: { records: 10, maxRecords: 5 } }), /retention/)
    assert.throws(() => new MemoryBus({ retention: { records: -1 } }), /retention/)
  })
})
