/**
 * MemoryBus specifics beyond the port contract (that lives in test/conformance/bus.suite.ts):
 * partitioning, assignment and rebalancing, concurrency, backoff, chaos knobs, the produce
 * interceptor, introspection and close.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { MemoryBus } from '../../src/adapters/memory/bus.ts'
import type { MemoryBusOptions } from '../../src/adapters/memory/bus.ts'
import { ErrorCode, isFlowkitError } from '../../src/errors.ts'
import type { BusMessage, BusRecord } from '../../src/ports/bus.ts'
import { partitionForKey } from '../../src/util/murmur2.ts'
import { waitFor } from '../helpers/wait.ts'

function newBus(t: TestContext, options: MemoryBusOptions = {}): MemoryBus {
  const bus = new MemoryBus(options)
  t.after(() => bus.close())
  return bus
}

function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void
  const promise = new Promise<void>((resolve) => {
    open = resolve
  })
  return { promise, open }
}

const recs = (topic: string, key: string | null, values: string[]): BusRecord[] =>
  values.map((value) => ({ topic, key, value }))

const seq = (n: number): string[] => Array.from({ length: n }, (_, i) => String(i))

/** A key that murmur2 maps to `partition` of `partitions`. */
function keyFor(partition: number, partitions: number): string {
  for (let i = 0; ; i++) if (partitionForKey(`key-${i}`, partitions) === partition) return `key-${i}`
}

const isCode = (code: ErrorCode) => (err: unknown) => isFlowkitError(err, code)

describe('MemoryBus: topics and partitioning', () => {
  it('routes keys with murmur2 and null keys round robin', async (t) => {
    const bus = newBus(t)
    await bus.ensureTopics([{ name: 'parts', partitions: 3 }])
    await bus.produce([...recs('parts', null, ['n0', 'n1', 'n2', 'n3']), ...recs('parts', 'foobar', ['k'])])
    const all = bus.records('parts')
    assert.deepEqual(
      all.filter((r) => r.key === null).map((r) => r.partition),
      [0, 1, 2, 0],
    )
    assert.equal(all.find((r) => r.key === 'foobar')?.partition, partitionForKey('foobar', 3))
  })

  it('creates topics on produce and subscribe with defaultPartitions; ensureTopics keeps existing counts', async (t) => {
    const bus = newBus(t, { defaultPartitions: 5 })
    await bus.produce(recs('auto.produce', 'k', ['v']))
    await bus.subscribe({ groupId: 'g', topics: ['auto.subscribe'], handler: async () => {} })
    await bus.ensureTopics([{ name: 'explicit', partitions: 2 }])
    await bus.ensureTopics([{ name: 'explicit', partitions: 7 }, { name: 'auto.produce' }])
    assert.deepEqual(bus.topics(), [
      { name: 'auto.produce', partitions: 5 },
      { name: 'auto.subscribe', partitions: 5 },
      { name: 'explicit', partitions: 2 },
    ])
  })

  it('rejects invalid topic names, values and options with stable codes', async (t) => {
    const bus = newBus(t)
    await assert.rejects(bus.ensureTopics([{ name: 'bad topic!' }]), isCode(ErrorCode.Config))
    await assert.rejects(bus.ensureTopics([{ name: 'ok', partitions: 0 }]), isCode(ErrorCode.Config))
    await assert.rejects(
      bus.produce([{ topic: 't', key: null, value: { not: 'a string' } as unknown as string }]),
      isCode(ErrorCode.BadMessage),
    )
    await assert.rejects(bus.produce(recs('', null, ['v'])), isCode(ErrorCode.Config))
    await assert.rejects(bus.subscribe({ groupId: '', topics: ['t'], handler: async () => {} }), isCode(ErrorCode.Config))
    assert.throws(() => new MemoryBus({ defaultPartitions: 0 }), isCode(ErrorCode.Config))
  })

  it('records() lists appended records with partition and offset; committed() tracks the next offset', async (t) => {
    const bus = newBus(t)
    const p = partitionForKey('c', 3)
    const handled: string[] = []
    await bus.subscribe({ groupId: 'g', topics: ['intro'], handler: async (m) => void handled.push(m.value) })
    assert.equal(bus.committed('g', 'intro', p), undefined)
    await bus.produce(recs('intro', 'c', ['a', 'b', 'c']))
    await bus.waitForIdle()
    assert.deepEqual(
      bus.records('intro').map((r) => [r.value, r.partition, r.offset]),
      [
        ['a', p, 0],
        ['b', p, 1],
        ['c', p, 2],
      ],
    )
    assert.equal(bus.committed('g', 'intro', p), 3)
    assert.equal(bus.committed('nope', 'intro', p), undefined)
    assert.deepEqual(bus.records('missing'), [])
  })
})

