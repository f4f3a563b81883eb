/**
 * `flowkit ui` against a deployment on the real Kafka and MongoDB: `flowkit coordinator`,
 * `flowkit worker` and `flowkit ui` as processes (topics, groups and database of their own).
 * The dashboard starts no coordinator of its own; through its HTTP API:
 * - a task queued by `flowkit submit` is listed, its page and its event stream follow it;
 * - a cancel (POST with `X-Flowkit-Dashboard: 1` and the dashboard's origin) reaches the owning
 *   coordinator over the control topic, and the task ends cancelled;
 * - a resubmit is written to the store and adopted by the coordinator, and runs to finished;
 * - workers are listed; SIGTERM stops the dashboard cleanly (exit 0).
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { MongoStore, dropMongoDatabase } from '../../src/adapters/mongo/index.ts'
import { kafkaBrokers, mongoUrl, realSkip } from '../helpers/real.ts'
import { waitFor } from '../helpers/wait.ts'
import { openSse } from '../ui/sse.ts'
import { CliProcess, FIXTURES, runCli, tempDir } from './helpers.ts'

const skip = realSkip('both')
const url = mongoUrl() ?? ''
const HANDLERS = join(FIXTURES, 'handlers.ts')

describe('flowkit ui against a deployment on Kafka and MongoDB', { skip }, () => {
  const tag = `ui${randomBytes(4).toString('hex')}`
  const dbName = `flowkit_${tag}`
  const dir = tempDir()
  const gate = join(dir, 'release')
  const config = join(dir, 'flowkit.json')
  const env = { FLOWKIT_MONGO_URL: url, FLOWKIT_KAFKA_BROKERS: (kafkaBrokers() ?? []).join(','), FLOWKIT_CONFIG: config }
  const topics = {
    topic_cmd_fmt: `${tag}.cmd.{type}.v1`,
    topic_status_fmt: `${tag}.status.{type}.v1`,
    topic_worker_announce: `${tag}.workers.announce.v1`,
    topic_query: `${tag}.query.v1`,
    topic_reply: `${tag}.reply.v1`,
    topic_signals: `${tag}.signals.v1`,
    topic_control: `${tag}.control.v1`,
    topic_partitions: 1,
  }
  let coordinator: CliProcess | null = null
  let worker: CliProcess | null = null
  let ui: CliProcess | null = null
  let store: MongoStore | null = null
  let base = ''
  let origin = ''

  const api = async <T>(path: string, init: RequestInit = {}): Promise<T> => {
    const res = await fetch(`${base}${path}`, init)
    const text = await res.text()
    assert.equal(res.status, 200, `${init.method ?? 'GET'} ${path}: ${res.status} ${text}`)
    return JSON.parse(text) as T
  }
  const action = <T>(path: string, body: unknown = {}): Promise<T> =>
    api<T>(path, { method: 'POST', headers: { 'x-flowkit-dashboard': '1', 'content-type': 'application/json', origin }, body: JSON.stringify(body) })

  before(async () => {
    writeFileSync(
      config,
      JSON.stringify({
        mongo: { db: dbName },
        coordinator: { ...topics, group_id: `${tag}.coordinator`, scheduler_tick_sec: 0.1, cancel_grace_sec: 5 },
        worker: { ...topics, group_prefix: `${tag}.`, hb_interval_sec: 1, db_cancel_poll_ms: 100, cancel_grace_ms: 1000 },
      }),
    )
    coordinator = new CliProcess(['coordinator'], { ...env, FLOWKIT_LOG_LEVEL: 'warn' })
    worker = new CliProcess(['worker', '--handlers', HANDLERS, '--worker-id', `${tag}-w1`, '--concurrency', '2'], { ...env, FLOWKIT_LOG_LEVEL: 'warn', FLOWKIT_TEST_GATE: gate })
    ui = new CliProcess(['ui', '--port', '0'], { ...env, FLOWKIT_LOG_LEVEL: 'warn' })
    await Promise.all([
      coordinator.waitOut(/flowkit coordinator: ready \(group \S+\.coordinator;/, 60_000),
      worker.waitOut(new RegExp(`flowkit worker ${tag}-w1: ready`), 60_000),
      ui.waitOut(/^flowkit ui: dashboard at http:\/\/127\.0\.0\.1:\d+\/ \(database flowkit_ui\w+ at .*\); Ctrl-C stops$/m, 60_000),
    ])
    base = /dashboard at (http:\/\/127\.0\.0\.1:\d+\/)/.exec(ui.stdout)?.[1] as string
    origin = base.slice(0, -1)
    store = new MongoStore({ url, dbName, clientOptions: { serverSelectionTimeoutMS: 5000 } })
  })

  after(async () => {
    ui?.kill()
    worker?.kill()
    coordinator?.kill()
    await store?.close()
    if (url !== '') await dropMongoDatabase(url, dbName, { serverSelectionTimeoutMS: 5000 })
  })

  test('a submitted task is listed and followed; a cancel through the dashboard ends it cancelled', async () => {
    rmSync(gate, { force: true })
    const sub = await runCli(['submit', join(FIXTURES, 'pipeline.json'), '--json'], { env })
    assert.equal(sub.code, 0, sub.stderr)
    const id = (JSON.parse(sub.stdout) as { task_id: string }).task_id
    // Listed (the task list reads the store), then running: `square` is held by the gate.
    let seen: unknown = null
    await waitFor(
      async () => {
        const list = await api<{ items: { id: string; status: string }[] }>('api/tasks')
        seen = list.items
        return list.items.some((t) => t.id === id && t.status === 'running')
      },
      { timeoutMs: 30_000, intervalMs: 200, message: `the dashboard never listed ${id} running: ${JSON.stringify(seen)}` },
    )
    await waitFor(async () => (await store!.getTask(id))?.nodes['square']?.lease.worker_id === `${tag}-w1`, { timeoutMs: 30_000, intervalMs: 100, message: 'square never ran' })
    const page = await api<{ task: { status: string; nodes: { node_id: string; status: string }[] }; graph: { nodes: unknown[] } }>(`api/tasks/${id}`)
    assert.equal(page.task.status, 'running')
    assert.equal(page.graph.nodes.length, 2)
    // The task's stream (store polling in `flowkit ui`): a snapshot, then the cancel as it happens.
    const sse = await openSse(`${base}api/tasks/${id}/events`)
    try {
      assert.equal(sse.status, 200)
      const first = await sse.next(10_000)
      assert.equal(first.event, 'snapshot')
      // A cross-origin action is refused; the dashboard's own origin is accepted.
      const cross = await fetch(`${base}api/tasks/${id}/cancel`, { method: 'POST', headers: { 'x-flowkit-dashboard': '1', origin: 'http://evil.example' } })
      assert.equal(cross.status, 403)
      const r = await action<{ ok: boolean }>(`api/tasks/${id}/cancel`, { reason: 'stopped from the dashboard' })
      assert.deepEqual(r, { ok: true })
      const events = await sse.collect((e) => e.event === 'end', 30_000)
      const final = events.filter((e) => e.event === 'task').map((e) => (e.data as { status: string }).status)
      assert.equal(final.at(-1), 'cancelled', JSON.stringify(events.map((e) => e.event)))
    } finally {
      sse.close()
    }
    const t = await store!.getTask(id)
    assert.equal(t?.status, 'cancelled')
    assert.equal(t?.coordinator.cancel_reason, 'stopped from the dashboard')
    // Cancelling an ended task: nothing to do.
    assert.deepEqual(await action<{ ok: boolean }>(`api/tasks/${id}/cancel`), { ok: false })

    // Resubmit: written to the store by `flowkit ui`, adopted by the coordinator, run to the end.
    writeFileSync(gate, '')
    const { id: again } = await action<{ id: string }>(`api/tasks/${id}/resubmit`)
    assert.notEqual(again, id)
    await waitFor(async () => (await store!.getTask(again))?.status === 'finished', { timeoutMs: 30_000, intervalMs: 100, message: `resubmitted task ${again} never finished` })
    const out = await api<{ outputs?: unknown[] } | unknown[]>(`api/tasks/${again}/output`)
    assert.ok(JSON.stringify(out).includes('square'), JSON.stringify(out))
  })

  test('workers and dead letters come from the store', async () => {
    const w = await api<{ workers: { worker_id: string; roles: string[]; status: string }[] }>('api/workers')
    const mine = w.workers.find((x) => x.worker_id === `${tag}-w1`)
    assert.deepEqual(mine && { roles: mine.roles, status: mine.status }, { roles: ['numbers', 'square', 'boom'], status: 'online' })
    const dl = await api<{ items: unknown[] }>('api/dead-letters')
    assert.deepEqual(dl.items, [])
    const retry = await fetch(`${base}api/dead-letters/nope/retry`, { method: 'POST', headers: { 'x-flowkit-dashboard': '1', 'content-type': 'application/json', origin }, body: '{}' })
    assert.equal(retry.status, 404, 'an unknown dead letter')
  })

  test("an operator's own token (FLOWKIT_UI_TOKEN) is not printed in the dashboard's address (it went to stdout and the logs collecting it); the dashboard wants it", async () => {
    const secret = `op-${randomBytes(12).toString('hex')}`
    const p = new CliProcess(['ui', '--port', '0', '--json'], { ...env, FLOWKIT_LOG_LEVEL: 'warn', FLOWKIT_UI_TOKEN: secret })
    try {
      await p.waitOut(/"event":"ui\.ready"/, 60_000)
      const ready = JSON.parse(p.stdout.trim().split('\n')[0] as string) as { url: string }
      assert.ok(!p.stdout.includes(secret) && !p.stderr.includes(secret), `the token was printed: ${ready.url}`)
      assert.equal((await fetch(`${ready.url}api/tasks`)).status, 401)
      assert.equal((await fetch(`${ready.url}api/tasks`, { headers: { authorization: `Bearer ${secret}` } })).status, 200)
    } finally {
      p.kill()
    }
  })

  test('SIGTERM stops the dashboard cleanly (exit 0); the deployment goes on', async () => {
    const r = await ui!.stop('SIGTERM')
    assert.equal(r.code, 0, ui!.stderr)
    assert.match(ui!.stdout, /^flowkit ui: stopped$/m)
    await assert.rejects(fetch(`${base}api/tasks`))
    assert.equal(coordinator!.child.exitCode, null, 'the coordinator still runs')
    await Promise.all([worker!.stop('SIGTERM'), coordinator!.stop('SIGTERM')])
  })
})
