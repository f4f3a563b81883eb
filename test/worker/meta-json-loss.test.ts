/**
 * A handler's meta is stored as JSON. What JSON would store changed without a word — NaN or
 * Infinity (as null), a Map or a Set (as {}, its entries lost) — fails the node permanently with
 * `bad_handler_result`, naming where it is and how to convert it, as a meta that is not JSON at all
 * does; a Date is kept as its ISO text (its toJSON), as before. A batch_uid that is not a string
 * is refused too: it was replaced by the batch's position, silently, so a retry that yields in
 * another order counted the same data under other uids. (Found by an adversarial probe.)
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { RoleHandler, TaskView } from 'flowkit'
import { startRuntime } from '../helpers/runtime.ts'

async function runOne(h: RoleHandler): Promise<TaskView> {
  const rt = await startRuntime({ handlers: { h } })
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'a', type: 'h', retry_policy: { max: 3, backoff_sec: 0 } }] } })
    return await rt.coordinator.waitForTask(id, { timeoutMs: 10_000 })
  } finally {
    await rt.stop()
  }
}

const refused = (t: TaskView, message: RegExp): void => {
  const n = t.nodes[0]
  assert.equal(t.status, 'failed')
  assert.equal(n?.attempt_epoch, 1, 'not retried')
  assert.equal(n?.last_error?.reason_code, 'bad_handler_result')
  assert.match(n?.last_error?.error ?? '', message)
}

test('a meta holding NaN, Infinity, a Map or a Set (at any depth) fails the node permanently, naming where and how to convert it', async () => {
  const cases: Array<[unknown, RegExp]> = [
    [{ score: Number.NaN }, /partial artifact meta of batch b0: NaN at meta\.score, which JSON would store as null/],
    [{ deep: { list: [1, Number.POSITIVE_INFINITY] } }, /Infinity at meta\.deep\.list\[1\]/],
    [{ m: new Map([['k', 1]]) }, /a Map at meta\.m, which JSON would store as \{\} \(its entries lost\); convert it first \(Object\.fromEntries\(map\)\)/],
    [{ s: [new Set([1])] }, /a Set at meta\.s\[0\].*\(\[\.\.\.set\]\)/],
    [{ lastError: new Error('boom') }, /an Error at meta\.lastError, which JSON would store as \{\} \(its message and stack lost\)/],
    [{ re: /ab+c/ }, /a RegExp at meta\.re/],
    [{ bytes: new Uint8Array([1, 2, 3]) }, /a Uint8Array at meta\.bytes, which JSON would store as an object of its byte indexes/],
  ]
  for (const [meta, message] of cases) {
    refused(await runOne({ async processBatch() { return { meta: meta as Record<string, unknown> } } }), message)
  }
  // The complete artifact's meta (finalize) is checked the same way.
  refused(await runOne({ async processBatch() { return {} }, async finalize() { return { meta: { n: Number.NaN } } } }), /complete artifact meta: NaN at meta\.n/)
})

test('a Date in a meta is kept as its ISO text; a batch_uid that is not a string is refused, naming it', async () => {
  const rt = await startRuntime({ handlers: { h: { async processBatch() { return { meta: { at: new Date(0) } } } } } })
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'a', type: 'h' }] } })
    assert.equal((await rt.coordinator.waitForTask(id, { timeoutMs: 10_000 })).status, 'finished')
    const partial = (await rt.store.listArtifacts(id, { nodeId: 'a' })).find((a) => a.batch_uid !== null)
    assert.deepEqual(partial?.meta, { at: '1970-01-01T00:00:00.000Z' })
  } finally {
    await rt.stop()
  }
  const numbered: RoleHandler = {
    async *iterBatches() {
      yield { batch_uid: 7 as unknown as string, payload: {} }
    },
    async processBatch() {
      return {}
    },
  }
  refused(await runOne(numbered), /iterBatches batch #0: batch_uid must be a string, got number \(use String\(7\)\)/)
})

test('a checkpoint holding a Map, a Set or an Error fails the node permanently (the next attempt got {} back)', async () => {
  for (const [state, message] of [
    [{ seen: new Map([['a', 1]]) }, /checkpoint: a Map at checkpoint\.seen/],
    [{ done: new Set(['b0']) }, /a Set at checkpoint\.done/],
    [{ err: new Error('x') }, /an Error at checkpoint\.err/],
  ] as Array<[unknown, RegExp]>) {
    refused(await runOne({ async processBatch(_b, ctx) { await ctx.checkpoint(state); return {} } }), message)
  }
})