describe('MemoryBus: delivery', () => {
  it('never calls the handler synchronously inside produce', async (t) => {
    const bus = newBus(t)
    let calls = 0
    await bus.subscribe({ groupId: 'g', topics: ['async'], handler: async () => void calls++ })
    const producing = bus.produce(recs('async', 'k', ['v']))
    assert.equal(calls, 0)
    await producing
    await waitFor(() => calls === 1, { message: 'delivered' })
  })

  it('handles different partitions concurrently; one partition strictly one at a time', async (t) => {
    const bus = newBus(t)
    await bus.ensureTopics([{ name: 'conc', partitions: 2 }])
    const slowKey = keyFor(0, 2)
    const fastKey = keyFor(1, 2)
    const g = gate()
    const handled: string[] = []
    let active0 = 0
    let maxActive0 = 0
    await bus.subscribe({
      groupId: 'g',
      topics: ['conc'],
      handler: async (m) => {
        if (m.partition === 0) {
          active0++
          maxActive0 = Math.max(maxActive0, active0)
          if (m.value === 'slow-0') await g.promise
          active0--
        }
        handled.push(m.value)
      },
    })
    await bus.produce([...recs('conc', slowKey, ['slow-0', 'slow-1']), ...recs('conc', fastKey, ['fast-0', 'fast-1'])])
    await waitFor(() => handled.includes('fast-1'), { message: 'partition 1 not blocked by partition 0' })
    assert.ok(!handled.includes('slow-0') && !handled.includes('slow-1'))
    g.open()
    await bus.waitForIdle()
    assert.deepEqual(
      handled.filter((v) => v.startsWith('slow')),
      ['slow-0', 'slow-1'],
    )
    assert.equal(maxActive0, 1)
  })

  it('retries a failing handler with growing backoff and logs each failure', async (t) => {
    const warnings: Array<Record<string, unknown>> = []
    const bus = newBus(t, { logger: { warn: (obj) => void warnings.push(obj) } })
    const attempts: number[] = []
    await bus.subscribe({
      groupId: 'g',
      topics: ['retry'],
      handler: async () => {
        attempts.push(performance.now())
        if (attempts.length <= 3) throw new Error('boom')
      },
    })
    await bus.produce(recs('retry', 'k', ['v']))
    await waitFor(() => attempts.length === 4, { message: 'fourth attempt succeeds' })
    const gaps = attempts.slice(1).map((at, i) => at - attempts[i]!)
    assert.ok(gaps[0]! >= 15, `first backoff ~20ms, got ${gaps[0]}`)
    assert.ok(gaps[1]! >= 35, `second backoff ~40ms, got ${gaps[1]}`)
    assert.ok(gaps[2]! >= 75, `third backoff ~80ms, got ${gaps[2]}`)
    assert.equal(warnings.length, 3)
    assert.equal(warnings[0]!['event'], 'bus.handler_failed')
    assert.equal(warnings[0]!['offset'], 0)
    assert.equal(bus.committed('g', 'retry', partitionForKey('k', 3)), 1)
  })

  it('pause lets the in-flight handler finish and commit, then delivers nothing until resume', async (t) => {
    const bus = newBus(t)
    const g = gate()
    const handled: string[] = []
    let started = false
    const sub = await bus.subscribe({
      groupId: 'g',
      topics: ['pause'],
      handler: async (m) => {
        started = true
        if (m.value === '0') await g.promise
        handled.push(m.value)
      },
    })
    await bus.produce(recs('pause', 'k', seq(4)))
    await waitFor(() => started, { message: 'first handler running' })
    sub.pause()
    g.open()
    await bus.waitForIdle() // a paused subscription counts as idle
    assert.deepEqual(handled, ['0'])
    assert.equal(bus.committed('g', 'pause', partitionForKey('k', 3)), 1)
    sub.resume()
    await bus.waitForIdle()
    assert.deepEqual(handled, seq(4))
  })

  it('waitForIdle rejects with TIMEOUT while a handler keeps failing', async (t) => {
    const bus = newBus(t)
    await bus.subscribe({
      groupId: 'g',
      topics: ['stuck'],
      handler: async () => {
        throw new Error('always')
      },
    })
    await bus.produce(recs('stuck', 'k', ['v']))
    await assert.rejects(bus.waitForIdle({ timeoutMs: 100 }), isCode(ErrorCode.Timeout))
  })

  it('a fromLatest group commits its start position, so a re-subscribe resumes there', async (t) => {
    const bus = newBus(t)
    await bus.produce(recs('latest', 'k', ['old']))
    const sub = await bus.subscribe({ groupId: 'g', topics: ['latest'], handler: async () => {}, fromLatest: true })
    await sub.close()
    await bus.produce(recs('latest', 'k', ['new']))
    const got: string[] = []
    await bus.subscribe({ groupId: 'g', topics: ['latest'], handler: async (m) => void got.push(m.value), fromLatest: true })
    await bus.waitForIdle()
    assert.deepEqual(got, ['new'])
  })
})

