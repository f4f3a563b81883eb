/**
 * KafkaBus adapter cases beyond the port conformance suite. The broker cases need a real Kafka
 * (FLOWKIT_KAFKA_BROKERS); the unreachable-broker cases run everywhere.
 */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { createServer } from 'node:net'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { inspect } from 'node:util'
import { KafkaBus } from '../../src/adapters/kafka/index.ts'
import type { KafkaBusOptions } from '../../src/adapters/kafka/index.ts'
import { produceRawRecords } from '../../src/adapters/kafka/raw.ts'
import { ErrorCode, FlowkitError, isFlowkitError } from '../../src/errors.ts'
import { MemoryLogger } from '../../src/log.ts'
import type { BusMessage } from '../../src/ports/bus.ts'
import { murmur2, partitionForKey } from '../../src/util/murmur2.ts'
import { kafkaBrokers, realSkip } from '../helpers/real.ts'
import { quietPeriod, waitFor } from '../helpers/wait.ts'

const TIMEOUT_MS = 20_000
const topicName = (): string => `t-${randomUUID()}`
const groupName = (): string => `g-${randomUUID()}`
const until = (cond: () => boolean, message: string): Promise<void> => waitFor(cond, { timeoutMs: TIMEOUT_MS, message })

function newBus(t: TestContext, options: Partial<KafkaBusOptions> = {}): KafkaBus {
  const bus = new KafkaBus({ brokers: kafkaBrokers() ?? [], clientId: 'flowkit-adapter-test', ...options })
  t.after(() => bus.close())
  return bus
}

/** A port on 127.0.0.1 where nothing listens (bound, then released). */
async function deadPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  await new Promise<void>((resolve) => server.close(() => resolve()))
  assert.ok(address && typeof address === 'object')
  return address.port
}

