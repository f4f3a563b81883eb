/**
 * Bus port conformance, group membership: `onAssignment`, the cooperative assignor,
 * `confirmedAt()` and `partitionCount()`. Runs unchanged on every adapter (memory, Kafka); see
 * bus.suite.ts for the rules (own topics and groups per test, waits with deadlines only).
 *
 * Every member here records what it was reported (partitions, generation) and checks, when its
 * handler starts on a record, that the record's partition is in its latest report: a record is
 * handled only by the member that currently owns its partition.
 */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { isFlowkitError } from '../../src/errors.ts'
import type { Bus, SubscribeOptions, Subscription, TopicPartition } from '../../src/ports/bus.ts'
import { partitionForKey } from '../../src/util/murmur2.ts'
import { waitFor } from '../helpers/wait.ts'
import type { BusFactory } from './bus.suite.ts'

export interface AssignmentConformanceOptions {
  /** Deadline for each wait (a real broker's rebalance takes seconds). Default 60000. */
  timeoutMs?: number
  /**
   * The bus honours `assignor: 'cooperative'` (sticky, incremental): members that stay keep
   * their partitions when one joins or leaves. A bus that ignores it (memory) is still checked
   * for everything else.
   */
  cooperative?: boolean
}

interface Report {
  partitions: number[]
  generation: number
}

/** How long a live member's confirmation may be old ("recent"). */
const CONFIRMED_WITHIN_MS = 5000

const all = (n: number): number[] => Array.from({ length: n }, (_, i) => i)
const sorted = (s: Iterable<number>): number[] => [...s].sort((a, b) => a - b)
const subset = (a: Iterable<number>, b: ReadonlySet<number>): boolean => [...a].every((p) => b.has(p))

/** One key per partition (murmur2, as the bus places keyed records). */
function keysFor(partitions: number): string[] {
  const keys: string[] = []
  for (let i = 0; keys.length < partitions; i++) {
    const key = `key-${i}`
    if (partitionForKey(key, partitions) === keys.length) keys.push(key)
  }
  return keys
}

/** The members of one group, what each was reported, and what they handled. */
class Group {
  readonly members: Member[] = []
  /** Reports that named a partition another live member still held (the moment it happened). */
  readonly overlaps: string[] = []
  /** Records handled by a member that did not own their partition (or after it closed). */
  readonly violations: string[] = []
  /** Every value handled, by anyone. */
  readonly handled = new Set<string>()
  readonly id = `g-${randomUUID()}`
  readonly bus: Bus
  readonly topic: string

  constructor(bus: Bus, topic: string) {
    this.bus = bus
    this.topic = topic
  }

  async join(name: string, extra: Partial<SubscribeOptions> = {}): Promise<Member> {
    const member = new Member(this, name)
    this.members.push(member)
    member.sub = await this.bus.subscribe({
      groupId: this.id,
      topics: [this.topic],
      name,
      ...extra,
      handler: async (m) => {
        if (member.closed) this.violations.push(`${name} handled ${m.value} after it closed`)
        else if (!member.owned.has(m.partition)) this.violations.push(`${name} handled ${m.value} of partition ${m.partition}, owning [${sorted(member.owned)}]`)
        this.handled.add(m.value)
      },
      onAssignment: (assigned, generation) => member.report(assigned, generation),
    })
    return member
  }

  /** What each member was reported, for failure messages. */
  history(): string {
    return this.members.map((m) => `${m.name}: ${m.reports.map((r) => `g${r.generation}[${r.partitions}]`).join(' ')}`).join('; ')
  }

  /** Live members' current sets are pairwise disjoint and cover all `n` partitions, none empty. */
  split(n: number, members: Member[]): boolean {
    const seen: number[] = []
    for (const m of members) {
      if (m.owned.size === 0) return false
      seen.push(...m.owned)
    }
    return seen.length === n && new Set(seen).size === n
  }
}

class Member {
  readonly reports: Report[] = []
  owned: ReadonlySet<number> = new Set()
  sub: Subscription | null = null
  /** Set when close() is called: it no longer counts as an owner for the overlap check. */
  leaving = false
  closed = false
  readonly group: Group
  readonly name: string

  constructor(group: Group, name: string) {
    this.group = group
    this.name = name
  }