describe('MemoryBus: consumer groups', () => {
  it('assigns partition ranges in join order and rebalances when members join and leave', async (t) => {
    const bus = newBus(t)
    await bus.ensureTopics([{ name: 'rb', partitions: 6 }])
    const noop = async (): Promise<void> => {}
    const a = await bus.subscribe({ groupId: 'g', topics: ['rb'], handler: noop, name: 'a' })
    assert.deepEqual(bus.assignments('g'), [{ member: 'a-1', topic: 'rb', partitions: [0, 1, 2, 3, 4, 5] }])
    await bus.subscribe({ groupId: 'g', topics: ['rb'], handler: noop, name: 'b' })
    const c = await bus.subscribe({ groupId: 'g', topics: ['rb'], handler: noop, name: 'c' })
    assert.deepEqual(
      bus.assignments('g').map((x) => x.partitions),
      [
        [0, 1],
        [2, 3],
        [4, 5],
      ],
    )
    await c.close()
    assert.deepEqual(
      bus.assignments('g').map((x) => [x.member, x.partitions]),
      [
        ['a-1', [0, 1, 2]],
        ['b-2', [3, 4, 5]],
      ],
    )
    await a.close()
    assert.deepEqual(bus.assignments('g'), [{ member: 'b-2', topic: 'rb', partitions: [0, 1, 2, 3, 4, 5] }])
    assert.deepEqual(bus.assignments('unknown'), [])
  })

  it('redelivers uncommitted records to the new owner after a rebalance (at-least-once)', async (t) => {
    const bus = newBus(t)
    await bus.ensureTopics([{ name: 'alo', partitions: 1 }])
    let aAttempts = 0
    const a = await bus.subscribe({
      groupId: 'g',
      topics: ['alo'],
      handler: async () => {
        aAttempts++
        throw new Error('a cannot handle it')
      },
    })
    const got: string[] = []
    await bus.subscribe({ groupId: 'g', topics: ['alo'], handler: async (m) => void got.push(m.value) })
    await bus.produce(recs('alo', 'k', ['r0', 'r1']))
    await waitFor(() => aAttempts >= 2, { message: 'a owns the partition and keeps failing' })
    assert.deepEqual(got, [])
    assert.equal(bus.committed('g', 'alo', 0), undefined)
    await a.close()
    await bus.waitForIdle()
    assert.deepEqual(got, ['r0', 'r1'])
    assert.equal(bus.committed('g', 'alo', 0), 2)
  })

  it('the new owner starts after the old owner finished its in-flight record, from its commit', async (t) => {
    const bus = newBus(t)
    await bus.ensureTopics([{ name: 'handover', partitions: 1 }])
    const g = gate()
    const events: string[] = []
    let active = 0
    let maxActive = 0
    const track =
      (who: string) =>
      async (m: BusMessage): Promise<void> => {
        active++
        maxActive = Math.max(maxActive, active)
        events.push(`${who}:${m.value}`)
        if (who === 'a') await g.promise
        active--
      }
    const a = await bus.subscribe({ groupId: 'g', topics: ['handover'], handler: track('a') })
    await bus.subscribe({ groupId: 'g', topics: ['handover'], handler: track('b') })
    await bus.produce(recs('handover', 'k', ['r0', 'r1', 'r2']))
    await waitFor(() => events.length === 1, { message: 'a is handling r0' })
    const closing = a.close()
    g.open()
    await closing
    await bus.waitForIdle()
    assert.deepEqual(events, ['a:r0', 'b:r1', 'b:r2'])
    assert.equal(maxActive, 1)
  })

  it('a subscription close waits for in-flight handlers; bus.close closes everything', async (t) => {
    const bus = newBus(t)
    const g = gate()
    let finished = false
    await bus.subscribe({
      groupId: 'g',
      topics: ['bye'],
      handler: async () => {
        await g.promise
        finished = true
      },
    })
    await bus.produce(recs('bye', 'k', ['v']))
    await waitFor(() => bus.records('bye').length === 1)
    setTimeout(g.open, 30)
    await bus.close()
    assert.equal(finished, true)
    await assert.rejects(bus.produce(recs('bye', 'k', ['late'])), isCode(ErrorCode.Closed))
    await assert.rejects(bus.subscribe({ groupId: 'g', topics: ['bye'], handler: async () => {} }), isCode(ErrorCode.Closed))
    await assert.rejects(bus.ensureTopics([{ name: 'bye' }]), isCode(ErrorCode.Closed))
    await bus.waitForIdle()
  })
})