describe('KafkaBus against a real broker', { skip: realSkip('kafka'), timeout: 120_000 }, () => {
  it('puts a key on the partition the Java client picks (6 partitions)', async (t) => {
    const bus = newBus(t)
    const topic = topicName()
    await bus.ensureTopics([{ name: topic, partitions: 6 }])
    const keys = Array.from({ length: 60 }, (_, i) => `task-${i}:node-${i % 7}`)
    // The library's default partitioner (unsigned murmur2) disagrees with Java on some of these
    // keys, so this case tells the two apart.
    const encoder = new TextEncoder()
    const unsignedPick = (key: string): number => (murmur2(encoder.encode(key)) >>> 0) % 6
    assert.ok(
      keys.some((k) => unsignedPick(k) !== partitionForKey(k, 6)),
      'some keys land elsewhere with the non-Java partitioner',
    )
    const got: BusMessage[] = []
    await bus.subscribe({ groupId: groupName(), topics: [topic], handler: async (m) => void got.push(m) })
    await bus.produce(keys.map((key) => ({ topic, key, value: key })))
    await until(() => got.length === keys.length, 'every record delivered')
    for (const m of got) assert.equal(m.partition, partitionForKey(m.key!, 6), `partition of ${m.key}`)
    assert.equal(new Set(got.map((m) => m.partition)).size, 6, 'keys spread over every partition')
  })

  it('delivers malformed (non-JSON, binary, null) values as strings, commits them, and the next record flows', async (t) => {
    const bus = newBus(t)
    const topic = topicName()
    await bus.ensureTopics([{ name: topic, partitions: 1 }])
    const groupId = groupName()
    const binary = Uint8Array.from([0xff, 0xfe, 0x00, 0xc3, 0x28, 0x7b])
    await produceRawRecords({ brokers: kafkaBrokers() ?? [] }, [
      { topic, key: new TextEncoder().encode('k'), value: binary, headers: [['h', Uint8Array.from([0xff])]] },
      { topic, key: null, value: null },
      { topic, key: null, value: new TextEncoder().encode('{"truncated": ') },
    ])
    await bus.produce([{ topic, key: 'k', value: '{"ok":true}' }])
    const seen: BusMessage[] = []
    const parsed: unknown[] = []
    const handler = async (m: BusMessage): Promise<void> => {
      seen.push(m)
      try {
        parsed.push(JSON.parse(m.value))
      } catch {
        // A malformed record: a real handler logs it and returns, so the partition moves on.
      }
    }
    const sub = await bus.subscribe({ groupId, topics: [topic], handler })
    await until(() => seen.length === 4, 'all four records delivered')
    for (const m of seen) assert.equal(typeof m.value, 'string')
    assert.equal(seen[0]!.value, Buffer.from(binary).toString('utf8'), 'binary decoded as UTF-8 with replacement characters')
    assert.ok(seen[0]!.value.includes('\ufffd'))
    assert.equal(seen[0]!.key, 'k')
    assert.equal(typeof seen[0]!.headers?.['h'], 'string')
    assert.equal(seen[1]!.value, '', 'a null value arrives as an empty string')
    assert.equal(seen[1]!.key, null)
    assert.equal(seen[2]!.value, '{"truncated": ')
    assert.deepEqual(parsed, [{ ok: true }], 'the record after the malformed ones was handled')
    assert.deepEqual(
      seen.map((m) => m.offset),
      [0, 1, 2, 3],
    )
    await sub.close()

    // The malformed records were committed: a restarted group gets only what comes next.
    await bus.produce([{ topic, key: 'k', value: 'after' }])
    const again: BusMessage[] = []
    await bus.subscribe({ groupId, topics: [topic], handler: async (m) => void again.push(m) })
    await until(() => again.length >= 1, 'the next record delivered after the restart')
    await quietPeriod(300) // and nothing older must show up
    assert.deepEqual(
      again.map((m) => m.value),
      ['after'],
    )
  })

  it('a consumer group restarted mid-stream resumes from its commits with no loss and no replay', async (t) => {
    const bus = newBus(t)
    const topic = topicName()
    await bus.ensureTopics([{ name: topic, partitions: 4 }])
    const groupId = groupName()
    const keys = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h']
    const values = Array.from({ length: 80 }, (_, i) => `${keys[i % keys.length]}:${i}`)
    await bus.produce(values.map((value) => ({ topic, key: value.split(':')[0]!, value })))
    const first: string[] = []
    const sub1 = await bus.subscribe({
      groupId,
      topics: [topic],
      handler: async (m) => {
        await new Promise((resolve) => setTimeout(resolve, 5))
        first.push(m.value)
      },
    })
    await until(() => first.length >= 20, 'part of the backlog handled')
    await sub1.close() // records still buffered were never handled: they must come again
    const handledBeforeClose = first.length
    assert.ok(handledBeforeClose < values.length, 'closed mid-stream')

    const more = Array.from({ length: 16 }, (_, i) => `${keys[i % keys.length]}:late-${i}`)
    await bus.produce(more.map((value) => ({ topic, key: value.split(':')[0]!, value })))
    const second: BusMessage[] = []
    await bus.subscribe({ groupId, topics: [topic], handler: async (m) => void second.push(m) })
    const all = [...values, ...more]
    await until(() => first.length + second.length >= all.length, 'everything handled across the restart')
    await quietPeriod(500) // and no replay shows up afterwards
    assert.equal(first.length, handledBeforeClose, 'nothing handled by the closed subscription')
    const secondValues = second.map((m) => m.value)
    assert.deepEqual([...first, ...secondValues].sort(), [...all].sort(), 'each record handled exactly once')
    for (const key of keys) {
      const expected = all.filter((v) => v.startsWith(`${key}:`))
      const got = [...first.filter((v) => v.startsWith(`${key}:`)), ...secondValues.filter((v) => v.startsWith(`${key}:`))]
      assert.deepEqual(got, expected, `order of key ${key}`)
    }
  })

  it('a rebalance while records are buffered loses nothing and keeps per-key order within a member', async (t) => {
    const bus = newBus(t)
    const topic = topicName()
    await bus.ensureTopics([{ name: topic, partitions: 4 }])
    const groupId = groupName()
    const keys = ['k0', 'k1', 'k2', 'k3', 'k4', 'k5', 'k6', 'k7']
    const values = Array.from({ length: 60 }, (_, i) => `${keys[i % keys.length]}:${i}`)
    const a: string[] = []
    const b: string[] = []
    const slow = (into: string[]) => async (m: BusMessage) => {
      await new Promise((resolve) => setTimeout(resolve, 100))
      into.push(m.value)
    }
    await bus.subscribe({ groupId, topics: [topic], handler: slow(a), name: 'a' })
    await bus.produce(values.map((value) => ({ topic, key: value.split(':')[0]!, value })))
    await until(() => a.length >= 5, 'member a started')
    const subB = await bus.subscribe({ groupId, topics: [topic], handler: slow(b), name: 'b' })
    await until(() => new Set([...a, ...b]).size === values.length, 'every record handled by someone')
    for (const [name, got] of [
      ['a', a],
      ['b', b],
    ] as const) {
      for (const key of keys) {
        const mine = got.filter((v) => v.startsWith(`${key}:`)).map((v) => Number(v.split(':')[1]))
        // No member owns a partition twice in this phase, so its sequence per key only moves
        // forward (a record may also have been handled by the other member: at-least-once).
        for (let i = 1; i < mine.length; i++) assert.ok(mine[i]! > mine[i - 1]!, `member ${name} key ${key}: ${mine.join(',')}`)
      }
    }
    assert.ok(b.length > 0, 'member b took partitions over')
    // b leaves; a takes everything back and keeps going.
    await subB.close()
    const after = keys.map((key) => `${key}:after`)
    await bus.produce(after.map((value) => ({ topic, key: value.split(':')[0]!, value })))
    await until(() => after.every((v) => a.includes(v)), 'member a gets every partition back')
  })

  it('pauses the fetch loop when its buffers are full and still delivers everything in order', async (t) => {
    const bus = newBus(t, { maxBufferedRecords: 5 })
    const topic = topicName()
    await bus.ensureTopics([{ name: topic, partitions: 2 }])
    const values = Array.from({ length: 120 }, (_, i) => `v${i}`)
    await bus.produce(values.map((value) => ({ topic, key: 'one-key', value })))
    const got: string[] = []
    await bus.subscribe({
      groupId: groupName(),
      topics: [topic],
      handler: async (m) => {
        if (got.length % 20 === 0) await new Promise((resolve) => setTimeout(resolve, 5))
        got.push(m.value)
      },
    })
    await until(() => got.length === values.length, 'all records delivered')
    assert.deepEqual(got, values)
  })

  it('ensureTopics is idempotent, also concurrently, and keeps the partition count of an existing topic', async (t) => {
    const bus = newBus(t)
    const topic = topicName()
    await Promise.all([bus.ensureTopics([{ name: topic, partitions: 2 }]), bus.ensureTopics([{ name: topic, partitions: 2 }])])
    await bus.ensureTopics([{ name: topic, partitions: 2 }])
    await bus.ensureTopics([{ name: topic, partitions: 5 }, { name: topic }])
    const other = newBus(t)
    await other.ensureTopics([{ name: topic }])
    const got: BusMessage[] = []
    await bus.subscribe({ groupId: groupName(), topics: [topic], handler: async (m) => void got.push(m) })
    const keys = Array.from({ length: 20 }, (_, i) => `e${i}`)
    await other.produce(keys.map((key) => ({ topic, key, value: key })))
    await until(() => got.length === keys.length, 'records delivered')
    for (const m of got) assert.equal(m.partition, partitionForKey(m.key!, 2), 'still two partitions')
  })

  it('a bus instanceId gives each subscription its own group.instance.id, also two of one group and name', async (t) => {
    const logger = new MemoryLogger()
    const bus = newBus(t, { instanceId: `proc-${randomUUID().slice(0, 8)}`, logger })
    const topic = topicName()
    await bus.ensureTopics([{ name: topic, partitions: 4 }])
    const groupId = groupName()
    const a: BusMessage[] = []
    const b: BusMessage[] = []
    await bus.subscribe({ groupId, topics: [topic], handler: async (m) => void a.push(m) })
    await bus.subscribe({ groupId, topics: [topic], handler: async (m) => void b.push(m) })
    const keys = Array.from({ length: 40 }, (_, i) => `s${i}`)
    await bus.produce(keys.map((key) => ({ topic, key, value: key })))
    await until(() => new Set([...a, ...b].map((m) => m.value)).size === keys.length, 'every record handled')
    assert.ok(a.length > 0 && b.length > 0, 'both members own partitions: neither fenced the other')
    const fenced = logger.records.filter((r) => JSON.stringify(r.fields).includes('FENCED_INSTANCE_ID'))
    assert.deepEqual(fenced, [], 'no member was fenced')
  })

  it('rejects invalid input before touching the broker', async (t) => {
    const bus = newBus(t)
    await assert.rejects(bus.ensureTopics([{ name: 'bad name' }]), (err) => isFlowkitError(err, ErrorCode.Config))
    await assert.rejects(bus.produce([{ topic: 't', key: null, value: 42 as unknown as string }]), (err) =>
      isFlowkitError(err, ErrorCode.BadMessage),
    )
    await assert.rejects(bus.subscribe({ groupId: '', topics: ['t'], handler: async () => {} }), (err) =>
      isFlowkitError(err, ErrorCode.Config),
    )
  })

  it('produce to or subscribe on a topic that does not exist fails with BUS_ERROR in bounded time', async (t) => {
    const bus = newBus(t)
    const unknownTopic = (err: unknown): boolean => {
      assert.ok(err instanceof FlowkitError)
      assert.equal(err.code, ErrorCode.BusError, err.message)
      assert.match(err.message, /unknown topic/i)
      return true
    }
    const started = performance.now()
    await assert.rejects(bus.produce([{ topic: topicName(), key: 'k', value: 'v' }]), unknownTopic)
    await assert.rejects(bus.subscribe({ groupId: groupName(), topics: [topicName()], handler: async () => {} }), unknownTopic)
    assert.ok(performance.now() - started < 20_000)
  })
})