  report(assigned: TopicPartition[], generation: number): void {
    // Recorded, not thrown: the callback runs inside the bus.
    if (assigned.some((a) => a.topic !== this.group.topic)) this.group.violations.push(`${this.name} was reported another topic`)
    const partitions = sorted(assigned.map((a) => a.partition))
    if (new Set(partitions).size !== partitions.length) this.group.violations.push(`${this.name} was reported a partition twice: [${partitions}]`)
    this.reports.push({ partitions, generation })
    this.owned = new Set(partitions)
    for (const other of this.group.members) {
      if (other === this || other.leaving) continue
      const shared = partitions.filter((p) => other.owned.has(p))
      if (shared.length > 0) this.group.overlaps.push(`${this.name} reported [${partitions}] (generation ${generation}) while ${other.name} held [${sorted(other.owned)}]`)
    }
  }

  async close(): Promise<void> {
    this.leaving = true
    await this.sub?.close()
    this.closed = true
  }

  /** Generations reported by this member never go back; each change comes with a newer one. */
  checkGenerations(): void {
    for (let i = 1; i < this.reports.length; i++) {
      const [prev, next] = [this.reports[i - 1]!, this.reports[i]!]
      assert.ok(next.generation > prev.generation, `${this.name}: generation ${next.generation} after ${prev.generation}`)
    }
  }

  get generation(): number {
    return this.reports.at(-1)?.generation ?? -Infinity
  }
}

/** Produces one record per partition every `everyMs` until stopped. */
function producer(bus: Bus, topic: string, partitions: number, everyMs = 100): { produced: string[]; stop(): Promise<void> } {
  const keys = keysFor(partitions)
  const produced: string[] = []
  let stopped = false
  let round = 0
  let failure: unknown = null
  const loop = (async () => {
    while (!stopped) {
      const batch = keys.map((key, p) => ({ topic, key, value: `r${round}-p${p}` }))
      round++
      await bus.produce(batch)
      produced.push(...batch.map((r) => r.value))
      await new Promise((resolve) => setTimeout(resolve, everyMs))
    }
  })().catch((err: unknown) => {
    if (!stopped) failure = err
  })
  return {
    produced,
    async stop() {
      stopped = true
      await loop
      if (failure !== null) throw failure
    },
  }
}

