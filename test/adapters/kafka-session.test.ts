/**
 * A Kafka consumer session closed while its consume() is joining the group (a subscription
 * replaced after its topics were recreated, or a bus closed mid-start). The stream consume()
 * then creates positions itself with a closed consumer and fails at once ("Client is closed");
 * that 'error' must find a listener, or it crashes the process. D10 end to end (the broker loses
 * its data) failed on it in clean-clone CI runs. And a consumer closed while its join is in
 * flight must stay closed: the join, completing after the close, armed the heartbeat again, and
 * @platformatic/kafka 2.12 then heartbeat every second for ever on the closed client (the timer the
 * test exit guard found keeping test files alive). And a session whose stream died starts again
 * with a new consumer (a consume() on the old one while it rejoined crashed the library). Needs a
 * real broker (FLOWKIT_KAFKA_BROKERS).
 */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { describe, it } from 'node:test'
import { Redactor } from '../../src/adapters/kafka/bus-errors.ts'
import { ConsumerSession } from '../../src/adapters/kafka/bus-session.ts'
import type { SessionHost } from '../../src/adapters/kafka/bus-session.ts'
import { settingsFrom } from '../../src/adapters/kafka/bus-settings.ts'
import { KafkaBus } from '../../src/adapters/kafka/index.ts'
import { MemoryLogger } from '../../src/log.ts'
import { kafkaBrokers, realSkip } from '../helpers/real.ts'
import { quietPeriod, waitFor } from '../helpers/wait.ts'

describe('Kafka consumer session closed mid-start', { skip: realSkip('kafka'), timeout: 120_000 }, () => {
  it('a session closed while consume() joins (from its join event, or after a delay): no uncaught stream error, start() settles, no stream is left, no heartbeat after close', async (t) => {
    const brokers = kafkaBrokers() ?? []
    const topic = `t-${randomUUID()}`
    const admin = new KafkaBus({ brokers, clientId: 'flowkit-session-test' })
    t.after(() => admin.close())
    await admin.ensureTopics([{ name: topic, partitions: 3 }])

    const uncaught: unknown[] = []
    const onUncaught = (err: unknown): void => void uncaught.push(err)
    // node:test reports an uncaught exception against the running test; collect them instead, so
    // the assertion below names what happened.
    process.prependListener('uncaughtException', onUncaught)
    t.after(() => process.removeListener('uncaughtException', onUncaught))

    const logger = new MemoryLogger()
    const settings = settingsFrom({ brokers, clientId: 'flowkit-session-test' })
    const host: SessionHost = {
      settings,
      log: logger,
      redactor: new Redactor([]),
      onJoin: () => {},
      onRebalance: () => {},
      onConfirmed: () => {},
      onMessage: () => {},
      onStream: () => {},
      onStreamRestarted: () => {},
      onTrouble: () => {},
      onTopicsChanged: () => {},
      onRenew: async () => {},
    }
    // The subscription closes a session from the consumer's own events (a recreated topic is
    // seen in a metadata event, synchronously): close it when it joins, inside the library's
    // consume() flow, just before that flow creates the stream.
    const closed: ConsumerSession[] = []
    for (let i = 0; i < 3; i++) {
      let closing: Promise<void> | null = null
      const closingHost: SessionHost = {
        ...host,
        onJoin: (s) => {
          closing ??= s.close()
        },
      }
      const session = new ConsumerSession(closingHost, { groupId: `g-${randomUUID()}`, topics: [topic], clientId: 'flowkit-session-test', instanceId: null, fromLatest: false })
      const outcome = await session.start().then(() => 'started', (err: unknown) => `failed: ${String(err)}`)
      assert.ok(closing, `round ${i}: the session joined, and was closed then`)
      await closing
      assert.match(outcome, /started|failed/)
      assert.equal(session.stream, null, `round ${i}: no stream is left attached after close`)
      closed.push(session)
    }
    // And after a growing delay, so that other closes land elsewhere in the join or after it.
    for (let i = 0; i < 8; i++) {
      const session = new ConsumerSession(host, { groupId: `g-${randomUUID()}`, topics: [topic], clientId: 'flowkit-session-test', instanceId: null, fromLatest: false })
      const started = session.start().then(() => 'started', (err: unknown) => `failed: ${String(err)}`)
      await new Promise((resolve) => setTimeout(resolve, i * 10))
      await session.close()
      const outcome = await started
      assert.match(outcome, /started|failed/)
      assert.equal(session.stream, null, `round ${i}: no stream is left attached after close`)
      closed.push(session)
    }
    // A closed consumer sends no heartbeat: proved over a window of two heartbeat intervals (1 s
    // by default).
    const after: string[] = []
    closed.forEach((s, i) => {
      for (const e of ['start', 'error', 'end']) s.consumer.on(`consumer:heartbeat:${e}` as never, () => after.push(`round ${i}: heartbeat ${e}`))
    })
    await quietPeriod(2_500)
    assert.deepEqual(after, [], 'no heartbeat after close')
    assert.deepEqual(uncaught.map(String), [], 'no uncaught error')
  })
})

