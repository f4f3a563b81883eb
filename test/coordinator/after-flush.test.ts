/**
 * Finished tasks leave the coordinator's memory once their final snapshot is written: none stays
 * referenced. The list bounding finished tasks that wait for their snapshot kept every task it
 * had held, evicted or not, up to 10,000 of them (about 3 KB each: 6.5 MB of a 2,000-chain bench
 * run's heap, copied by the young-generation collector while the tasks were running).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { AfterFlush } from '../../src/coordinator/after-flush.ts'
import type { Engine } from '../../src/coordinator/engine.ts'
import type { Flusher } from '../../src/coordinator/flush.ts'
import type { FnRunner } from '../../src/coordinator/fn-runner.ts'
import type { OutboxDispatcher } from '../../src/coordinator/outbox.ts'
import { TaskRuntime } from '../../src/coordinator/runtime.ts'
import type { SnapshotWriter } from '../../src/coordinator/snapshots.ts'
import { SystemClock } from '../../src/clock.ts'
import { createLogger } from '../../src/log.ts'
import { makeTaskDoc } from '../helpers/fixtures.ts'

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

test('a finished task whose snapshot is written is no longer referenced by the coordinator', async () => {
  const tasks = new Map<string, TaskRuntime>()
  const after = new AfterFlush({
    engine: { tasks } as unknown as Engine,
    outbox: {} as OutboxDispatcher,
    fns: {} as FnRunner,
    clock: new SystemClock(),
    log: createLogger({ level: 'silent' }),
    snapshotIntervalMs: 500,
    snapshots: () => ({ busy() {}, offer() {} }) as unknown as SnapshotWriter,
    flusher: () => ({ forget() {} }) as unknown as Flusher,
  })
  const refs: WeakRef<TaskRuntime>[] = []
  const finish = (): void => {
    const doc = makeTaskDoc({ status: 'finished' })
    const rt = new TaskRuntime(doc, 1)
    tasks.set(rt.id, rt)
    rt.snapshotV = 0
    after.durable(rt, [], [], null) // terminal, its snapshot not written yet: kept in memory
    assert.ok(tasks.has(rt.id))
    after.snapshotWritten(rt.id, 1)
    assert.ok(!tasks.has(rt.id), 'evicted once its snapshot is written')
    refs.push(new WeakRef(rt))
  }
  for (let i = 0; i < 20; i++) finish()
  await new Promise((r) => setImmediate(r))
  gc()
  const alive = refs.filter((r) => r.deref() !== undefined).length
  assert.equal(alive, 0, `${alive} of 20 evicted task runtimes still referenced`)
})
