/**
 * A deployment run from the CLI on the real Kafka and MongoDB: `flowkit coordinator` and
 * `flowkit worker` as processes (topics, groups and database of their own), then
 * - `flowkit submit --watch` in a real terminal (tmux): the task the CLI wrote to the store is
 *   adopted by the coordinator, and the screen shows live per-node progress — `square` running
 *   while its handler is held, then finished — and exit 0;
 * - `flowkit cancel` reaches the owning coordinator (control topic) and the task ends cancelled;
 * - `flowkit workers` lists the worker; SIGTERM stops both processes cleanly (exit 0).
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { MongoStore, dropMongoDatabase } from '../../src/adapters/mongo/index.ts'
import { kafkaBrokers, mongoUrl, realSkip } from '../helpers/real.ts'
import { waitFor } from '../helpers/wait.ts'
import { CliProcess, FIXTURES, Tmux, hasTmux, runCli, shellCli, shellEnv, tempDir } from './helpers.ts'

const skip = realSkip('both') || (hasTmux() ? false : 'tmux is not installed')
const url = mongoUrl() ?? ''
const HANDLERS = join(FIXTURES, 'handlers.ts')

describe('a CLI deployment on Kafka and MongoDB', { skip }, () => {
  const tag = `cli${randomBytes(4).toString('hex')}`
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
    topic_partitions: 1,
  }
  let coordinator: CliProcess | null = null
  let worker: CliProcess | null = null
  let store: MongoStore | null = null

  before(async () => {
    writeFileSync(
      config,
      JSON.stringify({
        mongo: { db: dbName },
        // A 0.1 s scheduler tick makes the sweep (which adopts CLI submissions) run every second.
        coordinator: { ...topics, group_id: `${tag}.coordinator`, scheduler_tick_sec: 0.1, cancel_grace_sec: 5 },
        worker: { ...topics, group_prefix: `${tag}.`, hb_interval_sec: 1, db_cancel_poll_ms: 100, cancel_grace_ms: 1000 },
      }),
    )
    coordinator = new CliProcess(['coordinator', '--metrics-port', '0'], { ...env, FLOWKIT_LOG_LEVEL: 'warn' })
    worker = new CliProcess(['worker', '--handlers', HANDLERS, '--roles', 'numbers,square', '--worker-id', `${tag}-w1`, '--concurrency', '2', '--metrics-port', '0'], { ...env, FLOWKIT_LOG_LEVEL: 'warn', FLOWKIT_TEST_GATE: gate })
    await Promise.all([coordinator.waitOut(/flowkit coordinator: ready \(group \S+\.coordinator;/, 60_000), worker.waitOut(new RegExp(`flowkit worker ${tag}-w1: ready \\(roles numbers, square; concurrency 2;`), 60_000)])
    store = new MongoStore({ url, dbName, clientOptions: { serverSelectionTimeoutMS: 5000 } })
  })

  after(async () => {
    worker?.kill()
    coordinator?.kill()
    await store?.close()
    if (url !== '') await dropMongoDatabase(url, dbName, { serverSelectionTimeoutMS: 5000 })
  })

  test('--metrics-port: the coordinator and the worker serve /metrics where their ready line says', async () => {
    for (const [p, metric] of [[coordinator, /^flowkit_coordinator_owned_partitions \d+$/m], [worker, /^flowkit_worker_runs_active \d+$/m]] as const) {
      const url = /; metrics at (http:\/\/\S+\/metrics)\)/.exec(p?.stdout ?? '')?.[1]
      assert.ok(url !== undefined, p?.stdout)
      const res = await fetch(url.replace('//0.0.0.0:', '//127.0.0.1:'))
      const text = await res.text()
      assert.equal(res.status, 200, text)
      assert.match(text, metric)
    }
  })

  test('cancel reaches the owning coordinator; the task ends cancelled (status --watch exits 1)', async () => {
    const sub = await runCli(['submit', join(FIXTURES, 'pipeline.json'), '--json'], { env })
    assert.equal(sub.code, 0, sub.stderr)
    const id = (JSON.parse(sub.stdout) as { task_id: string }).task_id
    // The coordinator adopts it from the store; `square` starts and is held by the gate.
    await waitFor(async () => (await store!.getTask(id))?.nodes['square']?.lease.worker_id === `${tag}-w1`, { timeoutMs: 30_000, intervalMs: 100, message: 'square never ran' })
    // Without FLOWKIT_LOG_LEVEL: a one-shot command prints no log records, only its result.
    const cancel = await runCli(['cancel', id, '--reason', 'no longer needed', '--json'], { env: { ...env, FLOWKIT_LOG_LEVEL: undefined } })
    assert.equal(cancel.code, 0, cancel.stderr)
    assert.equal(cancel.stderr, '')
    const doc = JSON.parse(cancel.stdout) as { task_id: string; cancelled: boolean; status: string }
    assert.equal(doc.cancelled, true)
    assert.match(doc.status, /^(cancelling|cancelled)$/)
    const watch = await runCli(['status', id, '--watch', '--interval', '100'], { env })
    assert.equal(watch.code, 1, watch.stderr)
    assert.match(watch.stdout, new RegExp(`^task ${id} cancelled`, 'm'))
    const t = await store!.getTask(id)
    assert.equal(t?.coordinator.cancel_reason, 'no longer needed')
    const again = await runCli(['cancel', id], { env })
    assert.equal(again.code, 0)
    assert.match(again.stdout, /already cancelled: nothing to cancel/)
  })

  test('submit --watch in a terminal: the task is adopted and its live progress is drawn until finished (exit 0)', async () => {
    const tmux = new Tmux()
    try {
      tmux.start(`${shellEnv({ ...env, FLOWKIT_LOG_LEVEL: 'silent' })} ${shellCli(['submit', join(FIXTURES, 'pipeline.json'), '--watch', '--interval', '100'])}`)
      // `square` streams from `source`'s first batch: held by the gate it stays running at 0
      // batches while `source` finishes (in either order on the screen).
      const squareRunning = `^\\s+square\\s+running\\s+1\\s+0\\s+${tag}-w1\\s*$`
      const sourceFinished = `^\\s+source\\s+finished\\s+1\\s+3\\s+${tag}-w1\\s+count=9$`
      const running = await tmux.waitScreen(new RegExp(`(?=[\\s\\S]*${squareRunning})(?=[\\s\\S]*${sourceFinished})`, 'm'), 60_000)
      assert.match(running, /^submitted task \S+ \(2 nodes\)$/m)
      writeFileSync(gate, '')
      const done = await tmux.waitScreen(/EXIT=\d+/, 60_000)
      assert.match(done, /EXIT=0/)
      assert.match(done, new RegExp(`^\\s+square\\s+finished\\s+1\\s+3\\s+${tag}-w1\\s+count=9$`, 'm'))
      assert.match(done, /^task \S+ finished in /m)
      assert.equal(done.match(/^\s+NODE\s+STATUS/gm)?.length, 1, `the table is redrawn in place:\n${done}`)
    } finally {
      tmux.close()
    }
  })

  test('workers lists the running worker with its roles', async () => {
    const r = await runCli(['workers', '--json'], { env })
    assert.equal(r.code, 0, r.stderr)
    const w = (JSON.parse(r.stdout) as { worker_id: string; roles: string[]; status: string }[]).find((x) => x.worker_id === `${tag}-w1`)
    assert.deepEqual(w && { roles: w.roles, status: w.status }, { roles: ['numbers', 'square'], status: 'online' })
  })

  test('SIGTERM stops the worker and the coordinator cleanly (exit 0)', async () => {
    const w = await worker!.stop('SIGTERM')
    assert.equal(w.code, 0, worker!.stderr)
    assert.match(worker!.stdout, /flowkit worker: stopped/)
    const c = await coordinator!.stop('SIGTERM')
    assert.equal(c.code, 0, coordinator!.stderr)
    assert.match(coordinator!.stdout, /flowkit coordinator: stopped/)
  })
})
