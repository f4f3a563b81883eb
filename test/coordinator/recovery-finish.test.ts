/**
 * The end of a recovery (src/coordinator/recovery.ts, finishRecovery): an inherited running node
 * whose complete artifact exists is finished from it; when other coordinators read part of its
 * status topic, only after waiting for its last reports, which may still be on their way through
 * one of them (read, not forwarded yet, or held by one that died): finishing it first lost their
 * metrics (the reliability suite's coordinators-3 scenario: "stats items=undefined"), and a cancel
 * waiting for the recovery would otherwise overtake them.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { finishRecovery, type RecoveryDeps } from '../../src/coordinator/recovery.ts'
import { TaskRuntime } from '../../src/coordinator/runtime.ts'
import type { Engine } from '../../src/coordinator/engine.ts'
import type { CoordinatorConfig } from '../../src/config.ts'
import { createLogger } from '../../src/log.ts'
import type { Store } from '../../src/ports/store.ts'
import { SystemClock } from '../../src/clock.ts'
import { makeNodeState, makeTaskDoc } from '../helpers/fixtures.ts'

async function finish(waitMs: number, owners?: () => Promise<void>, order: string[] = [], during?: (rt: TaskRuntime) => void): Promise<{ applied: string[]; armed: number }> {
  const doc = makeTaskDoc({ status: 'running' })
  doc.nodes['extract'] = makeNodeState('extract', 'extractor', { status: 'running', attempt_epoch: 1 })
  const rt = new TaskRuntime(doc, 1)
  rt.inherited.add(rt.ord.get('extract') as number)
  const applied: string[] = []
  let armed = 0
  const engine = {
    tasks: new Map([[rt.id, rt]]),
    graceEnd: 0,
    apply: (_rt: TaskRuntime, _ord: number, ev: { kind: string }) => {
      applied.push(ev.kind)
      return true
    },
    armNode: () => void armed++,
  } as unknown as Engine
  const deps = {
    config: { discoveryWindowSec: 0 } as CoordinatorConfig,
    store: {
      getArtifact: async () => {
        order.push('artifact read')
        return { status: 'complete', attempt_epoch: 1 }
      },
    } as unknown as Store,
    clock: new SystemClock(),
    log: createLogger({ level: 'silent' }),
    engine,
    barrier: async () => undefined,
    handoverWaitMs: (type: string) => (type === 'extractor' ? waitMs : 0),
    ...(owners === undefined ? {} : { owners }),
  } as unknown as RecoveryDeps
  if (during !== undefined) setTimeout(() => during(rt), 50)
  await finishRecovery([rt], deps, [], new AbortController().signal)
  return { applied, armed }
}

test('a coordinator that reads the whole status topic finishes an inherited node from its complete artifact', async () => {
  assert.deepEqual(await finish(0), { applied: ['recovered_complete'], armed: 1 })
})

test('with other coordinators reading part of the status topic, the node waits for its reports first: finished from its artifact only if they do not come', async () => {
  const t0 = Date.now()
  assert.deepEqual(await finish(300), { applied: ['recovered_complete'], armed: 1 })
  assert.ok(Date.now() - t0 >= 300, 'it waited for the hand-over')
})

test('reports that come during that wait win: the node is not finished from its artifact', async () => {
  const t0 = Date.now()
  const r = await finish(60_000, undefined, [], (rt) => {
    const ord = rt.ord.get('extract') as number
    rt.setNode(ord, { ...rt.node(ord), status: 'finished', stats: { count: 4 } })
  })
  assert.deepEqual(r.applied, [])
  assert.ok(Date.now() - t0 < 30_000, 'the wait ended as soon as the node moved')
})

test('the reports forwarded to this coordinator (owners topic) are applied before the artifact is looked at', async () => {
  const order: string[] = []
  const { applied } = await finish(
    0,
    async () => {
      await new Promise((r) => setTimeout(r, 30))
      order.push('owners drained')
    },
    order,
  )
  assert.deepEqual(order, ['owners drained', 'artifact read'])
  assert.deepEqual(applied, ['recovered_complete'])
})
