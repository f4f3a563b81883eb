/** Task variables end to end on the memory runtime (SCENARIOS T5: S-078…S-082). */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { Coordinator, MemoryBus, MemoryLogger, MemoryStore, type RoleHandler, type TaskView } from 'flowkit'
import { startRuntime } from '../helpers/runtime.ts'
import { gate } from '../helpers/gate.ts'

type Json = Record<string, unknown>

const nodeOf = (t: TaskView | null, id: string) => t!.nodes.find((n) => n.node_id === id)!

function fnNode(node_id: string, fn: string, fn_args: Json, depends_on: string[] = []): Json {
  return { node_id, type: 'coordinator_fn', depends_on, io: { fn, fn_args } }
}

/** A worker handler that records the variables its run was started with. */
function varsReader(seen: Json[]): RoleHandler {
  return {
    async processBatch(_batch, ctx) {
      seen.push(structuredClone(ctx.vars) as Json)
      return { metrics: { count: 1 } }
    },
  }
}

describe('task variables end to end', () => {
  test('S-078/S-079/S-082 vars.set → vars.merge → vars.incr → vars.unset run through the scheduler; each sees what the previous wrote; a worker child reads them', async () => {
    const seen: Json[] = []
    const rt = await startRuntime({ handlers: { reader: varsReader(seen) } })
    try {
      const id = await rt.coordinator.createTask({
        graph: {
          nodes: [
            fnNode('set', 'vars.set', { kv: { 'run.id': 'r-1', counters: { seen: 1 }, 'tmp.a': 1, 'tmp.b': 2 } }),
            // Overwrites counters.seen (1 → 10) and adds beside what set wrote.
            fnNode('merge', 'vars.merge', { data: { run: { stage: 'merged' }, counters: { seen: 10, tags: ['x', 'y'] } } }, ['set']),
            // 10 (from merge, not 1 from set) + 2.5.
            fnNode('incr', 'vars.incr', { key: 'counters.seen', by: 2.5 }, ['merge']),
            // Removes both keys set wrote under tmp; the emptied `tmp` is pruned.
            fnNode('unset', 'vars.unset', { keys: ['tmp.a', 'tmp.b'] }, ['incr']),
            { node_id: 'child', type: 'reader', depends_on: ['unset'] },
          ],
        },
      })
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 15000 })
      assert.equal(t.status, 'finished')
      for (const n of ['set', 'merge', 'incr', 'unset', 'child']) assert.equal(nodeOf(t, n).status, 'finished', n)
      const final = { run: { id: 'r-1', stage: 'merged' }, counters: { seen: 12.5, tags: ['x', 'y'] } }
      assert.deepEqual(t.vars, final)
      assert.deepEqual(seen, [final], 'the worker-run child saw the variables as the chain left them')

      // Each function left a complete artifact saying what it touched, in scheduling order.
      const touched: Record<string, unknown> = {}
      for (const n of ['set', 'merge', 'incr', 'unset']) {
        const arts = await rt.coordinator.listArtifacts(id, { nodeId: n })
        assert.equal(arts.length, 1, n)
        assert.equal(arts[0]?.status, 'complete')
        touched[n] = arts[0]?.meta['touched']
      }
      assert.deepEqual(touched, {
        set: ['run.id', 'counters.seen', 'tmp.a', 'tmp.b'],
        merge: ['run.stage', 'counters.seen', 'counters.tags'],
        incr: ['counters.seen'],
        unset: ['tmp.a', 'tmp.b'],
      })
      assert.equal((await rt.coordinator.listArtifacts(id, { nodeId: 'incr' }))[0]?.meta['value'], 12.5)
      for (const [a, b] of [['set', 'merge'], ['merge', 'incr'], ['incr', 'unset'], ['unset', 'child']] as const) {
        assert.ok((nodeOf(t, a).finished_at_ms ?? 0) <= (nodeOf(t, b).dispatched_at_ms ?? 0), `${a} finished before ${b} started`)
      }
    } finally {
      await rt.stop()
    }
  })

  test('S-080 cancelling a task keeps the variables written before the cancel', async () => {
    const started = gate()
    const never = gate()
    const hold: RoleHandler = {
      async processBatch(_b, ctx) {
        started.open()
        await never.wait(ctx.signal)
        return {}
      },
    }
    const rt = await startRuntime({ handlers: { hold } })
    try {
      const id = await rt.coordinator.createTask({
        graph: {
          nodes: [
            fnNode('set', 'vars.set', { kv: { 'job.owner': 'ana', 'job.attempts': 1 } }),
            fnNode('bump', 'vars.incr', { key: 'job.attempts' }, ['set']),
            { node_id: 'hold', type: 'hold', depends_on: ['bump'] },
            fnNode('after', 'vars.set', { kv: { 'job.after_cancel': true } }, ['hold']),
          ],
        },
      })
      await started.wait()
      const running = await rt.coordinator.getTask(id)
      assert.deepEqual(running?.vars, { job: { owner: 'ana', attempts: 2 } })
      assert.equal(await rt.coordinator.cancelTask(id, { reason: 'test cancel' }), true)
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10000 })
      assert.equal(t.status, 'cancelled')
      assert.equal(nodeOf(t, 'hold').status, 'cancelled')
      assert.equal(nodeOf(t, 'after').status, 'cancelled')
      assert.equal(nodeOf(t, 'after').attempt_epoch, 0, 'the function after the cancel never ran')
      assert.deepEqual(t.vars, { job: { owner: 'ana', attempts: 2 } }, 'variables written before the cancel are kept')
    } finally {
      never.open()
      await rt.stop()
    }
  })

  test('a vars function that fails on the task variables fails its node permanently with the reason code, and the task fails; arguments that can never work are refused at submission', async () => {
    let childRuns = 0
    const rt = await startRuntime({ handlers: { child: { async processBatch() { childRuns++; return {} } } } })
    try {
      const id = await rt.coordinator.createTask({
        graph: {
          nodes: [
            fnNode('ok', 'vars.set', { kv: { fine: 1, n: 'text' } }),
            fnNode('bad', 'vars.incr', { key: 'n' }, ['ok']),
            { node_id: 'child', type: 'child', depends_on: ['bad'] },
          ],
        },
      })
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10000 })
      assert.equal(t.status, 'failed')
      const bad = nodeOf(t, 'bad')
      assert.equal(bad.status, 'failed')
      assert.equal(bad.last_error?.reason_code, 'vars_not_numeric')
      assert.equal(bad.last_error?.permanent, true)
      assert.match(bad.last_error?.error ?? '', /"n"/)
      assert.equal(bad.attempt_epoch, 1, 'a permanent failure is not retried')
      assert.ok(['cancelled', 'skipped'].includes(nodeOf(t, 'child').status), nodeOf(t, 'child').status)
      assert.equal(childRuns, 0)
      assert.deepEqual(t.vars, { fine: 1, n: 'text' }, 'the failed write changed nothing')
      // What fails whatever the variables are is a problem of the graph.
      await assert.rejects(
        rt.coordinator.createTask({ graph: { nodes: [fnNode('ok', 'vars.set', { kv: { fine: 1 } }), fnNode('bad', 'vars.set', { kv: { 'a.$where': 1 } }, ['ok'])] } }),
        (err: Error & { code?: string; path?: string }) => {
          assert.equal(err.code, 'GRAPH_BAD_FIELD')
          assert.equal(err.path, 'nodes[1].io.fn_args')
          assert.match(err.message, /vars\.set: invalid key "a\.\$where".*\(fn_args of node "bad"\)/)
          return true
        },
      )
    } finally {
      await rt.stop()
    }
  })

  test('a limit reached with the task variables fails the node with vars_limit; a limit or a blocked secret in the arguments refuses the graph; no log or error holds the value', async () => {
    const bus = new MemoryBus()
    const store = new MemoryStore()
    const logger = new MemoryLogger()
    const coordinator = new Coordinator({ bus, store, logger, config: { schedulerTickSec: 0.2 } })
    await coordinator.start()
    const secret = 'gh' + 'p_' + 'Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0FeDcBa'
    try {
      // 200 keys, then 100 more: each write is fine alone, together over the 256-key limit.
      const keys = (prefix: string, n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`${prefix}${i}`, i]))
      const limitId = await coordinator.createTask({
        graph: { nodes: [fnNode('first', 'vars.set', { kv: keys('a', 200) }), fnNode('more', 'vars.set', { kv: keys('b', 100) }, ['first'])] },
      })
      const limited = await coordinator.waitForTask(limitId, { timeoutMs: 10000 })
      assert.equal(limited.status, 'failed')
      assert.equal(nodeOf(limited, 'more').last_error?.reason_code, 'vars_limit')
      assert.match(nodeOf(limited, 'more').last_error?.error ?? '', /the key limit is 256/)
      assert.equal(Object.keys(limited.vars).length, 200)

      await assert.rejects(coordinator.createTask({ graph: { nodes: [fnNode('incr', 'vars.incr', { key: Array.from({ length: 17 }, (_, i) => `d${i}`).join('.') })] } }), /depth limit is 16/)
      await assert.rejects(
        coordinator.createTask({ graph: { nodes: [fnNode('set', 'vars.set', { kv: { 'api.credential_value': secret }, block_secrets: true })] } }),
        (err: Error & { code?: string }) => {
          assert.equal(err.code, 'GRAPH_BAD_FIELD')
          assert.match(err.message, /"api\.credential_value"/)
          assert.ok(!err.message.includes(secret) && !JSON.stringify(err).includes(secret.slice(4)), 'the error does not hold the value')
          return true
        },
      )
      assert.ok(!JSON.stringify(logger.records).includes(secret.slice(4)), 'no log record holds the value')
    } finally {
      await coordinator.stop()
      await bus.close()
      await store.close()
    }
  })

  test('ctx.vars is read-only all the way down: a handler changing a nested value throws', async () => {
    const tried: string[] = []
    const writer: RoleHandler = {
      async processBatch(_b, ctx) {
        const cfg = ctx.vars['cfg'] as { limit: number; list: number[]; deep: { x: string } }
        for (const [what, change] of [
          ['limit', () => { cfg.limit = 999 }],
          ['list', () => { cfg.list.push(4) }],
          ['deep', () => { cfg.deep.x = 'changed' }],
        ] as const) {
          try {
            change()
            tried.push(`${what}: changed`)
          } catch (err) {
            tried.push(`${what}: ${(err as Error).name}`)
          }
        }
        return {}
      },
    }
    const rt = await startRuntime({ handlers: { writer } })
    try {
      const id = await rt.coordinator.createTask({
        graph: { nodes: [fnNode('set', 'vars.set', { kv: { cfg: { limit: 1, list: [1, 2, 3], deep: { x: 'a' } } } }), { node_id: 'w', type: 'writer', depends_on: ['set'] }] },
      })
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 10_000 })
      assert.equal(t.status, 'finished')
      assert.deepEqual(tried, ['limit: TypeError', 'list: TypeError', 'deep: TypeError'])
      assert.deepEqual(t.vars, { cfg: { limit: 1, list: [1, 2, 3], deep: { x: 'a' } } })
    } finally {
      await rt.stop()
    }
  })
})
