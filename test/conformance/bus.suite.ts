/**
 * Bus port conformance suite: every Bus adapter (memory, Kafka) must pass it unchanged.
 *
 * Uses ONLY the Bus port. Every test makes its own topics and groups (UUID names), calls
 * ensureTopics before use, and waits for conditions with a deadline. A fixed wait appears only to
 * prove that something did NOT happen, and says so.
 */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { ErrorCode, isFlowkitError } from '../../src/errors.ts'
import type { Bus, BusHandler, BusMessage, BusRecord } from '../../src/ports/bus.ts'
import { partitionForKey } from '../../src/util/murmur2.ts'
import { quietPeriod, waitFor } from '../helpers/wait.ts'

export type BusFactory = () => Promise<{ bus: Bus; cleanup?: () => Promise<void> }>

export interface BusConformanceOptions {
  /** Deadline for each wait. Default 15000 (a real broker needs joins and rebalances). */
  timeoutMs?: number
  /** How long to watch for something that must NOT happen. Default 300. */
  quietMs?: number
}

const PARTITIONS = 3

const topicName = (): string => `t-${randomUUID()}`
const groupName = (): string => `g-${randomUUID()}`

interface Collector {
  readonly messages: BusMessage[]
  readonly handler: BusHandler
  values(): string[]
}

function collector(): Collector {
  const messages: BusMessage[] = []
  return {
    messages,
    handler: async (message) => {
      messages.push(message)
    },
    values: () => messages.map((m) => m.value),
  }
}

function records(topic: string, key: string | null, values: string[]): BusRecord[] {
  return values.map((value) => ({ topic, key, value }))
}

function range(prefix: string, n: number): string[] {
  return Array.from({ length: n }, (_, i) => `${prefix}${i}`)
}

