/**
 * Defect 15 (issue 7): start commands with their full params were kept 7 days in `outbox_sent`.
 * Since the write-path rewrite the coordinator sends commands from memory once their journal entry
 * is durable: a command that goes out leaves no outbox row, and the journal records only what an
 * audit needs (topic, key, dedup_id, kind; the entry's time). Only a dead letter keeps its
 * payload (an operator may requeue it); once a requeued one is sent, the adapters still copy it
 * whole into the sent rows and keep it `retentionSec` (7 days) — the todo test below states the
 * wanted behaviour (docs/limits.md, "Retention").
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { RoleHandler } from 'flowkit'
import { startRuntime, testStore } from '../helpers/runtime.ts'

const MARKER = 'PAYLOAD-d15-7f3a'

const done: RoleHandler = {
  async processBatch() {
    return { metrics: { count: 1 } }
  },
}

test('defect 15: sent commands keep no payload in the store (no outbox row; the journal holds ids, kind, topic, key, dedup_id)', async () => {
  const rt = await startRuntime({ handlers: { step: done } })
  try {
    const id = await rt.coordinator.createTask({
      params: { note: MARKER },
      graph: {
        nodes: [
          { node_id: 'a', type: 'step', io: { input_inline: { secret_ish: MARKER } } },
          { node_id: 'b', type: 'step', depends_on: ['a'], io: { input_ref: { uri: MARKER } } },
        ],
      },
    })
    assert.equal((await rt.coordinator.waitForTask(id, { timeoutMs: 30_000 })).status, 'finished')
    const rows = await rt.store.outboxList({})
    assert.deepEqual(
      rows.filter((r) => r.value.includes(MARKER)),
      [],
      'no outbox row (pending, sent or dead) holds a START payload',
    )
    const entries = await rt.store.readJournal([id])
    const commands = entries.flatMap((e) => e.commands ?? [])
    assert.ok(commands.some((c) => c.kind === 'TASK_START'), 'the journal records the STARTs')
    for (const c of commands) assert.deepEqual(Object.keys(c).sort(), ['dedup_id', 'key', 'kind', 'topic'])
    assert.ok(!JSON.stringify(entries).includes(MARKER), 'no journal entry holds params or io')
  } finally {
    await rt.stop()
  }
})

test(
  'defect 15: a requeued dead letter, once sent, keeps no payload in the sent rows',
  async () => {
    const { store, drop } = await testStore()
    try {
      await store.init()
      const row = { topic: 'cmd.step.v1', key: 't:a', value: JSON.stringify({ payload: { input_inline: MARKER } }), dedup_id: 'd15-dead' }
      assert.equal(await store.outboxEnqueue(row, 1000, { attempts: 3, error: 'broker down' }), true)
      const [dead] = await store.outboxList({ status: 'failed' })
      assert.ok(dead)
      assert.equal(await store.outboxRequeue(dead.id, 2000), true)
      const claimed = await store.outboxClaimDue(3000, 10, 60_000)
      assert.equal(claimed.length, 1)
      await store.outboxMarkSent(dead.id, 4000)
      const sent = await store.outboxList({ status: 'sent' })
      assert.equal(sent.length, 1)
      assert.equal(sent[0]?.dedup_id, 'd15-dead')
      assert.ok(!(sent[0]?.value ?? '').includes(MARKER), 'a sent row keeps ids, topic, key, dedup_id and times, not the payload')
    } finally {
      await store.close()
      await drop()
    }
  },
)