describe('MemoryBus: chaos', () => {
  async function chaosRun(seed: number, topic = 'chaos.t'): Promise<string[]> {
    const bus = new MemoryBus({
      chaos: { seed, rules: [{ topicPrefix: 'chaos.', duplicate: 0.15, drop: 0.15, reorder: 0.15 }] },
    })
    try {
      await bus.produce(recs(topic, 'k', seq(200)))
      await bus.waitForIdle()
      return bus.records(topic).map((r) => r.value)
    } finally {
      await bus.close()
    }
  }

  it('same seed → same sequence; another seed → another sequence', async () => {
    const a = await chaosRun(42)
    const b = await chaosRun(42)
    const c = await chaosRun(43)
    assert.deepEqual(a, b)
    assert.notDeepEqual(a, c)
  })

  it('drop, duplicate and reorder are all observable, only on matching topics', async () => {
    const values = await chaosRun(7)
    const counts = new Map<string, number>()
    for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1)
    assert.ok(
      seq(200).some((v) => !counts.has(v)),
      'some record dropped',
    )
    assert.ok(
      [...counts.values()].some((n) => n > 1),
      'some record duplicated',
    )
    assert.ok(
      values.some((v, i) => i > 0 && Number(v) < Number(values[i - 1])),
      'some records out of order',
    )
    assert.deepEqual(await chaosRun(7, 'plain.t'), seq(200), 'a topic outside the prefix is untouched')
  })

  it('reorder swaps a record with the next one of its partition, or releases it after the window', async (t) => {
    const bus = newBus(t, { chaos: { seed: 1, rules: [{ topicPrefix: 'swap', reorder: 1 }], reorderWindowMs: 20 } })
    await bus.produce(recs('swap', 'k', seq(5)))
    await bus.waitForIdle()
    assert.deepEqual(
      bus.records('swap').map((r) => r.value),
      ['1', '0', '3', '2', '4'],
    )
    assert.deepEqual(
      bus.records('swap').map((r) => r.offset),
      [0, 1, 2, 3, 4],
    )
  })

  it('duplicate: 1 appends every record twice; drop: 1 loses every record but produce resolves', async (t) => {
    const bus = newBus(t, {
      chaos: {
        seed: 1,
        rules: [
          { topicPrefix: 'dup', duplicate: 1 },
          { topicPrefix: 'drop', drop: 1 },
        ],
      },
    })
    await bus.produce([...recs('dup', 'k', ['a', 'b']), ...recs('drop', 'k', ['x', 'y'])])
    await bus.waitForIdle()
    assert.deepEqual(
      bus.records('dup').map((r) => r.value),
      ['a', 'a', 'b', 'b'],
    )
    assert.deepEqual(bus.records('drop'), [])
  })

  it('delay appends later but keeps partition order', async (t) => {
    const bus = newBus(t, { chaos: { seed: 3, rules: [{ topicPrefix: 'slow.', delayMs: [20, 60] }] } })
    const got: string[] = []
    await bus.subscribe({ groupId: 'g', topics: ['slow.t'], handler: async (m) => void got.push(m.value) })
    const started = performance.now()
    await bus.produce(recs('slow.t', 'k', seq(10)))
    assert.deepEqual(bus.records('slow.t'), [], 'acked before appended')
    await bus.waitForIdle()
    assert.ok(performance.now() - started >= 19)
    assert.deepEqual(got, seq(10))
  })

  it('setChaos(null) turns chaos off; invalid rules are rejected', async (t) => {
    const bus = newBus(t, { chaos: { seed: 1, rules: [{ topicPrefix: '', drop: 1 }] } })
    await bus.produce(recs('off', 'k', ['lost']))
    bus.setChaos(null)
    await bus.produce(recs('off', 'k', ['kept']))
    assert.deepEqual(
      bus.records('off').map((r) => r.value),
      ['kept'],
    )
    assert.throws(() => bus.setChaos({ seed: 1, rules: [{ topicPrefix: '', drop: 2 }] }), isCode(ErrorCode.Config))
    assert.throws(() => bus.setChaos({ seed: 1, rules: [{ topicPrefix: '', delayMs: [5, 1] }] }), isCode(ErrorCode.Config))
  })

  it('close discards records still waiting for their delay', async () => {
    const bus = new MemoryBus({ chaos: { seed: 1, rules: [{ topicPrefix: '', delayMs: [5_000, 5_000] }] } })
    await bus.produce(recs('late', 'k', ['v']))
    await bus.close() // would keep the process alive for 5s if the timer survived
    assert.deepEqual(bus.records('late'), [])
  })
})

