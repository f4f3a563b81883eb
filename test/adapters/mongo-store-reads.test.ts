/**
 * MongoStore reads on the server of FLOWKIT_MONGO_URL: listings and artifact lookups asked for at
 * once (merged into one query on FerretDB) each get what they would alone; a task read applies the
 * journal after its snapshot and a read again goes on from the state read before; appendJournal's
 * one insertMany and its conflicts.
 */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { describe, it } from 'node:test'
import type { MongoStore } from '../../src/adapters/mongo/index.ts'
import type { JournalEntry } from '../../src/ports/store.ts'
import { makeNodeState, makeTaskDoc } from '../helpers/fixtures.ts'
import { T0, entry, useMongoTestDb } from '../helpers/mongo-store.ts'
import { mongoUrl, realSkip } from '../helpers/real.ts'

const note = (msg: string) => process.stderr.write(`# ${msg}\n`)
const skip = realSkip('mongo')
const url = mongoUrl()

describe('MongoStore reads on a real server', { skip }, () => {
  const db = useMongoTestDb(url!)
  const newStore = db.newStore

  it('listings asked for at once (merged into one query on FerretDB) each get what they get alone', async () => {
    const store = newStore()
    const raw = await store.rawCollection('artifacts')
    const tasks = [`t-${randomUUID()}`, `t-${randomUUID()}`, `t-${randomUUID()}`]
    const writes = tasks.flatMap((task, ti) =>
      ['a', 'b'].flatMap((node) => [
        ...[0, 1, 2].map((i) => ({ task_id: task, node_id: node, batch_uid: `s${i}`, status: 'partial' as const, meta: { i, ti }, attempt_epoch: 1, worker_id: 'w1' })),
        { task_id: task, node_id: node, batch_uid: null, status: 'complete' as const, meta: {}, attempt_epoch: 1, worker_id: 'w1' },
      ]),
    )
    for (const [i, w] of writes.entries()) await store.upsertArtifact(w, T0 + i * 10)
    // A Python worker's partial: a BSON date, its own _id.
    await raw.insertOne({ task_id: tasks[0], node_id: 'a', batch_uid: 'py', status: 'partial', meta: {}, attempt_epoch: 1, worker_id: 'py', created_at: new Date(T0 + 25), updated_at: new Date(T0 + 25) })
    const listings: [string, Parameters<MongoStore['listArtifacts']>[1]][] = [
      [tasks[0] as string, { nodeId: 'a' }],
      [tasks[0] as string, { nodeId: 'a', createdAfter: T0 + 20 }],
      [tasks[0] as string, {}],
      [tasks[1] as string, { nodeId: 'b', status: 'complete' }],
      [tasks[1] as string, { nodeId: 'b', createdAfter: T0 + 75 }],
      [tasks[2] as string, { nodeId: 'a', status: 'partial', createdAfter: 0 }],
      [tasks[2] as string, { nodeId: 'zz' }],
      [`t-${randomUUID()}`, {}],
    ]
    const alone = []
    for (const [task, q] of listings) alone.push(await store.listArtifacts(task, q))
    assert.deepEqual(alone[1]?.map((a) => a.batch_uid), ['s2', 'py', null])
    assert.equal(alone[2]?.length, 9)
    for (let round = 0; round < 3; round++) {
      const together = await Promise.all(listings.map(([task, q]) => store.listArtifacts(task, q)))
      assert.deepEqual(together, alone)
    }
  })

  it('artifact lookups asked for at once (a Python worker\'s merged into one query on FerretDB) each get what they get alone', async () => {
    const store = newStore()
    const raw = await store.rawCollection('artifacts')
    const task = `t-${randomUUID()}`
    await store.upsertArtifact({ task_id: task, node_id: 'ours', batch_uid: 's0', status: 'partial', meta: { n: 1 }, attempt_epoch: 2, worker_id: 'w1' }, T0)
    await store.upsertArtifact({ task_id: task, node_id: 'ours', batch_uid: null, status: 'complete', meta: {}, attempt_epoch: 2, worker_id: 'w1' }, T0 + 1)
    // A Python worker's: its own _id, a complete artifact without batch_uid, BSON dates.
    const py = { attempt_epoch: 3, worker_id: 'py', created_at: new Date(T0 + 2), updated_at: new Date(T0 + 2) }
    await raw.insertOne({ task_id: task, node_id: 'py', status: 'complete', meta: { total: 4 }, ...py })
    await raw.insertOne({ task_id: task, node_id: 'py', batch_uid: 'p1', status: 'partial', meta: { k: 'v' }, ...py })
    await raw.insertOne({ task_id: `${task}-other`, node_id: 'py', status: 'complete', meta: { other: true }, ...py })
    const refs: [string, string, string | null][] = [
      [task, 'ours', 's0'],
      [task, 'ours', null],
      [task, 'py', null],
      [task, 'py', 'p1'],
      [task, 'py', 'p2'],
      [task, 'none', null],
      [`${task}-other`, 'py', null],
      [`${task}-other`, 'py', 'p1'],
    ]
    const alone = []
    for (const [t, n, b] of refs) alone.push(await store.getArtifact(t, n, b))
    assert.deepEqual(alone.map((a) => (a === null ? null : [a.node_id, a.batch_uid, a.attempt_epoch])), [
      ['ours', 's0', 2],
      ['ours', null, 2],
      ['py', null, 3],
      ['py', 'p1', 3],
      null,
      null,
      ['py', null, 3],
      null,
    ])
    assert.deepEqual(alone[2]?.meta, { total: 4 })
    for (let round = 0; round < 3; round++) {
      assert.deepEqual(await Promise.all(refs.map(([t, n, b]) => store.getArtifact(t, n, b))), alone)
    }
  })

  it('a task read applies every journal entry after its snapshot, however many (FerretDB reads them by _id, in rounds)', async () => {
    const store = newStore()
    const task = makeTaskDoc({ status: 'running' })
    task.nodes['a'] = makeNodeState('a', 'step', { status: 'queued' })
    await store.createTask(task)
    await store.appendJournal(Array.from({ length: 3 }, (_, i) => entry(task.id, i + 1)))
    assert.ok(await store.writeSnapshot({ ...task, v: 3 }, T0))
    // 100 entries after the snapshot: the last one finishes node a with its stats.
    await store.appendJournal(
      Array.from({ length: 100 }, (_, i) => entry(task.id, i + 4, { nodes: [makeNodeState('a', 'step', { status: i === 99 ? 'finished' : 'running', stats: { n: i + 4 } })] })),
    )
    const doc = await store.getTask(task.id)
    assert.equal(doc?.nodes['a']?.status, 'finished')
    assert.deepEqual(doc?.nodes['a']?.stats, { n: 103 })
    assert.deepEqual((await store.readJournal([task.id], 90)).map((e) => e.seq), Array.from({ length: 13 }, (_, i) => i + 91))
    assert.deepEqual(await store.readJournal([task.id], 103), [])
    assert.equal((await store.readJournal([task.id, `${task.id}-none`], 1)).length, 102)
  })

  it('a task read again goes on from the state read before: new entries, a snapshot past it with its entries deleted, a changed copy, a purge', async () => {
    const writer = newStore()
    const reader = newStore()
    const task = makeTaskDoc({ status: 'running' })
    task.nodes['a'] = makeNodeState('a', 'step', { status: 'running' })
    task.nodes['z'] = makeNodeState('z', 'step', { status: 'running' })
    await writer.createTask(task)
    const step = (seq: number): JournalEntry => {
      const nodes = [makeNodeState('a', 'step', { status: 'running', stats: { n: seq } })]
      if (seq === 1) nodes.push(makeNodeState('z', 'step', { status: 'finished', stats: { n: 1 } }))
      return entry(task.id, seq, { nodes, batches: [['a', `b${seq}`, 1, { count: 1 }]] })
    }
    const fresh = async () => newStore().getTask(task.id)
    // 20 entries ahead of the snapshot: the reader keeps what it merged.
    await writer.appendJournal(Array.from({ length: 20 }, (_, i) => step(i + 1)))
    const first = await reader.getTask(task.id)
    assert.deepEqual(first?.nodes['a']?.stats, { n: 20 })
    // What a caller does to its copy stays in its copy.
    ;(first?.nodes['z']?.stats as Record<string, number>)['n'] = -1
    ;(first?.coordinator as { cancelled: boolean }).cancelled = true
    ;(first as { status: string }).status = 'failed'
    await writer.appendJournal(Array.from({ length: 5 }, (_, i) => step(i + 21)))
    const second = await reader.getTask(task.id)
    assert.equal(second?.status, 'running')
    assert.equal(second?.coordinator.cancelled, false)
    assert.deepEqual(second?.nodes['z']?.stats, { n: 1 })
    assert.deepEqual(second?.nodes['a']?.stats, { n: 25 })
    assert.deepEqual(second, await fresh())
    // A snapshot at 30, then retention deletes every entry it covers: the reader's state of 25 cannot go on.
    await writer.appendJournal(Array.from({ length: 5 }, (_, i) => step(i + 26)))
    const at30 = await fresh()
    assert.deepEqual(at30?.nodes['a']?.stats, { n: 30 })
    assert.ok(await writer.writeSnapshot({ ...(at30 as NonNullable<typeof at30>), v: 30 }, T0 + 30))
    await (await writer.rawCollection('journal')).deleteMany({ task_id: task.id })
    const third = await reader.getTask(task.id)
    assert.deepEqual(third?.nodes['a']?.stats, { n: 30 })
    assert.deepEqual(third, await fresh())
    // Purged: gone for the reader too.
    await (await writer.rawCollection('tasks')).deleteOne({ _id: task.id as never })
    assert.equal(await reader.getTask(task.id), null)
  })

  it('appendJournal: one insertMany; a conflict is answered from the stored writer, other entries stored', async () => {
    const store = newStore()
    const task = `t-${randomUUID()}`
    await store.appendJournal([entry(task, 2, { writer: 'other' })])
    const batch = Array.from({ length: 50 }, (_, i) => entry(i === 1 ? task : `${task}-${i}`, i === 1 ? 2 : 1))
    const started = performance.now()
    const res = await store.appendJournal(batch)
    const ms = performance.now() - started
    assert.deepEqual(res, batch.map((_, i) => i !== 1))
    assert.deepEqual(await store.appendJournal([batch[0]!, batch[1]!]), [true, false], 'a retry: true for ours, false for theirs')
    assert.equal((await store.readJournal([task]))[0]?.writer, 'other')
    // a fenced writer's whole batch conflicts (read back in one query)
    assert.deepEqual(await store.appendJournal(batch.map((e) => ({ ...e, writer: 'late' }))), batch.map(() => false))
    assert.deepEqual(await store.appendJournal(batch), batch.map((_, i) => i !== 1), 'and our retry is still ours')
    note(`appendJournal of 50 entries with one conflict: ${ms.toFixed(1)} ms`)
  })
})
