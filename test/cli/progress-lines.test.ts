/**
 * The CLI's task table (src/cli/progress.ts taskLines, used by `flowkit dev` and `flowkit status`):
 * a node that failed is shown with its error; one that finished after a failed attempt shows the
 * error it was retried after, not as a failure.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { taskLines } from '../../src/cli/progress.ts'
import { TransientError, type RoleHandler } from '../../src/index.ts'
import { startRuntime } from '../helpers/runtime.ts'

test('a node that finished after a failed attempt shows retried_after=<reason>, a failed one error=<reason>', async () => {
  let calls = 0
  const flaky: RoleHandler = {
    async processBatch() {
      calls++
      if (calls === 1) throw new TransientError('flaky once', 'flaky')
      return {}
    },
  }
  const broken: RoleHandler = {
    async processBatch() {
      throw new Error('always')
    },
  }
  const rt = await startRuntime({ handlers: { flaky, broken } })
  try {
    const ok = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'f', type: 'flaky', retry_policy: { max: 3, backoff_sec: 0 } }] } })
    const t = await rt.coordinator.waitForTask(ok, { timeoutMs: 10_000 })
    assert.equal(t.status, 'finished')
    assert.equal(t.nodes[0]?.last_error?.reason_code, 'flaky', 'the error stays as history')
    const row = taskLines(t, Date.now()).find((l) => /^\s+f\s/.test(l)) ?? ''
    assert.match(row, /finished .*retried_after=flaky/)
    assert.doesNotMatch(row, /error=/)
    const bad = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'b', type: 'broken', retry_policy: { max: 1, backoff_sec: 0 } }] } })
    const f = await rt.coordinator.waitForTask(bad, { timeoutMs: 10_000 })
    assert.equal(f.status, 'failed')
    assert.match(taskLines(f, Date.now()).find((l) => /^\s+b\s/.test(l)) ?? '', /failed .*error=/)
  } finally {
    await rt.stop()
  }
})

test('a terminal that reports 0 rows or columns (script, some container terminals) is drawn at the default size, not cut to nothing', async () => {
  const { makeOut } = await import('../../src/cli/output.ts')
  const { PassThrough } = await import('node:stream')
  const stdout = Object.assign(new PassThrough(), { isTTY: true, columns: 0, rows: 0 })
  const out = makeOut(false, { stdout, stderr: new PassThrough() })
  assert.equal(out.columns, 120)
  assert.equal(out.rows, 40)
  const sized = makeOut(false, { stdout: Object.assign(new PassThrough(), { isTTY: true, columns: 80, rows: 24 }), stderr: new PassThrough() })
  assert.deepEqual([sized.columns, sized.rows], [80, 24])
})