export function runBusConformance(name: string, factory: BusFactory, options: BusConformanceOptions = {}): void {
  const timeoutMs = options.timeoutMs ?? 15_000
  const quietMs = options.quietMs ?? 300
  const testOptions = { timeout: timeoutMs * 4 }

  async function setup(t: TestContext): Promise<Bus> {
    const { bus, cleanup } = await factory()
    t.after(async () => {
      await bus.close()
      await cleanup?.()
    })
    return bus
  }

  async function newTopic(bus: Bus, partitions = PARTITIONS): Promise<string> {
    const topic = topicName()
    await bus.ensureTopics([{ name: topic, partitions }])
    return topic
  }

  const until = (cond: () => boolean, message: string): Promise<void> => waitFor(cond, { timeoutMs, message })

  describe(name, () => {
    it('round-trips key, value and headers; null keys are delivered too', testOptions, async (t) => {
      const bus = await setup(t)
      const topic = await newTopic(bus)
      const got = collector()
      await bus.subscribe({ groupId: groupName(), topics: [topic], handler: got.handler })
      const before = Date.now()
      await bus.produce([
        { topic, key: 'k-1', value: '{"hello":"world"}', headers: { 'x-trace': 'abc', kind: 'test' } },
        { topic, key: null, value: 'no key' },
      ])
      await until(() => got.messages.length === 2, 'both records delivered')
      const keyed = got.messages.find((m) => m.key === 'k-1')
      assert.ok(keyed)
      assert.equal(keyed.topic, topic)
      assert.equal(keyed.value, '{"hello":"world"}')
      assert.deepEqual(keyed.headers, { 'x-trace': 'abc', kind: 'test' })
      assert.equal(keyed.partition, partitionForKey('k-1', PARTITIONS))
      assert.ok(Number.isInteger(keyed.offset) && keyed.offset >= 0)
      assert.ok(Number.isFinite(keyed.timestamp))
      assert.ok(keyed.timestamp >= before - 60_000, 'timestamp is an epoch ms close to now')
      const unkeyed = got.messages.find((m) => m.key === null)
      assert.ok(unkeyed)
      assert.equal(unkeyed.value, 'no key')
      assert.deepEqual(unkeyed.headers ?? {}, {})
      assert.ok(unkeyed.partition >= 0 && unkeyed.partition < PARTITIONS)
    })

    it('keeps per-key order on the murmur2 partition of the key', testOptions, async (t) => {
      const bus = await setup(t)
      const topic = await newTopic(bus)
      const keys = ['order-a', 'order-b', 'order-c', 'order-d', 'order-e']
      // One batch with interleaved keys, then single-record calls.
      const batch: BusRecord[] = []
      for (let i = 0; i < 10; i++) for (const key of keys) batch.push({ topic, key, value: `${key}:${i}` })
      await bus.produce(batch)
      for (let i = 10; i < 15; i++) for (const key of keys) await bus.produce([{ topic, key, value: `${key}:${i}` }])
      const got = collector()
      await bus.subscribe({ groupId: groupName(), topics: [topic], handler: got.handler })
      await until(() => got.messages.length === 75, '75 records delivered')
      for (const key of keys) {
        const mine = got.messages.filter((m) => m.key === key)
        assert.deepEqual(
          mine.map((m) => m.value),
          range(`${key}:`, 15),
          `order of ${key}`,
        )
        for (const m of mine) assert.equal(m.partition, partitionForKey(key, PARTITIONS), `partition of ${key}`)
        for (let i = 1; i < mine.length; i++) assert.ok(mine[i]!.offset > mine[i - 1]!.offset, 'offsets increase')
      }
    })

    it('two members of one group split the partitions; each record is handled once', testOptions, async (t) => {
      const bus = await setup(t)
      const partitions = 4
      const topic = await newTopic(bus, partitions)
      const groupId = groupName()
      const a = collector()
      const b = collector()
      await bus.subscribe({ groupId, topics: [topic], handler: a.handler, name: 'a' })
      await bus.subscribe({ groupId, topics: [topic], handler: b.handler, name: 'b' })
      const keys = range('split-', 40)
      assert.equal(new Set(keys.map((k) => partitionForKey(k, partitions))).size, partitions, 'keys cover every partition')
      await bus.produce(keys.map((key) => ({ topic, key, value: key })))
      await until(() => a.messages.length + b.messages.length >= keys.length, 'all records handled')
      // Watch a little longer: a duplicate delivery must NOT show up.
      await quietPeriod(quietMs)
      const all = [...a.values(), ...b.values()]
      assert.equal(all.length, keys.length, 'no record handled twice')
      assert.deepEqual(new Set(all), new Set(keys))
      assert.ok(a.messages.length > 0, 'member a got a share')
      assert.ok(b.messages.length > 0, 'member b got a share')
      const partitionsOf = (c: Collector): Set<number> => new Set(c.messages.map((m) => m.partition))
      for (const p of partitionsOf(a)) assert.ok(!partitionsOf(b).has(p), `partition ${p} owned by one member`)
    })

    it('two groups each receive every record', testOptions, async (t) => {
      const bus = await setup(t)
      const topic = await newTopic(bus)
      const g1 = collector()
      const g2 = collector()
      await bus.subscribe({ groupId: groupName(), topics: [topic], handler: g1.handler })
      await bus.subscribe({ groupId: groupName(), topics: [topic], handler: g2.handler })
      const values = range('both-', 12)
      await bus.produce(values.map((value, i) => ({ topic, key: `k${i % 4}`, value })))
      await until(() => g1.messages.length >= 12 && g2.messages.length >= 12, 'both groups got everything')
      assert.deepEqual(new Set(g1.values()), new Set(values))
      assert.deepEqual(new Set(g2.values()), new Set(values))
    })

    it('one subscription can consume several topics', testOptions, async (t) => {
      const bus = await setup(t)
      const t1 = await newTopic(bus)
      const t2 = await newTopic(bus)
      const got = collector()
      await bus.subscribe({ groupId: groupName(), topics: [t1, t2], handler: got.handler })
      await bus.produce([...records(t1, 'k', ['one-a', 'one-b']), ...records(t2, 'k', ['two-a'])])
      await until(() => got.messages.length === 3, 'records of both topics delivered')
      assert.deepEqual(
        got.messages.filter((m) => m.topic === t1).map((m) => m.value),
        ['one-a', 'one-b'],
      )
      assert.deepEqual(
        got.messages.filter((m) => m.topic === t2).map((m) => m.value),
        ['two-a'],
      )
    })

    it('commits after the handler: a throwing handler gets the same record again, nothing is skipped', testOptions, async (t) => {
      const bus = await setup(t)
      const topic = await newTopic(bus)
      const attempts: string[] = []
      const handled: string[] = []
      let failed = false
      await bus.subscribe({
        groupId: groupName(),
        topics: [topic],
        handler: async (m) => {
          attempts.push(m.value)
          if (m.value === 'v2' && !failed) {
            failed = true
            throw new Error('transient failure')
          }
          handled.push(m.value)
        },
      })
      await bus.produce(records(topic, 'same-key', range('v', 5)))
      await until(() => handled.length === 5, 'all records handled after the retry')
      assert.deepEqual(handled, ['v0', 'v1', 'v2', 'v3', 'v4'])
      assert.deepEqual(attempts, ['v0', 'v1', 'v2', 'v2', 'v3', 'v4'])
    })

    it('a restarted group resumes from its committed offsets (no loss, no replay)', testOptions, async (t) => {
      const bus = await setup(t)
      const topic = await newTopic(bus)
      const groupId = groupName()
      const keys = ['r-a', 'r-b', 'r-c', 'r-d']
      const first = collector()
      const sub1 = await bus.subscribe({ groupId, topics: [topic], handler: first.handler })
      const before = range('before-', 8)
      await bus.produce(before.map((value, i) => ({ topic, key: keys[i % keys.length]!, value })))
      await until(() => first.messages.length === before.length, 'first batch handled')
      await sub1.close()

      const after = range('after-', 8)
      await bus.produce(after.map((value, i) => ({ topic, key: keys[i % keys.length]!, value })))
      const second = collector()
      await bus.subscribe({ groupId, topics: [topic], handler: second.handler })
      await until(() => second.messages.length >= after.length, 'second batch handled after restart')
      // Every partition that held "before" records also holds "after" records, and a partition is
      // delivered in offset order, so a replay would have shown up ahead of the new records.
      await quietPeriod(quietMs) // and nothing more must arrive
      assert.deepEqual(second.values().sort(), [...after].sort())
      for (const key of keys) {
        assert.deepEqual(
          second.messages.filter((m) => m.key === key).map((m) => m.value),
          after.filter((_, i) => keys[i % keys.length] === key),
        )
      }
    })

    it('close waits for the in-flight handler and keeps its commit', testOptions, async (t) => {
      const bus = await setup(t)
      const topic = await newTopic(bus)
      const groupId = groupName()
      const events: string[] = []
      let release!: () => void
      const gate = new Promise<void>((resolve) => {
        release = resolve
      })
      let started = false
      const sub = await bus.subscribe({
        groupId,
        topics: [topic],
        handler: async (m) => {
          started = true
          await gate
          events.push(`handled:${m.value}`)
        },
      })
      await bus.produce(records(topic, 'k', ['slow']))
      await until(() => started, 'handler started')
      const closing = sub.close().then(() => events.push('closed'))
      // close must NOT resolve while the handler is still running.
      await quietPeriod(quietMs)
      assert.deepEqual(events, [])
      release()
      await closing
      assert.deepEqual(events, ['handled:slow', 'closed'])

      await bus.produce(records(topic, 'k', ['next']))
      const again = collector()
      await bus.subscribe({ groupId, topics: [topic], handler: again.handler })
      await until(() => again.messages.length >= 1, 'next record delivered')
      assert.equal(again.messages[0]!.value, 'next', 'the committed in-flight record is not replayed')
    })

    it('pause stops delivery; resume continues without loss', testOptions, async (t) => {
      const bus = await setup(t)
      const topic = await newTopic(bus)
      const got = collector()
      const sub = await bus.subscribe({ groupId: groupName(), topics: [topic], handler: got.handler })
      assert.equal(sub.paused, false)
      await bus.produce(records(topic, 'p', range('p', 3)))
      await until(() => got.messages.length === 3, 'first three delivered')
      sub.pause()
      assert.equal(sub.paused, true)
      await bus.produce(records(topic, 'p', ['p3', 'p4', 'p5']))
      // While paused, nothing must be delivered.
      await quietPeriod(quietMs)
      assert.equal(got.messages.length, 3)
      sub.resume()
      assert.equal(sub.paused, false)
      await until(() => got.messages.length === 6, 'rest delivered after resume')
      assert.deepEqual(got.values(), range('p', 6))
    })

    it('a new group starts at the end with fromLatest, at the beginning by default', testOptions, async (t) => {
      const bus = await setup(t)
      const topic = await newTopic(bus)
      await bus.produce(records(topic, 'l', ['old-0', 'old-1']))
      const latest = collector()
      const earliest = collector()
      await bus.subscribe({ groupId: groupName(), topics: [topic], handler: latest.handler, fromLatest: true })
      await bus.subscribe({ groupId: groupName(), topics: [topic], handler: earliest.handler })
      await bus.produce(records(topic, 'l', ['new-0', 'new-1']))
      await until(() => latest.messages.length >= 2 && earliest.messages.length >= 4, 'records delivered')
      // Same key → same partition → offset order: an old record would have come first.
      assert.deepEqual(latest.values(), ['new-0', 'new-1'])
      assert.deepEqual(earliest.values(), ['old-0', 'old-1', 'new-0', 'new-1'])
    })

    it('delivers values as opaque strings (no JSON parsing)', testOptions, async (t) => {
      const bus = await setup(t)
      const topic = await newTopic(bus)
      const values = [
        '{"unterminated": ',
        '',
        'not json at all',
        'null',
        '[1,2,',
        '\u0000\u0001\u0002 control \u007f \u00ff',
        'ünïcødé ✓ 🎉 中文',
        'x'.repeat(100_000),
      ]
      const got = collector()
      await bus.subscribe({ groupId: groupName(), topics: [topic], handler: got.handler })
      await bus.produce(records(topic, 'raw', values))
      await until(() => got.messages.length === values.length, 'all values delivered')
      for (const m of got.messages) assert.equal(typeof m.value, 'string')
      assert.deepEqual(got.values(), values)
    })

    it('ensureTopics accepts existing topics', testOptions, async (t) => {
      const bus = await setup(t)
      const topic = await newTopic(bus)
      const other = topicName()
      await bus.ensureTopics([{ name: topic, partitions: PARTITIONS }])
      await bus.ensureTopics([{ name: topic }, { name: other, partitions: 2 }])
      const got = collector()
      await bus.subscribe({ groupId: groupName(), topics: [topic, other], handler: got.handler })
      await bus.produce([
        { topic, key: 'e', value: 'still works' },
        { topic: other, key: 'e', value: 'other works' },
      ])
      await until(() => got.messages.length === 2, 'records delivered')
      assert.equal(got.messages.find((m) => m.topic === topic)?.partition, partitionForKey('e', PARTITIONS))
      assert.equal(got.messages.find((m) => m.topic === other)?.partition, partitionForKey('e', 2))
    })

    it('subscribe needs exactly one of handler and batchHandler', testOptions, async (t) => {
      const bus = await setup(t)
      const topic = await newTopic(bus)
      const isConfig = (err: unknown): boolean => isFlowkitError(err, ErrorCode.Config)
      await assert.rejects(bus.subscribe({ groupId: groupName(), topics: [topic] }), isConfig)
      await assert.rejects(
        bus.subscribe({ groupId: groupName(), topics: [topic], handler: async () => {}, batchHandler: async () => {} }),
        isConfig,
      )
    })

    it('batchHandler: batches of one partition in offset order, committed after they resolve', testOptions, async (t) => {
      const bus = await setup(t)
      const topic = await newTopic(bus)
      const groupId = groupName()
      const keys = ['b-a', 'b-b', 'b-c']
      const first = range('first-', 30)
      await bus.produce(first.map((value, i) => ({ topic, key: keys[i % keys.length]!, value })))
      const batches: BusMessage[][] = []
      const sub = await bus.subscribe({
        groupId,
        topics: [topic],
        maxBatch: 4,
        batchHandler: async (messages) => {
          batches.push(messages)
        },
      })
      await until(() => batches.flat().length >= first.length, 'backlog delivered in batches')
      for (const batch of batches) {
        assert.ok(batch.length >= 1 && batch.length <= 4, `batch size ${batch.length} within maxBatch`)
        assert.equal(new Set(batch.map((m) => m.partition)).size, 1, 'one partition per batch')
        for (let i = 1; i < batch.length; i++) assert.equal(batch[i]!.offset, batch[i - 1]!.offset + 1, 'consecutive offsets')
      }
      const all = batches.flat()
      assert.deepEqual([...all.map((m) => m.value)].sort(), [...first].sort(), 'every record once')
      for (const key of keys) {
        assert.deepEqual(
          all.filter((m) => m.key === key).map((m) => m.value),
          first.filter((_, i) => keys[i % keys.length] === key),
          `order of ${key}`,
        )
      }
      await sub.close()

      // A new member of the group resumes after the last batch: nothing handled is delivered again.
      const second = range('second-', 6)
      await bus.produce(second.map((value, i) => ({ topic, key: keys[i % keys.length]!, value })))
      const again: BusMessage[][] = []
      await bus.subscribe({
        groupId,
        topics: [topic],
        batchHandler: async (messages) => {
          again.push(messages)
        },
      })
      await until(() => again.flat().length >= second.length, 'new records delivered to the new member')
      await quietPeriod(quietMs) // and nothing more must arrive
      assert.deepEqual(
        again
          .flat()
          .map((m) => m.value)
          .sort(),
        [...second].sort(),
      )
    })

    it('batchHandler: a throwing batch is delivered again from the same first offset', testOptions, async (t) => {
      const bus = await setup(t)
      const topic = await newTopic(bus)
      const values = range('x', 8)
      await bus.produce(records(topic, 'one-key', values))
      const calls: BusMessage[][] = []
      const handled: string[] = []
      await bus.subscribe({
        groupId: groupName(),
        topics: [topic],
        batchHandler: async (messages) => {
          calls.push(messages)
          if (calls.length === 1) throw new Error('transient batch failure')
          handled.push(...messages.map((m) => m.value))
        },
      })
      await until(() => handled.length >= values.length, 'every record handled after the retry')
      assert.ok(calls.length >= 2)
      const [failed, retried] = [calls[0]!, calls[1]!]
      assert.equal(retried[0]!.offset, failed[0]!.offset, 'the retry starts at the same offset')
      assert.ok(retried.length >= failed.length, 'the retry holds the failed batch (possibly grown)')
      assert.deepEqual(
        retried.slice(0, failed.length).map((m) => m.value),
        failed.map((m) => m.value),
      )
      assert.deepEqual(handled, values, 'in order, nothing skipped, nothing twice')
    })

    it('caughtUp resolves once the backlog is handled, not before', testOptions, async (t) => {
      const bus = await setup(t)
      const topic = await newTopic(bus)
      const backlog = range('old-', 12)
      await bus.produce(backlog.map((value, i) => ({ topic, key: `c${i % 3}`, value })))
      let release!: () => void
      const gate = new Promise<void>((resolve) => {
        release = resolve
      })
      const handled: string[] = []
      let held = false
      const sub = await bus.subscribe({
        groupId: groupName(),
        topics: [topic],
        handler: async (m) => {
          if (m.value === 'old-0') {
            held = true
            await gate
          }
          handled.push(m.value)
        },
      })
      let caughtUpWith: string[] | null = null
      void sub.caughtUp().then(() => {
        caughtUpWith = [...handled]
      })
      await until(() => held, 'the first record is being handled')
      // old-0 is still held back: caughtUp must NOT resolve meanwhile.
      await quietPeriod(quietMs)
      assert.equal(caughtUpWith, null)
      release()
      await until(() => caughtUpWith !== null, 'caughtUp resolved after the backlog')
      for (const value of backlog) assert.ok(caughtUpWith!.includes(value), `${value} handled before caughtUp`)
      // A later call resolves at once.
      await sub.caughtUp()
    })

    it('drained resolves once every record produced before the call is handled, not before', testOptions, async (t) => {
      const bus = await setup(t)
      const topic = await newTopic(bus)
      const handled: string[] = []
      let release!: () => void
      const gate = new Promise<void>((resolve) => {
        release = resolve
      })
      let held = false
      const sub = await bus.subscribe({
        groupId: groupName(),
        topics: [topic],
        handler: async (m) => {
          if (m.value === 'late-0') {
            held = true
            await gate
          }
          handled.push(m.value)
        },
      })
      await sub.caughtUp()
      assert.ok(sub.drained, 'the bus implements drained()')
      // With nothing queued it resolves at once.
      await sub.drained()
      await bus.produce(range('late-', 6).map((value, i) => ({ topic, key: `d${i % 2}`, value })))
      await until(() => held, 'the first record is being handled')
      let drainedWith: string[] | null = null
      void sub.drained().then(() => {
        drainedWith = [...handled]
      })
      // late-0 is still held back: drained must NOT resolve meanwhile.
      await quietPeriod(quietMs)
      assert.equal(drainedWith, null)
      release()
      await until(() => drainedWith !== null, 'drained resolved')
      assert.deepEqual([...(drainedWith as unknown as string[])].sort(), range('late-', 6).sort(), 'every record produced before the call was handled first')
    })

    it('caughtUp resolves with nothing to replay and for fromLatest', testOptions, async (t) => {
      const bus = await setup(t)
      const empty = await newTopic(bus)
      const full = await newTopic(bus)
      await bus.produce(records(full, 'k', ['a', 'b', 'c']))
      const got = collector()
      const onEmpty = await bus.subscribe({ groupId: groupName(), topics: [empty], handler: got.handler })
      const latest = await bus.subscribe({ groupId: groupName(), topics: [full], handler: got.handler, fromLatest: true })
      let resolved = 0
      void onEmpty.caughtUp().then(() => resolved++)
      void latest.caughtUp().then(() => resolved++)
      await until(() => resolved === 2, 'both caughtUp promises resolved')
      assert.equal(got.messages.length, 0, 'nothing was replayed')
    })

    it('close is idempotent; produce after close rejects with CLOSED', testOptions, async (t) => {
      const bus = await setup(t)
      const topic = await newTopic(bus)
      const sub = await bus.subscribe({ groupId: groupName(), topics: [topic], handler: async () => {} })
      await Promise.all([sub.close(), sub.close()])
      await sub.close()
      await Promise.all([bus.close(), bus.close()])
      await bus.close()
      await assert.rejects(bus.produce(records(topic, 'k', ['late'])), (err) => isFlowkitError(err, ErrorCode.Closed))
    })

    it('instanceId: members with their own ids split the partitions; one restarted with its id resumes from the commits', testOptions, async (t) => {
      const bus = await setup(t)
      const partitions = 4
      const topic = await newTopic(bus, partitions)
      const groupId = groupName()
      const a = collector()
      const b = collector()
      const subA = await bus.subscribe({ groupId, topics: [topic], handler: a.handler, name: 'a', instanceId: `inst-a-${randomUUID()}` })
      const idB = `inst-b-${randomUUID()}`
      const subB = await bus.subscribe({ groupId, topics: [topic], handler: b.handler, name: 'b', instanceId: idB })
      const keys = range('static-', 40)
      await bus.produce(keys.map((key) => ({ topic, key, value: key })))
      await until(() => a.messages.length + b.messages.length >= keys.length, 'all records handled')
      assert.deepEqual(new Set([...a.values(), ...b.values()]), new Set(keys))
      await subB.close()
      const again = collector()
      await bus.subscribe({ groupId, topics: [topic], handler: again.handler, name: 'b', instanceId: idB })
      const later = range('later-', 20)
      await bus.produce(later.map((key) => ({ topic, key, value: key })))
      await until(() => later.every((v) => a.values().includes(v) || again.values().includes(v)), 'later records handled')
      await quietPeriod(quietMs) // nothing handled before the restart may come again
      assert.ok(!again.values().some((v) => keys.includes(v)), 'the restarted member resumed from the commits')
      await subA.close()
    })
  })
}
