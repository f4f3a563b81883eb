/**
 * The lease judge (src/coordinator/expiry.ts): a node whose lease ran out but whose complete
 * artifact exists is finished from it, unless its reports may still come. When other coordinators
 * hold some of the status partitions of its type, one of them may have died after reading the
 * node's last reports and before forwarding them: they come back only once its session ends and
 * the partition moves. Finishing the node first lost their metrics (seen with 6 s leases in the
 * reliability suite's coordinators-short-lease scenario, docs/scaling.md).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { handoverGraceMs, leaseJudge, type JudgeDeps } from '../../src/coordinator/expiry.ts'
import { TaskRuntime } from '../../src/coordinator/runtime.ts'
import type { CoordinatorConfig } from '../../src/config.ts'
import { createLogger } from '../../src/log.ts'
import type { Store } from '../../src/ports/store.ts'
import type { Subscription } from '../../src/ports/bus.ts'
import { makeNodeState, makeTaskDoc } from '../helpers/fixtures.ts'
import { waitFor } from '../helpers/wait.ts'
import { Subscriptions } from '../../src/coordinator/subscriptions.ts'
import { COORDINATOR_DEFAULTS } from '../../src/config.ts'
import { MemoryBus } from '../../src/adapters/memory/bus.ts'

/** A task whose `extract` runs at epoch 1, with its complete artifact of that epoch written. */
function setUp(waitMs: number, stopped: () => boolean = () => false) {
  const doc = makeTaskDoc({ status: 'running' })
  doc.nodes['extract'] = makeNodeState('extract', 'extractor', { status: 'running', attempt_epoch: 1 })
  const rt = new TaskRuntime(doc, 1)
  const drains = { count: 0 }
  const sub = { drained: async () => void drains.count++ } as unknown as Subscription
  const store = { getArtifact: async () => ({ status: 'complete', attempt_epoch: 1 }) } as unknown as Store
  const deps: JudgeDeps = {
    config: { leaseTtlSec: 5 } as CoordinatorConfig,
    store,
    log: createLogger({ level: 'silent' }),
    statusSubscription: () => sub,
    handoverWaitMs: () => waitMs,
    stopped,
  }
  const ord = rt.ord.get('extract') as number
  return { rt, ord, drains, judge: leaseJudge(deps) }
}

test('a coordinator that holds every status partition finishes a node from its complete artifact at once', async () => {
  const { rt, ord, drains, judge } = setUp(0)
  assert.deepEqual(await judge(rt, ord, 1), { complete: { status: 'complete', attempt_epoch: 1 } })
  assert.equal(drains.count, 1, 'its own status backlog is drained first')
})

test('with status partitions held by other coordinators, the judge waits for the hand-over before finishing a node from its artifact', async () => {
  const { rt, ord, drains, judge } = setUp(400)
  const t0 = Date.now()
  assert.deepEqual(await judge(rt, ord, 1), { complete: { status: 'complete', attempt_epoch: 1 } })
  assert.ok(Date.now() - t0 >= 400, `finished after ${Date.now() - t0} ms, before the hand-over could happen`)
  assert.equal(drains.count, 2, 'the backlog is drained again after the wait')
})

test('reports that arrive during that wait win: the node is not finished from its artifact', async () => {
  const { rt, ord, drains, judge } = setUp(60_000)
  const verdict = judge(rt, ord, 1)
  // The forwarded TASK_DONE is applied meanwhile (the engine makes the node finished).
  setTimeout(() => rt.setNode(ord, { ...rt.node(ord), status: 'finished', stats: { count: 4 } }), 50)
  const t0 = Date.now()
  assert.equal(await verdict, 'check')
  assert.ok(Date.now() - t0 < 30_000, 'the judge gave way as soon as the node moved')
  assert.equal(drains.count, 1)
})

