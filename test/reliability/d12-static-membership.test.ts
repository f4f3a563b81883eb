/**
 * Issue 7, defect 12: a restarted coordinator took 6–11 s to start, waiting until its dead
 * predecessor's group membership timed out (the session timeout). With static membership (the
 * Kafka bus option `instanceId` → `group.instance.id` per subscription) a restarted process with
 * the same id replaces its predecessor at once; a clean close leaves the group.
 *
 * The killed member is a child process (this file, run with FLOWKIT_D12_CHILD set) that is
 * SIGKILLed: it never leaves, exactly like a crash. The group's session timeout is raised to 30 s
 * here, so a member that has to wait for the dead one's session misses the deadline by far.
 * Runs on the shared broker (FLOWKIT_KAFKA_BROKERS): nothing is restarted or wiped.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { KafkaBus, dropKafkaPrefix } from '../../src/adapters/kafka/index.ts'
import { Coordinator } from '../../src/coordinator/coordinator.ts'
import { Worker } from '../../src/worker/worker.ts'
import { MemoryStore } from '../../src/adapters/memory/store.ts'
import type { KafkaBusOptions } from '../../src/adapters/kafka/index.ts'
import { ErrorCode, isFlowkitError } from '../../src/errors.ts'
import type { BusMessage } from '../../src/ports/bus.ts'
import { kafkaBrokers, realSkip, topicNames } from '../helpers/real.ts'
import { waitFor } from '../helpers/wait.ts'

/** Session timeout of the group in these tests: what a restart without static membership waits. */
const SESSION_MS = 30_000
/** A restarted member must get records this fast (well under the session timeout, generous for a loaded machine). */
const RESTART_DEADLINE_MS = 10_000
const GROUP_OPTIONS: Partial<KafkaBusOptions> = { sessionTimeoutMs: SESSION_MS, rebalanceTimeoutMs: SESSION_MS, requestTimeoutMs: SESSION_MS + 10_000 }

interface ChildSpec {
  brokers: string[]
  groupId: string
  topic: string
  instanceId?: string
  /** A whole coordinator of this id instead of one member (topics prefixed with `topic`). */
  coordinatorId?: string
  /** A whole worker of this id (role `job`) instead of one member (topics prefixed with `topic`). */
  workerId?: string
}

/** A worker's config of this id on the coordinator's topics (prefix). */
function workerConfig(prefix: string, workerId: string): Record<string, unknown> {
  const { topicTasks: _t, ...topics } = topicNames(prefix)
  return { ...topics, workerId, groupPrefix: prefix }
}

const JOB = { job: { async processBatch() { return {} } } }

/** A coordinator's config on topics of their own (prefix) and its own group. */
function coordinatorConfig(prefix: string, groupId: string, coordinatorId: string): Record<string, unknown> {
  return { coordinatorId, groupId, ...topicNames(prefix) }
}

const CHILD_ENV = 'FLOWKIT_D12_CHILD'

/** Child mode: join the group, say `ready`, then wait to be killed. */
async function runChild(spec: ChildSpec): Promise<void> {
  const bus = new KafkaBus({ brokers: spec.brokers, clientId: 'd12-child', ...GROUP_OPTIONS, ...(spec.instanceId ? { instanceId: spec.instanceId } : {}) })
  if (spec.coordinatorId !== undefined) {
    const c = new Coordinator({ bus, store: new MemoryStore(), config: coordinatorConfig(spec.topic, spec.groupId, spec.coordinatorId) })
    await c.start()
  } else if (spec.workerId !== undefined) {
    await new Worker({ bus, store: new MemoryStore(), handlers: JOB, config: workerConfig(spec.topic, spec.workerId) }).start()
  } else await bus.subscribe({ groupId: spec.groupId, topics: [spec.topic], name: 'member', handler: async () => {} })
  process.stdout.write('ready\n')
  setInterval(() => {}, 60_000)
}

/** Starts a child member and resolves once it has joined (its subscribe resolved). */
async function startChild(t: TestContext, spec: ChildSpec): Promise<ChildProcess> {
  const child = spawn(process.execPath, [...process.execArgv.filter((a) => a.startsWith('--conditions')), fileURLToPath(import.meta.url)], {
    env: { ...process.env, [CHILD_ENV]: JSON.stringify(spec) },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  let out = ''
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the child member did not join within 60 s')), 60_000)
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString('utf8')
      if (out.includes('ready\n')) {
        clearTimeout(timer)
        resolve()
      }
    })
    child.once('exit', (code, signal) => {
      clearTimeout(timer)
      reject(new Error(`the child member exited before it joined (${code ?? signal})`))
    })
  })
  return child
}

