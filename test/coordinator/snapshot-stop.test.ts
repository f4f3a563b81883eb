/**
 * A stop that gives up the pending snapshots (stopSnapshotsSec) still waits, briefly, for the
 * writes already in flight: it returned with them running on the store, racing what the caller did
 * next — closing the client, or dropping a bench database, which crashed FerretDB 1.24 (SIGBUS in
 * SQLite) at the end of every real chain bench.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryStore } from 'flowkit'
import { SnapshotWriter } from '../../src/coordinator/snapshots.ts'
import type { VersionedTask } from '../../src/model/journal.ts'
import { MemoryLogger } from '../../src/log.ts'
import { SystemClock } from '../../src/clock.ts'
import { overrideStore } from '../helpers/store-proxy.ts'
import { makeTaskDoc } from '../helpers/fixtures.ts'

test('a stop that gives up pending snapshots returns with no snapshot write in flight', async () => {
  let inFlight = 0
  let started = 0
  const store = overrideStore(new MemoryStore(), {
    writeSnapshot: (original) => async (...args: unknown[]) => {
      inFlight++
      started++
      try {
        await new Promise((r) => setTimeout(r, 300))
        return await original(...args)
      } finally {
        inFlight--
      }
    },
  })
  const writer = new SnapshotWriter(store, new SystemClock(), new MemoryLogger(), () => undefined, { idleMs: 0, concurrency: 2 })
  for (let i = 0; i < 10; i++) writer.offer({ ...makeTaskDoc({ status: 'finished' }), v: 1 } as VersionedTask, true)
  const left = await writer.drain(50)
  assert.ok(left > 0, 'the budget gave some up')
  assert.ok(started >= 1, 'writes were under way when the budget ran out')
  assert.equal(inFlight, 0, 'no write still running on the store when the stop goes on')
  // And they make no more attempts after it.
  const after = started
  await new Promise((r) => setTimeout(r, 400))
  assert.equal(started, after)
})