export function runAssignmentConformance(name: string, factory: BusFactory, options: AssignmentConformanceOptions = {}): void {
  const timeoutMs = options.timeoutMs ?? 60_000
  const cooperative = options.cooperative === true
  const testOptions = { timeout: timeoutMs * 6 }

  async function setup(t: TestContext): Promise<Bus> {
    const { bus, cleanup } = await factory()
    t.after(async () => {
      await bus.close()
      await cleanup?.()
    })
    return bus
  }

  async function newGroup(bus: Bus, partitions: number): Promise<Group> {
    const topic = `t-${randomUUID()}`
    await bus.ensureTopics([{ name: topic, partitions }])
    return new Group(bus, topic)
  }

  const until = (cond: () => boolean, message: string): Promise<void> => waitFor(cond, { timeoutMs, intervalMs: 20, message })

  /** Waits until every value produced so far was handled by someone. */
  const handledAll = (group: Group, produced: readonly string[], message: string): Promise<void> => {
    const now = [...produced]
    return until(() => now.every((v) => group.handled.has(v)), message)
  }

  describe(name, () => {
    it('onAssignment: one member gets every partition, two split them, the survivor gets them back; generations increase; only the owner handles', testOptions, async (t) => {
      const bus = await setup(t)
      const n = 4
      const group = await newGroup(bus, n)
      const a = await group.join('a')
      await until(() => a.owned.size === n, 'a single member is reported every partition')
      assert.deepEqual(a.reports.at(-1)!.partitions, all(n))
      const first = a.generation

      const load = producer(bus, group.topic, n)
      t.after(() => load.stop().catch(() => {}))
      await handledAll(group, load.produced, 'records handled by the single member')
      const b = await group.join('b')
      await until(() => group.split(n, [a, b]), 'two members are reported disjoint sets covering every partition')
      assert.ok(a.generation > first, `a's new assignment comes with a newer generation (${a.generation} > ${first})`)
      assert.ok(b.generation > first, `b's assignment comes with a newer generation (${b.generation} > ${first})`)
      await handledAll(group, load.produced, 'records handled by the two members')

      const split = a.generation
      await b.close()
      await until(() => a.owned.size === n, 'the remaining member is reported every partition again')
      assert.ok(a.generation > split, `after b left, a newer generation (${a.generation} > ${split})`)
      await load.stop()
      await handledAll(group, load.produced, 'every record handled, also those of the partitions b had')

      for (const m of [a, b]) m.checkGenerations()
      assert.deepEqual(group.violations, [], 'records handled only by the owner of their partition')
    })

    it("assignor 'cooperative': a member joining or leaving moves only some partitions; a partition never has two owners", testOptions, async (t) => {
      const bus = await setup(t)
      const n = 6
      const group = await newGroup(bus, n)
      const coop = { assignor: 'cooperative' } as const
      const a = await group.join('a', coop)
      await until(() => a.owned.size === n, 'a single member is reported every partition')
      const load = producer(bus, group.topic, n)
      t.after(() => load.stop().catch(() => {}))
      await handledAll(group, load.produced, 'records handled by the single member')

      const aAlone = new Set(a.owned)
      const b = await group.join('b', coop)
      await until(() => group.split(n, [a, b]), 'a and b are reported disjoint sets covering every partition')
      assert.ok(subset(a.owned, aAlone), `a keeps a part of what it had; ${group.history()}`)
      await handledAll(group, load.produced, 'records handled by a and b')

      const before = new Map([a, b].map((m) => [m, new Set(m.owned)]))
      const c = await group.join('c', coop)
      await until(() => group.split(n, [a, b, c]), 'a, b and c are reported disjoint sets covering every partition')
      if (cooperative) {
        for (const m of [a, b]) {
          assert.ok(subset(m.owned, before.get(m)!), `${m.name} keeps its partitions except those given to c: [${sorted(before.get(m)!)}] -> [${sorted(m.owned)}]; ${group.history()}`)
        }
      }
      await handledAll(group, load.produced, 'records handled by a, b and c')

      const three = new Map([a, b].map((m) => [m, new Set(m.owned)]))
      await c.close()
      await until(() => group.split(n, [a, b]), "c's partitions went back to a and b")
      if (cooperative) {
        for (const m of [a, b]) {
          assert.ok(subset(three.get(m)!, m.owned), `${m.name} kept its partitions when c left: [${sorted(three.get(m)!)}] -> [${sorted(m.owned)}]; ${group.history()}`)
        }
      }
      await load.stop()
      await handledAll(group, load.produced, 'every record handled')

      // While they stayed members, a and b were never reported an empty set (no full revoke); a
      // member's first report may be empty (it joined, nothing moved to it yet).
      for (const m of [a, b]) {
        assert.ok(
          m.reports.every((r, i) => i === 0 || r.partitions.length > 0),
          `${m.name} was reported an empty set; ${group.history()}`,
        )
      }
      for (const m of [a, b, c]) m.checkGenerations()
      assert.deepEqual(group.overlaps, [], `a partition is reported to a member only after its previous owner was reported losing it; ${group.history()}`)
      assert.deepEqual(group.violations, [], 'records handled only by the owner of their partition')
    })

    it('confirmedAt() is recent while a member is live, and keeps advancing', testOptions, async (t) => {
      const bus = await setup(t)
      const group = await newGroup(bus, 2)
      const a = await group.join('a')
      const sub = a.sub!
      assert.equal(typeof sub.confirmedAt, 'function', 'the bus implements confirmedAt()')
      const confirmedAt = (): number => sub.confirmedAt!()
      await until(() => a.owned.size === 2, 'the member is assigned')
      for (let i = 0; i < 3; i++) {
        const before = confirmedAt()
        assert.ok(Date.now() - before <= CONFIRMED_WITHIN_MS, `confirmed ${Date.now() - before}ms ago`)
        await until(() => confirmedAt() > before, 'the group confirms the member again')
      }
      assert.ok(Date.now() - confirmedAt() <= CONFIRMED_WITHIN_MS, `confirmed ${Date.now() - confirmedAt()}ms ago`)
      await a.close()
    })

    it('partitionCount returns the count a topic was created with; a missing topic is an error', testOptions, async (t) => {
      const bus = await setup(t)
      const counts = [1, 3, 7]
      const topics = counts.map(() => `t-${randomUUID()}`)
      await bus.ensureTopics(topics.map((name, i) => ({ name, partitions: counts[i]! })))
      for (const [i, topic] of topics.entries()) assert.equal(await bus.partitionCount(topic), counts[i])
      // Ensuring an existing topic again changes nothing.
      await bus.ensureTopics([{ name: topics[1]! }])
      assert.equal(await bus.partitionCount(topics[1]!), 3)

      const missing = `t-missing-${randomUUID()}`
      const clearly = (err: unknown): boolean => isFlowkitError(err) && !err.retryable && err.message.includes(missing)
      await assert.rejects(bus.partitionCount(missing), clearly)
      // Asking did not create it.
      await assert.rejects(bus.partitionCount(missing), clearly)
    })
  })
}