describe('MemoryBus: interceptor', () => {
  it('pass, drop and duplicate (default once, or `times` extra copies)', async (t) => {
    const bus = newBus(t)
    const seen: Array<[string, number]> = []
    bus.setInterceptor((record) => {
      seen.push([record.value, record.partition])
      if (record.value === 'drop') return { action: 'drop' }
      if (record.value === 'dup') return { action: 'duplicate' }
      if (record.value === 'dup3') return { action: 'duplicate', times: 2 }
      return { action: 'pass' }
    })
    await bus.produce(recs('icpt', 'k', ['a', 'drop', 'dup', 'dup3', 'b']))
    assert.deepEqual(
      bus.records('icpt').map((r) => r.value),
      ['a', 'dup', 'dup', 'dup3', 'dup3', 'dup3', 'b'],
    )
    const p = partitionForKey('k', 3)
    assert.deepEqual(
      seen.map(([v, part]) => [v, part === p]),
      [
        ['a', true],
        ['drop', true],
        ['dup', true],
        ['dup3', true],
        ['b', true],
      ],
    )
    bus.setInterceptor(null)
    await bus.produce(recs('icpt', 'k', ['drop']))
    assert.equal(bus.records('icpt').at(-1)?.value, 'drop', 'cleared interceptor passes everything')
  })

  it('delay lets later records overtake the delayed one', async (t) => {
    const bus = newBus(t)
    bus.setInterceptor(async (record) => (record.value === 'late' ? { action: 'delay', ms: 30 } : { action: 'pass' }))
    const got: string[] = []
    await bus.subscribe({ groupId: 'g', topics: ['overtake'], handler: async (m) => void got.push(m.value) })
    await bus.produce(recs('overtake', 'k', ['late', 'b', 'c']))
    await bus.waitForIdle()
    assert.deepEqual(got, ['b', 'c', 'late'])
  })

  it('run executes a side effect before the record is appended', async (t) => {
    const bus = newBus(t)
    const observed: number[] = []
    bus.setInterceptor((record) =>
      record.value === 'hook'
        ? { action: 'run', fn: async () => void observed.push(bus.records('run').length) }
        : { action: 'pass' },
    )
    await bus.produce(recs('run', 'k', ['first', 'hook', 'last']))
    assert.deepEqual(observed, [1])
    assert.deepEqual(
      bus.records('run').map((r) => r.value),
      ['first', 'hook', 'last'],
    )
  })

  it('an interceptor that throws makes produce reject; earlier records of the call are kept', async (t) => {
    const bus = newBus(t)
    bus.setInterceptor((record) => {
      if (record.value === 'fail') throw new Error('injected produce failure')
      return { action: 'pass' }
    })
    await assert.rejects(bus.produce(recs('boom', 'k', ['ok', 'fail', 'never'])), /injected produce failure/)
    assert.deepEqual(
      bus.records('boom').map((r) => r.value),
      ['ok'],
    )
  })
})

