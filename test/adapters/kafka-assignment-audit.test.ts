/**
 * A consumer group left with partitions that no member holds is noticed, and the subscription
 * starts over. @platformatic/kafka 2.12 can leave a group so after a broker pause (a SyncGroup
 * retried with the assignment of the member's previous id: the broker stores an empty assignment
 * for the new one; see src/adapters/kafka/bus-audit.ts). Here another member of the group leads it
 * and, at the first rebalance, gives every partition to a member that does not exist: the same
 * state, made on purpose. Needs a real broker (FLOWKIT_KAFKA_BROKERS).
 */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { describe, it } from 'node:test'
import { Consumer, type GroupPartitionsAssignments, type GroupPartitionsAssigner } from '@platformatic/kafka'
import { AssignmentAudit } from '../../src/adapters/kafka/bus-audit.ts'
import { Redactor } from '../../src/adapters/kafka/bus-errors.ts'
import { KafkaBus } from '../../src/adapters/kafka/index.ts'
import { MemoryLogger } from '../../src/log.ts'
import type { BusMessage } from '../../src/ports/bus.ts'
import { kafkaBrokers, realSkip } from '../helpers/real.ts'
import { waitFor } from '../helpers/wait.ts'

describe('Kafka assignment audit', { skip: realSkip('kafka'), timeout: 120_000 }, () => {
  it('a group whose partitions no member holds (a leader assigned them to a ghost): the subscription starts over and receives', async (t) => {
    const brokers = kafkaBrokers() ?? []
    const topic = `t-${randomUUID()}`
    const groupId = `g-${randomUUID()}`
    const logger = new MemoryLogger()
    const bus = new KafkaBus({ brokers, clientId: 'flowkit-audit-test', logger })
    t.after(() => bus.close())
    await bus.ensureTopics([{ name: topic, partitions: 3 }])

    // The other member: alone it holds everything; as leader of a larger group it gives every
    // partition to "ghost" the first time, then everything to the first member that is not itself.
    let assignerCalls = 0
    const assigner: GroupPartitionsAssigner = (current, members, topics, metadata) => {
      assignerCalls++
      const all = new Map([...topics].map((name) => [name, { topic: name, partitions: Array.from({ length: metadata.topics.get(name)?.partitionsCount ?? 0 }, (_, i) => i) }]))
      const out: GroupPartitionsAssignments[] = [...members.keys()].map((memberId) => ({ memberId, assignments: new Map() }))
      if (assignerCalls === 1) return [...out, { memberId: 'ghost', assignments: all }]
      const other = out.find((m) => m.memberId !== current)
      if (other !== undefined) other.assignments = all
      return out
    }
    const leader = new Consumer({ clientId: 'flowkit-audit-leader', bootstrapBrokers: brokers, groupId, partitionAssigner: assigner, autocommit: false, heartbeatInterval: 500, sessionTimeout: 10_000 })
    t.after(() => leader.close(true))
    const leaderStream = await leader.consume({ topics: [topic], mode: 'committed', fallbackMode: 'latest' })
    leaderStream.on('data', () => undefined)
    leaderStream.on('error', () => undefined)

    const got: BusMessage[] = []
    await bus.subscribe({ groupId, topics: [topic], handler: async (m) => void got.push(m) })
    await waitFor(() => assignerCalls >= 1, { timeoutMs: 20_000, message: 'the other member led a rebalance' })
    await bus.produce(Array.from({ length: 6 }, (_, i) => ({ topic, key: `k${i}`, value: `v${i}` })))
    // Two audits (3 s apart) see the partitions unheld; the subscription's new session joins and
    // the leader gives it everything.
    await waitFor(() => got.length >= 6, { timeoutMs: 40_000, message: `records delivered after the audit (got ${got.length}, assigner calls ${assignerCalls})` })
    assert.ok(logger.records.some((r) => r.event === 'bus.kafka.assignment_incomplete'), 'the incomplete assignment was reported')
  })
})

describe('AssignmentAudit (the checks, with a described group given by hand)', () => {
  type Member = { id: string; assignments: Map<string, { topic: string; partitions: number[] }> }
  function audit(groups: () => { state: string; members: Member[] }) {
    const resets: number[] = []
    const logger = new MemoryLogger()
    const admin = {
      async describeGroups() {
        const g = groups()
        return new Map([['g', { id: 'g', state: g.state, members: new Map(g.members.map((m) => [m.id, m])) }]])
      },
      async metadata() {
        return { topics: new Map([['t', { partitionsCount: 2 }]]) }
      },
    }
    const a = new AssignmentAudit(
      { groupId: 'g', topics: ['t'], log: logger, redactor: new Redactor([]), admin: () => admin as never, reset: () => void resets.push(Date.now()), stopping: () => false },
      20,
    )
    return { a, resets, logger }
  }
  const held = (id: string, partitions: number[]): Member => ({ id, assignments: new Map([['t', { topic: 't', partitions }]]) })
  const settle = (ms: number) => new Promise((r) => setTimeout(r, ms))

  it('a complete assignment: no reset, and no further checks', async () => {
    let checks = 0
    const { a, resets } = audit(() => {
      checks++
      return { state: 'STABLE', members: [held('m1', [0]), held('m2', [1])] }
    })
    a.joined()
    await settle(150)
    a.stop()
    assert.equal(resets.length, 0)
    assert.equal(checks, 1)
  })

  it('partitions unheld in two checks of a stable group: one reset', async () => {
    const { a, resets, logger } = audit(() => ({ state: 'Stable', members: [held('m1', [0]), held('m2', [])] }))
    a.joined()
    await settle(150)
    a.stop()
    assert.equal(resets.length, 1)
    assert.deepEqual(logger.records.find((r) => r.event === 'bus.kafka.assignment_incomplete')?.fields?.['unassigned'], ['t:1'])
  })

  it('unheld once, then complete (a cooperative rebalance in two rounds): no reset', async () => {
    let n = 0
    const { a, resets } = audit(() => (++n === 1 ? { state: 'STABLE', members: [held('m1', [0])] } : { state: 'STABLE', members: [held('m1', [0]), held('m2', [1])] }))
    a.joined()
    await settle(150)
    a.stop()
    assert.equal(resets.length, 0)
  })

  it('a group still rebalancing is looked at again, and a join between two checks starts over', async () => {
    let n = 0
    const { a, resets } = audit(() => {
      n++
      return n <= 2 ? { state: 'PREPARING_REBALANCE', members: [] } : { state: 'STABLE', members: [held('m1', [0, 1])] }
    })
    a.joined()
    await settle(150)
    assert.ok(n >= 3, `checked ${n} times`)
    assert.equal(resets.length, 0)
    a.stop()
  })
})