describe('Kafka consumer session started again after its stream died', { skip: realSkip('kafka'), timeout: 120_000 }, () => {
  it('a start while the consumer rejoins with no topics (its stream died) replaces the consumer: no uncaught TypeError from @platformatic/kafka, records flow again, the old consumer is closed, no heartbeat after close', async (t) => {
    const brokers = kafkaBrokers() ?? []
    const topic = `t-${randomUUID()}`
    const bus = new KafkaBus({ brokers, clientId: 'flowkit-session-test' })
    t.after(() => bus.close())
    await bus.ensureTopics([{ name: topic, partitions: 3 }])

    const uncaught: unknown[] = []
    const onUncaught = (err: unknown): void => void uncaught.push(err)
    process.prependListener('uncaughtException', onUncaught)
    t.after(() => process.removeListener('uncaughtException', onUncaught))

    const received: string[] = []
    let renewed = 0
    const host: SessionHost = {
      settings: settingsFrom({ brokers, clientId: 'flowkit-session-test' }),
      log: new MemoryLogger(),
      redactor: new Redactor([]),
      onJoin: () => {},
      onRebalance: () => {},
      onConfirmed: () => {},
      onMessage: (_session, message) => void received.push(String(message.value)),
      onStream: () => {},
      onStreamRestarted: () => {},
      onTrouble: () => {},
      onTopicsChanged: () => {},
      onRenew: async () => {
        renewed++
      },
    }
    const session = new ConsumerSession(host, { groupId: `g-${randomUUID()}`, topics: [topic], clientId: 'flowkit-session-test', instanceId: null, fromLatest: false })
    t.after(() => session.close())
    await session.start()
    const first = session.consumer
    await bus.produce([{ topic, key: 'k', value: 'before' }])
    await waitFor(() => received.includes('before'), { message: 'the first stream delivers' })

    // The stream dies: the library untracks its topics. The consumer rejoins with none (as it does
    // by itself when a heartbeat sees a rebalance) and the session starts again meanwhile, as its
    // recovery does. With one consumer, the join's leader computed assignments over the topics
    // tracked again by that start, with metadata for none: an uncaught TypeError
    // ("reading 'partitionsCount'") ended the process.
    await session.stream?.close()
    const rejoin = first.joinGroup({}).then(
      () => 'joined',
      (err: unknown) => `failed: ${String(err)}`,
    )
    await session.start()
    await rejoin
    assert.deepEqual(uncaught.map(String), [], 'no uncaught error')
    assert.notEqual(session.consumer, first, 'a new consumer consumes')
    assert.equal(renewed, 1, 'the subscription was told before the old consumer left (it gives its partitions up)')
    assert.ok(session.stream, 'a stream is attached')

    await bus.produce([{ topic, key: 'k', value: 'after' }])
    await waitFor(() => received.includes('after'), { timeoutMs: 30_000, message: 'the new stream delivers' })

    await session.close()
    const heartbeats: string[] = []
    for (const [name, consumer] of [['old', first], ['new', session.consumer]] as const) {
      for (const e of ['start', 'error', 'end']) consumer.on(`consumer:heartbeat:${e}` as never, () => heartbeats.push(`${name}: heartbeat ${e}`))
    }
    await quietPeriod(2_500)
    assert.deepEqual(heartbeats, [], 'no heartbeat after close')
    assert.deepEqual(uncaught.map(String), [], 'no uncaught error')
  })
})