describe('MemoryBus: batches and fairness', () => {
  it('a batchHandler gets every available record of its partition, up to maxBatch', async (t) => {
    const bus = newBus(t)
    await bus.ensureTopics([{ name: 'batch', partitions: 1 }])
    await bus.produce(recs('batch', 'k', seq(1200)))
    const sizes: number[] = []
    const values: string[] = []
    const sub = await bus.subscribe({
      groupId: 'g',
      topics: ['batch'],
      batchHandler: async (messages) => {
        sizes.push(messages.length)
        values.push(...messages.map((m) => m.value))
      },
    })
    await sub.caughtUp()
    assert.deepEqual(sizes, [500, 500, 200])
    assert.deepEqual(values, seq(1200))
    assert.equal(bus.committed('g', 'batch', 0), 1200)
  })

  it('a failed batch comes back grown with the records that arrived meanwhile (up to maxBatch)', async (t) => {
    const bus = newBus(t)
    await bus.ensureTopics([{ name: 'grow', partitions: 1 }])
    await bus.produce(recs('grow', 'k', seq(2)))
    const calls: string[][] = []
    await bus.subscribe({
      groupId: 'g',
      topics: ['grow'],
      maxBatch: 3,
      batchHandler: async (messages) => {
        calls.push(messages.map((m) => m.value))
        if (calls.length === 1) {
          await bus.produce(recs('grow', 'k', ['2', '3']))
          throw new Error('once')
        }
      },
    })
    await waitFor(() => bus.committed('g', 'grow', 0) === 4, { message: 'all four committed' })
    assert.deepEqual(calls, [['0', '1'], ['0', '1', '2'], ['3']])
  })

  it('keeps timers running while a subscription works through a long backlog', async (t) => {
    const bus = newBus(t)
    await bus.ensureTopics([{ name: 'fair', partitions: 3 }])
    const total = 20_000
    await bus.produce(Array.from({ length: total }, (_, i) => ({ topic: 'fair', key: `k${i % 50}`, value: String(i) })))
    let handled = 0
    let last = performance.now()
    let maxGap = 0
    let ticksWhileHandling = 0
    const interval = setInterval(() => {
      const now = performance.now()
      maxGap = Math.max(maxGap, now - last)
      last = now
      if (handled > 0 && handled < total) ticksWhileHandling++
    }, 10)
    t.after(() => clearInterval(interval))
    last = performance.now()
    await bus.subscribe({ groupId: 'g', topics: ['fair'], handler: async () => void handled++ })
    await waitFor(() => handled === total, { timeoutMs: 30_000, message: 'backlog handled' })
    const now = performance.now()
    maxGap = Math.max(maxGap, now - last)
    clearInterval(interval)
    assert.ok(ticksWhileHandling >= 2, `the interval ticked ${ticksWhileHandling} times while records were handled`)
    assert.ok(maxGap < 200, `longest gap between ticks ${maxGap.toFixed(1)} ms`)
  })

  it('a tight produce/handle loop does not starve timers either', async (t) => {
    const bus = newBus(t)
    let handled = 0
    await bus.subscribe({ groupId: 'g', topics: ['loop'], handler: async () => void handled++ })
    let ticked = false
    const timer = setTimeout(() => {
      ticked = true
    }, 10)
    t.after(() => clearTimeout(timer))
    const started = performance.now()
    // Each produce resolves in microtasks unless the bus yields: the loop stops as soon as the
    // timer got its turn, long before 20,000 iterations if the bus is fair.
    let produced = 0
    while (!ticked && produced < 20_000) {
      await bus.produce(recs('loop', `k${produced % 7}`, [String(produced)]))
      produced++
    }
    assert.ok(ticked, `timer starved for ${(performance.now() - started).toFixed(0)} ms (${produced} produces)`)
    await waitFor(() => handled === produced, { message: 'everything handled' })
  })
})