async function kill(child: ChildProcess): Promise<void> {
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  child.kill('SIGKILL')
  await exited
}

function newBus(t: TestContext, options: Partial<KafkaBusOptions> = {}): KafkaBus {
  const bus = new KafkaBus({ brokers: kafkaBrokers() ?? [], clientId: 'd12-test', ...GROUP_OPTIONS, ...options })
  t.after(() => bus.close())
  return bus
}

/** Subscribes a new member and returns how long until it handled every one of `expected` values. */
async function timeToRecords(bus: KafkaBus, groupId: string, topic: string, expected: string[], into: BusMessage[] = []): Promise<number> {
  const started = performance.now()
  await bus.subscribe({ groupId, topics: [topic], name: 'member', handler: async (m) => void into.push(m) })
  await waitFor(() => expected.every((v) => into.some((m) => m.value === v)), {
    timeoutMs: SESSION_MS + 20_000,
    message: 'the restarted member handled the records',
  })
  return performance.now() - started
}

const childSpec = process.env[CHILD_ENV]
if (childSpec !== undefined) {
  await runChild(JSON.parse(childSpec) as ChildSpec)
} else {
  describe('D12: a restarted member takes its place in the group at once', { skip: realSkip('kafka'), timeout: 180_000 }, () => {
    const setup = async (t: TestContext, partitions = 3): Promise<{ topic: string; groupId: string; producer: KafkaBus }> => {
      const producer = newBus(t)
      const topic = `d12-${randomUUID()}`
      await producer.ensureTopics([{ name: topic, partitions }])
      return { topic, groupId: `d12-${randomUUID()}`, producer }
    }
    const values = (prefix: string): string[] => Array.from({ length: 6 }, (_, i) => `${prefix}${i}`)

    it('after a clean close, a new member of the group gets the records within seconds', async (t) => {
      const { topic, groupId, producer } = await setup(t)
      const first = newBus(t, { instanceId: `coord-${randomUUID().slice(0, 8)}` })
      await first.subscribe({ groupId, topics: [topic], name: 'member', handler: async () => {} })
      await first.close() // leaves the group
      const expected = values('clean-')
      await producer.produce(expected.map((value) => ({ topic, key: value, value })))
      // A different instance id: only leaving the group (not static membership) makes this fast.
      const ms = await timeToRecords(newBus(t, { instanceId: `coord-${randomUUID().slice(0, 8)}` }), groupId, topic, expected)
      t.diagnostic(`clean close → first records after ${Math.round(ms)} ms`)
      assert.ok(ms < RESTART_DEADLINE_MS, `the new member waited ${Math.round(ms)} ms`)
    })

    it('after a kill, a member restarted with the same instanceId gets the records within seconds', async (t) => {
      const { topic, groupId, producer } = await setup(t)
      const instanceId = `coord-${randomUUID().slice(0, 8)}`
      const child = await startChild(t, { brokers: kafkaBrokers() ?? [], groupId, topic, instanceId })
      await kill(child) // never leaves: its membership lives until the 30 s session timeout
      const expected = values('killed-')
      await producer.produce(expected.map((value) => ({ topic, key: value, value })))
      const ms = await timeToRecords(newBus(t, { instanceId }), groupId, topic, expected)
      t.diagnostic(`kill + static restart → records after ${Math.round(ms)} ms (session timeout ${SESSION_MS} ms)`)
      assert.ok(ms < RESTART_DEADLINE_MS, `the restarted member waited ${Math.round(ms)} ms for its dead predecessor`)
    })

    it('with a second live member, the restarted one takes its own partitions back and nothing is lost', async (t) => {
      const { topic, groupId, producer } = await setup(t, 4)
      const instanceId = `worker-${randomUUID().slice(0, 8)}`
      const survivor: BusMessage[] = []
      const other = newBus(t, { instanceId: `worker-${randomUUID().slice(0, 8)}` })
      await other.subscribe({ groupId, topics: [topic], name: 'member', handler: async (m) => void survivor.push(m) })
      const child = await startChild(t, { brokers: kafkaBrokers() ?? [], groupId, topic, instanceId })
      // `ready`: the child's join completed, so the group's generation shares the partitions.
      await kill(child)
      const expected = Array.from({ length: 16 }, (_, i) => `two-${i}`)
      const started = performance.now()
      const restarted: BusMessage[] = []
      const bus = newBus(t, { instanceId })
      await bus.subscribe({ groupId, topics: [topic], name: 'member', handler: async (m) => void restarted.push(m) })
      await producer.produce(expected.map((value) => ({ topic, key: value, value })))
      await waitFor(() => expected.every((v) => [...survivor, ...restarted].some((m) => m.value === v)), {
        timeoutMs: SESSION_MS + 20_000,
        message: 'every record handled by one of the members',
      })
      const ms = performance.now() - started
      t.diagnostic(`two members, kill + static restart → all records after ${Math.round(ms)} ms; restarted ${restarted.length}, survivor ${survivor.length}`)
      assert.ok(ms < RESTART_DEADLINE_MS, `the group waited ${Math.round(ms)} ms for the dead member`)
      assert.ok(restarted.length > 0, 'the restarted member owns partitions again')
    })

    /** Kills a child running `spec`, then times the start of `restarted` (same id). */
    const restartMs = async (t: TestContext, spec: ChildSpec, restarted: { start(): Promise<void>; stop(): Promise<void> }): Promise<number> => {
      t.after(() => dropKafkaPrefix(kafkaBrokers() ?? [], spec.topic, 'd12-cleanup').catch(() => undefined))
      await kill(await startChild(t, spec)) // its memberships live until the 30 s session timeout
      t.after(() => restarted.stop())
      const started = performance.now()
      await restarted.start()
      return performance.now() - started
    }

    it('a coordinator killed and restarted with the same coordinatorId starts within seconds (every group it joins is a static member)', async (t) => {
      const prefix = `d12c${randomUUID().slice(0, 8)}.`
      const spec = { brokers: kafkaBrokers() ?? [], groupId: `${prefix}flowkit.coordinator`, topic: prefix, coordinatorId: `coord-${randomUUID().slice(0, 8)}` }
      const ms = await restartMs(t, spec, new Coordinator({ bus: newBus(t), store: new MemoryStore(), config: coordinatorConfig(prefix, spec.groupId, spec.coordinatorId) }))
      t.diagnostic(`coordinator kill + restart with the same id → started after ${Math.round(ms)} ms (session timeout ${SESSION_MS} ms)`)
      assert.ok(ms < RESTART_DEADLINE_MS, `the restarted coordinator waited ${Math.round(ms)} ms for its dead predecessor`)
    })

    it('a worker killed and restarted with the same workerId starts within seconds (its groups are static members)', async (t) => {
      const prefix = `d12w${randomUUID().slice(0, 8)}.`
      const spec = { brokers: kafkaBrokers() ?? [], groupId: '', topic: prefix, workerId: `w-${randomUUID().slice(0, 8)}` }
      const ms = await restartMs(t, spec, new Worker({ bus: newBus(t), store: new MemoryStore(), handlers: JOB, config: workerConfig(prefix, spec.workerId) }))
      t.diagnostic(`worker kill + restart with the same id → started after ${Math.round(ms)} ms (session timeout ${SESSION_MS} ms)`)
      assert.ok(ms < RESTART_DEADLINE_MS, `the restarted worker waited ${Math.round(ms)} ms for its dead predecessor`)
    })

    it('rejects an invalid instanceId before touching the broker', async (t) => {
      assert.throws(() => new KafkaBus({ brokers: ['127.0.0.1:1'], instanceId: 'has space' }), (err) => isFlowkitError(err, ErrorCode.Config))
      assert.throws(() => new KafkaBus({ brokers: ['127.0.0.1:1'], instanceId: '' }), (err) => isFlowkitError(err, ErrorCode.Config))
      const bus = newBus(t)
      await assert.rejects(
        bus.subscribe({ groupId: 'g', topics: ['t'], instanceId: 'x'.repeat(201), handler: async () => {} }),
        (err) => isFlowkitError(err, ErrorCode.Config),
      )
    })
  })
}