describe('KafkaBus options', () => {
  it('rejects an invalid instanceId or topicCheckIntervalMs', () => {
    const bad = (options: Partial<KafkaBusOptions>): void =>
      assert.throws(() => new KafkaBus({ brokers: ['127.0.0.1:1'], ...options }), (err) => isFlowkitError(err, ErrorCode.Config))
    bad({ instanceId: 'with space' })
    bad({ instanceId: '' })
    bad({ instanceId: 'x'.repeat(201) })
    bad({ topicCheckIntervalMs: -1 })
    bad({ topicCheckIntervalMs: 1.5 })
  })
})

describe('KafkaBus with an unreachable broker', { timeout: 60_000 }, () => {
  const password = `pw-${randomUUID()}`

  function assertNoSecret(err: unknown, logger?: MemoryLogger): void {
    const texts = [String(err), inspect(err, { depth: 20, showHidden: true })]
    if (err instanceof FlowkitError) texts.push(err.message, JSON.stringify(err.details), String(err.cause))
    if (logger) texts.push(JSON.stringify(logger.records))
    for (const text of texts) assert.ok(!text.includes(password), `the password leaked into: ${text.slice(0, 300)}`)
  }

  it('produce rejects with BUS_UNAVAILABLE within a bounded time, without the SASL password', async (t) => {
    const logger = new MemoryLogger()
    const port = await deadPort()
    const bus = new KafkaBus({
      brokers: [`127.0.0.1:${port}`],
      sasl: { mechanism: 'SCRAM-SHA-512', username: 'flowkit', password },
      connectTimeoutMs: 1000,
      logger,
    })
    t.after(() => bus.close())
    const started = performance.now()
    const err = await bus.produce([{ topic: 'some-topic', key: 'k', value: 'v' }]).then(
      () => assert.fail('produce must fail'),
      (e: unknown) => e,
    )
    const elapsed = performance.now() - started
    assert.ok(isFlowkitError(err, ErrorCode.BusUnavailable), `got ${inspect(err)}`)
    assert.equal(err.retryable, true)
    assert.ok(elapsed < 15_000, `rejected after ${Math.round(elapsed)}ms`)
    assertNoSecret(err, logger)
  })

  it('subscribe and ensureTopics reject with BUS_UNAVAILABLE too; close still works', async (t) => {
    const logger = new MemoryLogger()
    const port = await deadPort()
    const bus = new KafkaBus({
      brokers: [`127.0.0.1:${port}`],
      sasl: { mechanism: 'PLAIN', username: 'flowkit', password },
      connectTimeoutMs: 1000,
      topicReadyTimeoutMs: 3000,
      subscribeTimeoutMs: 4000,
      logger,
    })
    t.after(() => bus.close())
    const started = performance.now()
    const subErr = await bus.subscribe({ groupId: groupName(), topics: ['some-topic'], handler: async () => {} }).then(
      () => assert.fail('subscribe must fail'),
      (e: unknown) => e,
    )
    assert.ok(isFlowkitError(subErr, ErrorCode.BusUnavailable), `got ${inspect(subErr)}`)
    assert.ok(logger.events().includes('bus.kafka.subscribe_retry'), 'the join was tried again within subscribeTimeoutMs')
    assertNoSecret(subErr, logger)
    const topicErr = await bus.ensureTopics([{ name: 'some-topic' }]).then(
      () => assert.fail('ensureTopics must fail'),
      (e: unknown) => e,
    )
    assert.ok(isFlowkitError(topicErr, ErrorCode.BusUnavailable), `got ${inspect(topicErr)}`)
    assertNoSecret(topicErr, logger)
    assert.ok(performance.now() - started < 30_000)
    await bus.close()
    await assert.rejects(bus.produce([{ topic: 'some-topic', key: null, value: 'late' }]), (err) => isFlowkitError(err, ErrorCode.Closed))
  })
})
