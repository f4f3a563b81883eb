/**
 * What a registered coordinator function throws or returns ends its node, whatever it is
 * (src/coordinator/fn-runner.ts, fn-result.ts). Before:
 * - a function that threw `null` or `undefined` left its node running for ever (reading the
 *   thrown value's reasonCode threw inside the error path), and a cancel ended it only at the
 *   cancel deadline;
 * - a result was applied unchecked: a BigInt in `stats` made every read of the task throw a raw
 *   TypeError (and every listing of all tasks with it), a BigInt in `vars` left the task running,
 *   a Map or NaN was stored changed, `vars` of any shape or size replaced the task's variables.
 * Now a thrown value of any kind fails the node permanently (`coordinator_fn_error`), and a
 * result that is not plain JSON data within the variables' rules fails it with `bad_fn_result`.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { CoordinatorFn, TaskView } from 'flowkit'
import { checkFnResult } from '../../src/coordinator/fn-result.ts'
import { fnFailureReason } from '../../src/coordinator/fn-runner.ts'
import { startRuntime } from '../helpers/runtime.ts'

const nodeOf = (t: TaskView, id: string) => t.nodes.find((n) => n.node_id === id)

const graphOf = (fn: string) => ({
  nodes: [
    { node_id: 'f', type: 'coordinator_fn', io: { fn } },
    { node_id: 'after', type: 'coordinator_fn', depends_on: ['f'], io: { fn: 'noop' } },
  ],
})

test('a coordinator function that throws null, undefined or a plain value fails its node permanently; the task fails and stays readable', async () => {
  const thrown: Record<string, unknown> = { nul: null, undef: undefined, str: 'went wrong', num: 42, obj: { reasonCode: 7 } }
  const functions: Record<string, CoordinatorFn> = {}
  for (const [name, v] of Object.entries(thrown)) {
    functions[name] = async () => {
      throw v
    }
  }
  const rt = await startRuntime({ functions })
  try {
    for (const name of Object.keys(thrown)) {
      const id = await rt.coordinator.createTask({ graph: graphOf(name) })
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10_000 })
      assert.equal(t.status, 'failed', name)
      const f = nodeOf(t, 'f')
      assert.equal(f?.status, 'failed', name)
      assert.equal(f?.last_error?.reason_code, 'coordinator_fn_error', name)
      assert.equal(f?.last_error?.permanent, true, name)
      assert.equal(f?.attempt_epoch, 1, `${name}: not retried`)
      assert.notEqual(nodeOf(t, 'after')?.status, 'finished', name)
    }
  } finally {
    await rt.stop()
  }
})

test('a registered function result that is not plain JSON data, or vars outside their rules, fails the node with bad_fn_result naming the field; reads and listings keep working', async () => {
  const big = Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`k${i}`, i]))
  const results: Record<string, [unknown, RegExp]> = {
    bigintStats: [{ stats: { n: 10n } }, /returned stats: must be plain JSON data .*got bigint 10 \(at stats\.n\)/],
    bigintVars: [{ vars: { b: 1n } }, /returned vars: must be plain JSON data .*\(at vars\.b\)/],
    nanStats: [{ stats: { a: Number.NaN } }, /got NaN \(at stats\.a\)/],
    mapMeta: [{ meta: { m: new Map([['k', 1]]) } }, /returned meta: must be plain JSON data .*\(at meta\.m\)/],
    arrayVars: [{ vars: [1, 2] }, /returned vars as an array, not an object/],
    nullVars: [{ vars: null }, /returned vars as null, not an object/],
    tooManyVars: [{ vars: big }, /returned vars with 300 keys; the key limit is 256/],
    badKey: [{ vars: { 'a.b': 1 } }, /invalid key "a\.b"/],
    notObject: ['done', /returned string, not an object \{ meta\?, stats\?, vars\?, nodeStats\? \}/],
    nodeStatsShape: [{ nodeStats: { after: 3 } }, /returned nodeStats\.after as number, not an object/],
  }
  const functions: Record<string, CoordinatorFn> = {}
  for (const [name, [res]] of Object.entries(results)) functions[name] = async () => res as never
  const rt = await startRuntime({ functions })
  try {
    for (const [name, [, message]] of Object.entries(results)) {
      const id = await rt.coordinator.createTask({ graph: graphOf(name) })
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10_000 })
      assert.equal(t.status, 'failed', name)
      const f = nodeOf(t, 'f')
      assert.equal(f?.last_error?.reason_code, 'bad_fn_result', name)
      assert.match(f?.last_error?.error ?? '', message, name)
      assert.deepEqual(t.vars, {}, `${name}: the task's variables are untouched`)
      assert.ok(await rt.coordinator.getTask(id), `${name}: readable`)
    }
    assert.ok((await rt.store.listTasks({ limit: 100 })).length >= Object.keys(results).length, 'every task listed')
  } finally {
    await rt.stop()
  }
})

test('a registered function returning plain JSON is applied as before: meta, stats, vars (undefined keys dropped), nodeStats; nothing returned is an empty result', async () => {
  const functions: Record<string, CoordinatorFn> = {
    good: async (ctx) => ({ meta: { rows: [1, 2], at: null }, stats: { n: 2, label: 'x' }, vars: { ...ctx.task.coordinator.vars, a: { b: 1 }, gone: undefined }, nodeStats: { after: { seen: 1 } } }),
    nothing: async () => undefined as never,
  }
  const rt = await startRuntime({ functions })
  try {
    const id = await rt.coordinator.createTask({
      graph: {
        nodes: [
          { node_id: 'f', type: 'coordinator_fn', io: { fn: 'good' } },
          { node_id: 'after', type: 'coordinator_fn', depends_on: ['f'], io: { fn: 'nothing' } },
        ],
      },
    })
    const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10_000 })
    assert.equal(t.status, 'finished')
    assert.deepEqual(t.vars, { a: { b: 1 } })
    assert.deepEqual(nodeOf(t, 'f')?.stats, { n: 2, label: 'x' })
    assert.equal(nodeOf(t, 'after')?.stats['seen'], 1)
    const art = (await rt.store.listArtifacts(id, { nodeId: 'f' }))[0]
    assert.deepEqual(art?.meta, { rows: [1, 2], at: null })
  } finally {
    await rt.stop()
  }
})

test('checkFnResult copies what it accepts; fnFailureReason reads any thrown value', () => {
  const meta = { a: [1, { b: 'c' }] }
  const out = checkFnResult('f', { meta })
  assert.deepEqual(out.meta, meta)
  assert.notEqual(out.meta, meta, 'a copy: the function keeps no handle on what is stored')
  assert.deepEqual(checkFnResult('f', null), {})
  assert.throws(() => checkFnResult('f', { meta: { d: new Date(0) } }), /returned meta: must be plain JSON data/)
  assert.equal(fnFailureReason(null), 'coordinator_fn_error')
  assert.equal(fnFailureReason(undefined), 'coordinator_fn_error')
  assert.equal(fnFailureReason({ reasonCode: 7 }), 'coordinator_fn_error')
  assert.equal(fnFailureReason({ reasonCode: 'quota' }), 'quota')
  assert.equal(fnFailureReason({ reasonCode: 'x'.repeat(500) }).length, 200)
})