test('the reports other coordinators forwarded (queued in the owners\' topic) are applied before the artifact is read', async () => {
  const { rt, ord } = setUp(0)
  let release = (): void => undefined
  const forwarded = new Promise<void>((r) => {
    release = r
  })
  const reads: string[] = []
  const deps: JudgeDeps = {
    config: { leaseTtlSec: 5 } as CoordinatorConfig,
    store: {
      getArtifact: async () => {
        reads.push('artifact')
        return null
      },
    } as unknown as Store,
    log: createLogger({ level: 'silent' }),
    statusSubscription: () => undefined,
    forwarded: () => forwarded,
    handoverWaitMs: () => 0,
  }
  const verdict = leaseJudge(deps)(rt, ord, 1)
  await new Promise((r) => setTimeout(r, 50))
  assert.deepEqual(reads, [], 'not judged while forwarded reports wait (a claimed attempt was handed back 0.34 s before they were applied)')
  release()
  assert.equal(await verdict, 'check')
  assert.deepEqual(reads, ['artifact'])
})

test('a claimed attempt judged before it is handed back: its acceptance, arriving during the hand-over wait, ends the wait', async () => {
  const { rt, ord, judge } = setUp(60_000)
  rt.setNode(ord, { ...rt.node(ord), accepted_at_ms: null })
  const verdict = judge(rt, ord, 1)
  setTimeout(() => rt.setNode(ord, { ...rt.node(ord), accepted_at_ms: 5 }), 50)
  const t0 = Date.now()
  assert.equal(await verdict, 'check')
  assert.ok(Date.now() - t0 < 30_000, 'the judge gave way as soon as the attempt was accepted')
})

test('a status subscription that fails to drain does not fail the judgement', async () => {
  const doc = makeTaskDoc({ status: 'running' })
  doc.nodes['extract'] = makeNodeState('extract', 'extractor', { status: 'running', attempt_epoch: 1 })
  const rt = new TaskRuntime(doc, 1)
  const deps: JudgeDeps = {
    config: { leaseTtlSec: 5 } as CoordinatorConfig,
    store: { getArtifact: async () => ({ status: 'complete', attempt_epoch: 1 }) } as unknown as Store,
    log: createLogger({ level: 'silent' }),
    statusSubscription: () => ({ drained: () => Promise.reject(new Error('bus closed')) }) as unknown as Subscription,
    handoverWaitMs: () => 0,
  }
  assert.deepEqual(await leaseJudge(deps)(rt, rt.ord.get('extract') as number, 1), { complete: { status: 'complete', attempt_epoch: 1 } })
})

test('a coordinator that stops ends the wait (its timer does not hold the process either)', async () => {
  let stopping = false
  const { rt, ord, judge } = setUp(60_000, () => stopping)
  const verdict = judge(rt, ord, 1)
  setTimeout(() => {
    stopping = true
  }, 50)
  const t0 = Date.now()
  assert.equal(await verdict, 'check')
  assert.ok(Date.now() - t0 < 30_000)
})

test('the hand-over wait is twice the bus session timeout plus 5 s; none on a bus without sessions', () => {
  assert.equal(handoverGraceMs(undefined), 0)
  assert.equal(handoverGraceMs(10_000), 25_000)
  assert.equal(handoverGraceMs(6_000), 17_000)
})

test('a coordinator knows when other members hold some of its status partitions (and when it holds them all again)', async () => {
  const bus = new MemoryBus()
  const config = { ...COORDINATOR_DEFAULTS, groupId: 'g-share', topicPartitions: 4 }
  const a = new Subscriptions(bus, config, async () => undefined)
  const b = new Subscriptions(bus, config, async () => undefined)
  await a.ensureStatus('step')
  await waitFor(() => !a.sharesStatus('step'), { message: 'alone, a holds every status partition' })
  await b.ensureStatus('step')
  await waitFor(() => a.sharesStatus('step') && b.sharesStatus('step'), { message: 'two members split the partitions' })
  await b.closeAll()
  await waitFor(() => !a.sharesStatus('step'), { message: 'the partitions came back to a' })
  await a.closeAll()
})
