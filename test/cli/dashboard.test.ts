/**
 * `flowkit dev`'s web dashboard through the real binary (embedded runtime, no services):
 * - `--ui-port 0`: the printed URL serves the running task (API and page); it stops with the task;
 * - a port in use is one line on stderr and dev goes on without the dashboard; `--no-ui` serves
 *   none;
 * - `--ui-host 0.0.0.0` generates a token: the URL carries it, and the API wants it.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { type Server, createServer } from 'node:net'
import { join } from 'node:path'
import { waitFor } from '../helpers/wait.ts'
import { CliProcess, FIXTURES, runCli, tempDir } from './helpers.ts'

const HANDLERS = join(FIXTURES, 'handlers.ts')
const PIPELINE = join(FIXTURES, 'pipeline.json')

interface TaskList {
  items: { id: string; status: string }[]
  total: number
}

async function getJson<T>(url: string, init: RequestInit = {}): Promise<T> {
  const res = await fetch(url, init)
  assert.equal(res.status, 200, `${url}: ${res.status} ${await res.clone().text()}`)
  return (await res.json()) as T
}

function listen(): Promise<{ server: Server; port: number }> {
  return new Promise((resolve) => {
    const server = createServer()
    server.listen(0, '127.0.0.1', () => resolve({ server, port: (server.address() as { port: number }).port }))
  })
}

describe('flowkit dev: the dashboard', () => {
  test("the dashboard's /metrics serves the embedded coordinator's and worker's metrics; the config's worker.concurrency applies", async () => {
    const dir = tempDir()
    const config = join(dir, 'flowkit.json')
    writeFileSync(config, JSON.stringify({ worker: { concurrency: 7 } }))
    const p = new CliProcess(['dev', '--handlers', HANDLERS, '--ui-port', '0', '--config', config])
    try {
      await p.waitOut(/running in this process \(roles [^;]+; concurrency 7\)/)
      const url = /^flowkit dev: dashboard at (http:\/\/127\.0\.0\.1:\d+\/)$/m.exec(p.stdout)?.[1]
      assert.ok(url, p.stdout)
      const res = await fetch(`${url}metrics`)
      const text = await res.text()
      assert.equal(res.status, 200, text)
      assert.match(res.headers.get('content-type') ?? '', /^text\/plain/)
      // The dashboard's security headers, as on every other response.
      assert.match(res.headers.get('content-security-policy') ?? '', /default-src/)
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff')
      assert.match(text, /^flowkit_coordinator_\w+/m)
      assert.match(text, /^flowkit_worker_runs_active 0$/m)
      const r = await p.stop('SIGINT')
      assert.equal(r.code, 0, p.stderr)
    } finally {
      p.kill()
    }
  })

  test('--ui-port 0: the printed URL serves the running task (API and page); it stops with the runtime', async () => {
    const gate = join(tempDir(), 'release')
    const p = new CliProcess(['dev', '--handlers', HANDLERS, '--graph', PIPELINE, '--ui-port', '0'], { FLOWKIT_TEST_GATE: gate })
    try {
      await p.waitOut(/task \S+ submitted/)
      const url = /^flowkit dev: dashboard at (http:\/\/127\.0\.0\.1:(\d+)\/)$/m.exec(p.stdout)?.[1]
      assert.ok(url, p.stdout)
      assert.notEqual(url, 'http://127.0.0.1:0/')
      const id = /task (\S+) submitted \(embedded runtime/.exec(p.stdout)?.[1] as string
      // `square` is held by the gate: the task runs while we look.
      let list: TaskList | null = null
      await waitFor(
        async () => {
          list = await getJson<TaskList>(`${url}api/tasks`)
          return list.items.some((t) => t.id === id && t.status === 'running')
        },
        { timeoutMs: 20_000, intervalMs: 100, message: `the task list never showed ${id} running: ${JSON.stringify(list)}` },
      )
      const task = await getJson<{ task: { id: string; status: string }; graph: { nodes: { id: string }[] } }>(`${url}api/tasks/${id}`)
      assert.equal(task.task.id, id)
      assert.equal(task.graph.nodes.length, 2)
      const page = await fetch(`${url}tasks/${id}`)
      assert.equal(page.status, 200)
      assert.match(page.headers.get('content-type') ?? '', /^text\/html/)
      // A task submitted there with a type no handler of this process serves is refused (it would wait forever).
      const refused = await fetch(`${url}api/tasks`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-flowkit-dashboard': '1' }, body: JSON.stringify({ graph: { nodes: [{ node_id: 'x', type: 'nope' }] } }) })
      const body = await refused.text()
      assert.equal(refused.status, 422, body)
      assert.match(body, /no handler of this dev runtime serves type \\?"nope\\?" \(node x\); its roles: /)
      assert.equal((await getJson<TaskList>(`${url}api/tasks`)).total, 1, 'no task was created')
      writeFileSync(gate, '')
      const r = await p.waitExit(30_000)
      assert.equal(r.code, 0, p.stderr)
      assert.match(p.stdout, new RegExp(`^task ${id} finished in `, 'm'))
      await assert.rejects(fetch(`${url}api/tasks`), 'the dashboard stopped with the runtime')
    } finally {
      p.kill()
    }
  })

  test('a port in use: one line on stderr, dev goes on without the dashboard; --no-ui serves none', async () => {
    const { server, port } = await listen()
    try {
      const r = await runCli(['dev', '--handlers', HANDLERS, '--graph', PIPELINE, '--ui-port', String(port)])
      assert.equal(r.code, 0, r.stderr)
      assert.equal(r.stderr, `flowkit dev: dashboard not started: 127.0.0.1:${port} is in use (--ui-port <n> picks another port, --no-ui turns it off); going on without it\n`)
      assert.doesNotMatch(r.stdout, /dashboard at/)
      assert.match(r.stdout, /^task \S+ finished in /m)
    } finally {
      server.close()
    }
    const off = await runCli(['dev', '--no-ui', '--handlers', HANDLERS, '--graph', PIPELINE])
    assert.equal(off.code, 0, off.stderr)
    assert.doesNotMatch(off.stdout + off.stderr, /dashboard/)
    const both = await runCli(['dev', '--no-ui', '--ui-port', '7701', '--handlers', HANDLERS])
    assert.equal(both.code, 2)
    assert.match(both.stderr, /--no-ui and --ui-port\/--ui-host do not go together/)
  })

  test('--ui-host 0.0.0.0: a token is generated and printed in the URL; the API wants it', async () => {
    const p = new CliProcess(['dev', '--json', '--handlers', HANDLERS, '--ui-host', '0.0.0.0', '--ui-port', '0'])
    try {
      await p.waitOut(/"event":"dev\.ready"/)
      const ready = JSON.parse(p.stdout.trim().split('\n')[0] as string) as { dashboard: string }
      const m = /^http:\/\/localhost:(\d+)\/\?token=([\w-]{20,})$/.exec(ready.dashboard)
      assert.ok(m, ready.dashboard)
      assert.match(p.stderr, new RegExp(`flowkit dev: dashboard at ${ready.dashboard.replace(/[?]/g, '\\?')}`))
      const base = `http://127.0.0.1:${m[1]}/`
      assert.equal((await fetch(`${base}api/tasks`)).status, 401)
      const ok = await getJson<TaskList>(`${base}api/tasks`, { headers: { authorization: `Bearer ${decodeURIComponent(m[2] as string)}` } })
      assert.equal(ok.total, 0)
      const r = await p.stop('SIGINT')
      assert.equal(r.code, 0, p.stderr)
    } finally {
      p.kill()
    }
  })
})
