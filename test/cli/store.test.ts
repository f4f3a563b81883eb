/**
 * The store commands against the real MongoDB-protocol server (FLOWKIT_MONGO_URL; FerretDB in
 * this project's runs), each on a database of its own: ls, status (+ --watch following journal
 * entries written meanwhile), workers, dlq ls / retry, with and without --json; not found is exit 4.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { MongoClient } from 'mongodb'
import { MongoStore, dropMongoDatabase } from '../../src/adapters/mongo/index.ts'
import type { NodeState, TaskDoc } from '../../src/ports/store.ts'
import { makeNodeState, makeTaskDoc } from '../helpers/fixtures.ts'
import { mongoUrl, realSkip } from '../helpers/real.ts'
import { CliProcess, jsonLines, runCli } from './helpers.ts'

const skip = realSkip('mongo')
const url = mongoUrl() ?? ''
const clientOptions = { serverSelectionTimeoutMS: 5000 }

function newDb(): string {
  return `flowkit_cli_${randomBytes(5).toString('hex')}`
}

describe('flowkit store commands on MongoDB', { skip }, () => {
  const dbName = newDb()
  const env = { FLOWKIT_MONGO_URL: url, FLOWKIT_MONGO_DB: dbName }
  let store: MongoStore
  const now = Date.now()
  const running: TaskDoc = makeTaskDoc({ id: `cli-running-${randomBytes(3).toString('hex')}`, created_at_ms: now - 60_000 })
  const finished: TaskDoc = makeTaskDoc({ id: `cli-finished-${randomBytes(3).toString('hex')}`, created_at_ms: now - 30_000 })
  const node = (id: string, type: string, o: Partial<NodeState>): NodeState => makeNodeState(id, type, o)

  before(async () => {
    store = new MongoStore({ url, dbName, clientOptions })
    await store.init()
  })
  after(async () => {
    await store?.close()
    await dropMongoDatabase(url, dbName, clientOptions)
  })

  test('an empty deployment: nothing listed (exit 0); unknown ids exit 4', async () => {
    const [ls, lsJson, workers, dlq, status, retry] = await Promise.all([
      runCli(['ls'], { env }),
      runCli(['ls', '--json'], { env }),
      runCli(['workers', '--json'], { env }),
      runCli(['dlq', 'ls', '--json'], { env }),
      runCli(['status', 'no-such-task'], { env }),
      runCli(['dlq', 'retry', 'no-such-row'], { env }),
    ])
    assert.equal(ls.code, 0, ls.stderr)
    assert.equal(ls.stdout.trim(), 'no active tasks')
    for (const r of [lsJson, workers, dlq]) {
      assert.equal(r.code, 0, r.stderr)
      assert.deepEqual(JSON.parse(r.stdout), [])
    }
    assert.equal(status.code, 4)
    assert.match(status.stderr, /^flowkit: task no-such-task not found$/m)
    assert.equal(retry.code, 4)
    assert.match(retry.stderr, /^flowkit: no dead letter no-such-row$/m)
  })

  test('status, ls, workers and dlq show what the deployment wrote (the journal applied)', async () => {
    await store.createTasks([running, finished])
    await store.appendJournal([
      { task_id: running.id, seq: 1, at_ms: now - 50_000, writer: 'c1', events: [], task: { status: 'running' }, nodes: [node('extract', 'extractor', { status: 'running', attempt_epoch: 1, lease: { worker_id: 'w-cli-1' }, stats: { rows: 10 }, batches_seen: 2 })] },
      {
        task_id: finished.id,
        seq: 1,
        at_ms: now - 20_000,
        writer: 'c1',
        events: [],
        task: { status: 'finished', finished_at_ms: now - 20_000 },
        nodes: [node('extract', 'extractor', { status: 'finished', attempt_epoch: 1 }), node('transform', 'processor', { status: 'finished', attempt_epoch: 1 })],
      },
    ])
    await store.upsertWorker({ worker_id: 'w-cli-1', roles: ['extractor', 'processor'], capacity: 2, version: '0.1.0', status: 'online', last_seen_ms: now })
    await store.outboxEnqueue({ topic: 'cmd.extractor.v1', key: `${running.id}:extract`, value: '{"payload":{"password":"DlqPW5"}}', dedup_id: 'd1' }, now, { attempts: 12, error: 'broker down (sasl://bob:DlqPW3@k:9092)' })

    const status = await runCli(['status', running.id], { env })
    assert.equal(status.code, 0, status.stderr)
    assert.match(status.stdout, new RegExp(`^task ${running.id}\\s+running\\s+`, 'm'))
    assert.match(status.stdout, /^\s+extract\s+running\s+1\s+2\s+w-cli-1\s+rows=10$/m)
    assert.match(status.stdout, /^\s+transform\s+queued\s+0\s+-\s+-$/m)
    const view = JSON.parse((await runCli(['status', running.id, '--json'], { env })).stdout) as { status: string; nodes: { node_id: string; lease: { worker_id?: string } }[] }
    assert.equal(view.status, 'running')
    assert.equal(view.nodes[0]?.lease.worker_id, 'w-cli-1')

    const active = await runCli(['ls'], { env })
    assert.match(active.stdout, new RegExp(`^${running.id}\\s+running\\s+\\S+ ago\\s+running:1 queued:1$`, 'm'))
    assert.doesNotMatch(active.stdout, new RegExp(finished.id))
    const all = JSON.parse((await runCli(['ls', '--status', 'all', '--json'], { env })).stdout) as { id: string; status: string; nodes: Record<string, number> }[]
    assert.deepEqual(all.map((t) => [t.id, t.status]), [[running.id, 'running'], [finished.id, 'finished']])
    assert.deepEqual(all[1]?.nodes, { finished: 2 })
    const onlyFinished = await runCli(['ls', '--status', 'finished'], { env })
    assert.match(onlyFinished.stdout, new RegExp(`^${finished.id}\\s+finished`, 'm'))
    assert.doesNotMatch(onlyFinished.stdout, new RegExp(running.id))
    const limited = await runCli(['ls', '--all', '--limit', '1'], { env })
    assert.equal(limited.stdout.trim().split('\n').length, 2, limited.stdout)
    assert.match(limited.stderr, /showing the 1 oldest tasks/)
    const limitedJson = await runCli(['ls', '--all', '--limit', '1', '--json'], { env })
    assert.equal((JSON.parse(limitedJson.stdout) as unknown[]).length, 1)
    assert.match(limitedJson.stderr, /showing the 1 oldest tasks; there may be more/, 'said with --json too (on stderr)')

    const workers = await runCli(['workers'], { env })
    assert.match(workers.stdout, /^w-cli-1\s+online\s+extractor,processor\s+2\s+0\.1\.0\s+\d+s ago$/m)
    const wj = JSON.parse((await runCli(['workers', '--json'], { env })).stdout) as { worker_id: string }[]
    assert.deepEqual(wj.map((w) => w.worker_id), ['w-cli-1'])

    const dlq = await runCli(['dlq', 'ls'], { env })
    const id = /^(\S+)\s+cmd\.extractor\.v1\s+/m.exec(dlq.stdout)?.[1]
    assert.ok(id, dlq.stdout)
    assert.match(dlq.stdout, /\s12\s.*broker down \(sasl:\/\/\*\*\*:\*\*\*@k:9092\)$/m)
    // Secrets in the parked command and its error are masked, in the table and in --json.
    const dlqJson = await runCli(['dlq', 'ls', '--json'], { env })
    assert.doesNotMatch(dlq.stdout + dlqJson.stdout, /DlqPW/)
    assert.equal((JSON.parse(dlqJson.stdout) as { value: string }[])[0]?.value, '{"payload":{"password":"***"}}')
    const retry = await runCli(['dlq', 'retry', id, '--json'], { env })
    assert.equal(retry.code, 0, retry.stderr)
    assert.deepEqual(JSON.parse(retry.stdout), { id, requeued: true })
    assert.deepEqual((await store.outboxList({ status: 'pending' })).map((r) => r.id), [id])
    assert.deepEqual(JSON.parse((await runCli(['dlq', 'ls', '--json'], { env })).stdout), [])

    // Every dead letter at once: the cancel goes back; the START of a task that ended stays.
    const cancel = { topic: 'cmd.extractor.v1', key: `${running.id}:extract`, value: '{"msg_type":"cmd","payload":{"cmd":"TASK_CANCEL"}}', dedup_id: 'd2' }
    await store.outboxEnqueue(cancel, now, { attempts: 3, error: 'broker down' })
    const staleStart = JSON.stringify({ v: 1, msg_type: 'cmd', role: 'coordinator', dedup_id: 'd3', task_id: finished.id, node_id: 'extract', step_type: 'extractor', attempt_epoch: 1, ts_ms: now, payload: { cmd: 'TASK_START' } })
    await store.outboxEnqueue({ topic: 'cmd.extractor.v1', key: `${finished.id}:extract`, value: staleStart, dedup_id: 'd3' }, now + 1, { attempts: 3, error: 'broker down' })
    const retryAll = await runCli(['dlq', 'retry', '--all'], { env })
    assert.equal(retryAll.code, 0, retryAll.stderr)
    assert.match(retryAll.stdout, /^requeued 1: the running coordinator sends them again$/m)
    assert.match(retryAll.stdout, new RegExp(`^not retried 1 \\(their attempts ended: resubmit their tasks\\):\n.*\n\\S+\\s+its task ${finished.id} has ended \\(finished\\)$`, 'm'))
    assert.deepEqual((await store.outboxList({ status: 'failed' })).map((r) => r.key), [`${finished.id}:extract`])
    const again = JSON.parse((await runCli(['dlq', 'retry', '--all', '--json'], { env })).stdout) as { requeued: string[]; stale: { id: string; reason: string }[] }
    assert.deepEqual(again.requeued, [])
    assert.equal(again.stale.length, 1)
  })

  test('status --watch follows durable transitions written by the coordinator until the task ends (exit 0 finished)', async () => {
    const task = makeTaskDoc({ id: `cli-watch-${randomBytes(3).toString('hex')}`, created_at_ms: Date.now() })
    await store.createTasks([task])
    const w = new CliProcess(['status', task.id, '--watch', '--interval', '100', '--json'], env)
    try {
      await w.waitOut(/"type":"snapshot"/)
      const at = Date.now()
      await store.appendJournal([{ task_id: task.id, seq: 1, at_ms: at, writer: 'c1', events: [], task: { status: 'running' }, nodes: [node('extract', 'extractor', { status: 'running', attempt_epoch: 1, lease: { worker_id: 'w9' } })] }])
      await w.waitOut(/"type":"node","task_id":"[^"]+","at_ms":\d+,"node_id":"extract","status":"running"/)
      await store.appendJournal([
        {
          task_id: task.id,
          seq: 2,
          at_ms: at + 1,
          writer: 'c1',
          events: [],
          task: { status: 'finished', finished_at_ms: at + 1 },
          nodes: [node('extract', 'extractor', { status: 'finished', attempt_epoch: 1, stats: { rows: 3 } }), node('transform', 'processor', { status: 'finished', attempt_epoch: 1 })],
        },
      ])
      const r = await w.waitExit()
      assert.equal(r.code, 0, w.stderr)
      const events = jsonLines(w.stdout)
      assert.deepEqual(
        events.map((e) => (e['type'] === 'node' ? `${e['node_id']}:${e['status']}` : `${e['type']}:${e['type'] === 'snapshot' ? (e['task'] as { status: string }).status : e['status']}`)),
        ['snapshot:queued', 'extract:running', 'task:running', 'extract:finished', 'transform:finished', 'task:finished'],
      )
    } finally {
      w.kill()
    }
  })

  test('status --watch of a task that fails exits 1', async () => {
    const task = makeTaskDoc({ id: `cli-fail-${randomBytes(3).toString('hex')}`, created_at_ms: Date.now() })
    await store.createTasks([task])
    await store.appendJournal([{ task_id: task.id, seq: 1, at_ms: Date.now(), writer: 'c1', events: [], task: { status: 'failed', error: 'node extract failed: boom', finished_at_ms: Date.now() }, nodes: [node('extract', 'extractor', { status: 'failed', attempt_epoch: 1 })] }])
    const r = await runCli(['status', task.id, '--watch'], { env })
    assert.equal(r.code, 1, r.stderr)
    assert.match(r.stdout, new RegExp(`^task ${task.id} failed.*: node extract failed: boom$`, 'm'))
  })

  test(
    'read-only commands create nothing: ls / status / workers / dlq ls on a database that does not exist leave it absent',
    async () => {
      const ghost = newDb()
      const genv = { FLOWKIT_MONGO_URL: url, FLOWKIT_MONGO_DB: ghost }
      try {
        for (const args of [['ls'], ['status', 'x'], ['workers'], ['dlq', 'ls']]) await runCli(args, { env: genv })
        const client = new MongoClient(url, clientOptions)
        try {
          const dbs = (await client.db('admin').admin().listDatabases()).databases.map((d) => d.name)
          assert.ok(!dbs.includes(ghost), `database ${ghost} was created by a read-only command`)
        } finally {
          await client.close()
        }
      } finally {
        await dropMongoDatabase(url, ghost, clientOptions)
      }
    },
  )

  test('prune --ended-before deletes the tasks that ended before that age, with their artifacts; active and recent ones stay', async () => {
    const db = newDb()
    const penv = { FLOWKIT_MONGO_URL: url, FLOWKIT_MONGO_DB: db }
    const own = new MongoStore({ url, dbName: db, clientOptions })
    try {
      await own.init()
      const day = 86_400_000
      const t = (name: string, status: TaskDoc['status'], finished: number | null): TaskDoc => makeTaskDoc({ id: `cli-prune-${name}`, status, finished_at_ms: finished, created_at_ms: Date.now() - 30 * day })
      const tasks = [t('old', 'finished', Date.now() - 3 * day), t('old-failed', 'failed', Date.now() - 2 * day), t('recent', 'finished', Date.now() - 3_600_000), t('active', 'running', null)]
      await own.createTasks(tasks)
      for (const task of tasks) await own.upsertArtifacts([{ task_id: task.id, node_id: 'extract', batch_uid: null, status: 'complete', meta: {}, attempt_epoch: 1, worker_id: 'w1' }], Date.now())
      const usage = await runCli(['prune'], { env: penv })
      assert.equal(usage.code, 2)
      assert.match(usage.stderr, /--ended-before <age> is required/)
      const bad = await runCli(['prune', '--ended-before', 'soon'], { env: penv })
      assert.equal(bad.code, 2)
      const r = await runCli(['prune', '--ended-before', '1d', '--json'], { env: penv })
      assert.equal(r.code, 0, r.stderr)
      assert.equal((JSON.parse(r.stdout) as { deleted: number }).deleted, 2)
      for (const gone of ['cli-prune-old', 'cli-prune-old-failed']) {
        assert.equal(await own.getTask(gone), null)
        assert.deepEqual(await own.listArtifacts(gone), [])
      }
      for (const kept of ['cli-prune-recent', 'cli-prune-active']) {
        assert.notEqual(await own.getTask(kept), null)
        assert.equal((await own.listArtifacts(kept)).length, 1)
      }
      const again = await runCli(['prune', '--ended-before', '1d'], { env: penv })
      assert.equal(again.code, 0, again.stderr)
      assert.match(again.stdout, /^deleted 0 tasks that ended before /m)
    } finally {
      await own.close()
      await dropMongoDatabase(url, db, clientOptions)
    }
  })

  test('status marks a running node no live worker can take (the dashboard did, the CLI said "running")', async () => {
    const t: TaskDoc = makeTaskDoc({ id: `cli-unserved-${randomBytes(3).toString('hex')}`, created_at_ms: now - 60_000 })
    await store.createTasks([t])
    await store.appendJournal([{ task_id: t.id, seq: 1, at_ms: now - 40_000, writer: 'c1', events: [], task: { status: 'running' }, nodes: [node('extract', 'nobody-serves-this', { status: 'running', attempt_epoch: 1, dispatched_at_ms: now - 40_000, accepted_at_ms: null })] }])
    const text = await runCli(['status', t.id], { env })
    assert.equal(text.code, 0, text.stderr)
    assert.match(text.stdout, /^\s+extract\s+running \(no worker for its type yet\)/m)
    const view = JSON.parse((await runCli(['status', t.id, '--json'], { env })).stdout) as { nodes: { node_id: string; waiting_for_worker?: boolean }[] }
    assert.equal(view.nodes.find((n) => n.node_id === 'extract')?.waiting_for_worker, true)
  })

  test("status takes the coordinator's worker liveness from a config file in either spelling (a seed-style worker_liveness_sec was ignored)", async () => {
    const type = `served-${randomBytes(3).toString('hex')}`
    const t: TaskDoc = makeTaskDoc({ id: `cli-liveness-${randomBytes(3).toString('hex')}`, created_at_ms: now - 60_000 })
    await store.createTasks([t])
    await store.appendJournal([{ task_id: t.id, seq: 1, at_ms: now - 40_000, writer: 'c1', events: [], task: { status: 'running' }, nodes: [node('extract', type, { status: 'running', attempt_epoch: 1, dispatched_at_ms: now - 40_000, accepted_at_ms: null })] }])
    // Heard from 5 minutes ago: silent for the default 180 s window, live for a 600 s one.
    await store.upsertWorker({ worker_id: `w-${type}`, roles: [type], capacity: 1, version: '0.1.0', status: 'online', last_seen_ms: Date.now() - 300_000 })
    const waiting = async (config?: unknown): Promise<boolean | undefined> => {
      const args = ['status', t.id, '--json']
      if (config !== undefined) {
        const path = join(mkdtempSync(join(tmpdir(), 'flowkit-cli-')), 'flowkit.json')
        writeFileSync(path, JSON.stringify(config))
        args.push('--config', path)
      }
      const r = await runCli(args, { env })
      assert.equal(r.code, 0, r.stderr)
      return (JSON.parse(r.stdout) as { nodes: { node_id: string; waiting_for_worker?: boolean }[] }).nodes.find((n) => n.node_id === 'extract')?.waiting_for_worker
    }
    assert.equal(await waiting(), true)
    assert.equal(await waiting({ coordinator: { worker_liveness_sec: 600 } }), undefined)
    assert.equal(await waiting({ coordinator: { workerLivenessSec: 600 } }), undefined)
  })
})
