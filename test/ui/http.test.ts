/**
 * Dashboard over HTTP (issue 9): access rules (no login on loopback, a token anywhere else,
 * actions guarded against other sites), the live streams (task events, list counts), the control
 * actions through the Coordinator API, node details, static files.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { request } from 'node:http'
import { connect } from 'node:net'
import { ErrorCode, FlowkitError, MemoryStore, type RoleHandler, type TaskView } from 'flowkit'
import { buildTask } from '../../src/coordinator/submit.ts'
import { toTaskView } from '../../src/coordinator/view.ts'
import type { DashboardCoordinator } from '../../src/ui/api.ts'
import { gate } from '../helpers/gate.ts'
import { startRuntime } from '../helpers/runtime.ts'
import { waitFor } from '../helpers/wait.ts'
import { generateToken, startDashboard } from '../../src/ui/server.ts'
import { demoGraph, startUi } from './harness.ts'
import { openSse, type SseEvent } from './sse.ts'

const ACTION = { 'x-flowkit-dashboard': '1', 'content-type': 'application/json' }

/** A GET with a Host header of our choosing (fetch does not let a caller set Host). */
function getWithHost(url: string, host: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers: { ...headers, host } }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => {
        body += c
      })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('error', reject)
    req.end()
  })
}

test('access: loopback serves without login but only to loopback names; another address needs a token (refused without one)', async () => {
  const ui = await startUi()
  try {
    const base = ui.dashboard.url
    assert.match(base, /^http:\/\/127\.0\.0\.1:\d+\/$/)
    assert.equal(ui.dashboard.auth, false)
    for (const path of ['', 'tasks/x', 'workers', 'dead-letters']) {
      const res = await fetch(`${base}${path}`)
      assert.equal(res.status, 200, path)
      assert.match(res.headers.get('content-type') ?? '', /text\/html/)
      assert.match(res.headers.get('content-security-policy') ?? '', /script-src 'self'/)
      assert.match(await res.text(), /<script type="module" src="\/assets\/app\.js">/)
    }
    assert.equal((await fetch(`${base}api/tasks`)).status, 200)
    assert.equal((await getWithHost(`${base}api/info`, 'localhost:1234')).status, 200)
    assert.equal((await getWithHost(`${base}api/info`, '[::1]')).status, 200)
    // DNS rebinding: a page of evil.example resolving to 127.0.0.1 sends Host: evil.example.
    const rebound = await getWithHost(`${base}api/tasks`, 'evil.example')
    assert.equal(rebound.status, 403)
    assert.match(rebound.body, /only requests to localhost/)
  } finally {
    await ui.stop()
  }
  await assert.rejects(
    startDashboard({ coordinator: {} as never, store: {} as never, host: '0.0.0.0', port: 0 }),
    (err: unknown) => err instanceof FlowkitError && err.code === ErrorCode.Config && /needs a token/.test(err.message),
  )
  await assert.rejects(startDashboard({ coordinator: {} as never, store: {} as never, host: '0.0.0.0', port: 0, token: 'short' }), /at least 16 characters/)
})

test('access with a token: 401 (basic challenge) without it; Bearer, basic-auth password and the ?token= cookie let in', async () => {
  const token = generateToken()
  const ui = await startUi({ host: '0.0.0.0', token })
  try {
    assert.equal(ui.dashboard.auth, true)
    const base = `http://127.0.0.1:${ui.dashboard.port}/`
    const none = await fetch(`${base}api/tasks`)
    assert.equal(none.status, 401)
    assert.match(none.headers.get('www-authenticate') ?? '', /^Basic realm="flowkit dashboard"/)
    assert.equal((await fetch(base)).status, 401, 'pages too')
    assert.equal((await fetch(`${base}api/tasks`, { headers: { authorization: 'Bearer wrong-token-wrong-token' } })).status, 401)
    assert.equal((await fetch(`${base}api/tasks`, { headers: { authorization: `Bearer ${token}` } })).status, 200)
    const basic = Buffer.from(`anyone:${token}`).toString('base64')
    assert.equal((await fetch(`${base}api/tasks`, { headers: { authorization: `Basic ${basic}` } })).status, 200)
    // Any Host is fine once authenticated.
    assert.equal((await getWithHost(`${base}api/info`, 'flowkit.internal', { authorization: `Bearer ${token}` })).status, 200)
    const login = await fetch(`${base}workers?token=${encodeURIComponent(token)}&x=1`, { redirect: 'manual' })
    assert.equal(login.status, 302)
    assert.equal(login.headers.get('location'), '/workers?x=1', 'the token leaves the address bar')
    const cookie = (login.headers.get('set-cookie') ?? '').split(';')[0] as string
    // Lax: a link to a task from chat or an alert (a cross-site navigation) keeps the session.
    assert.match(login.headers.get('set-cookie') ?? '', /HttpOnly; SameSite=Lax/)
    // Never to another host: `//evil.example/x` after the token is stripped was an open redirect.
    for (const path of ['a/..//evil.example/x', '%2e%2e//evil.example/x']) {
      const r = await fetch(`${base}${path}?token=${encodeURIComponent(token)}`, { redirect: 'manual' })
      assert.equal(r.status, 302, path)
      assert.match(r.headers.get('location') ?? '', /^\/[^/]/, `${path}: ${r.headers.get('location')}`)
    }
    assert.equal((await fetch(`${base}api/workers`, { headers: { cookie } })).status, 200)
    assert.equal((await fetch(`${base}workers?token=nope`, { redirect: 'manual' })).status, 401)
    // The cookie is a session signed with the token, not the token (a browser sends a host's
    // cookies to its other ports too); named after the port; valid 12 hours.
    assert.doesNotMatch(cookie, new RegExp(token.replace(/[^\w]/g, '.')))
    assert.ok(!cookie.includes(encodeURIComponent(token)))
    assert.match(cookie, /^flowkit_dashboard_\d+=/)
    assert.match(login.headers.get('set-cookie') ?? '', /; Max-Age=43200;/)
    const [name, value = ''] = cookie.split('=')
    const forged = `${name}=${value.slice(0, -2)}xx`
    assert.equal((await fetch(`${base}api/workers`, { headers: { cookie: forged } })).status, 401, 'a changed signature')
    const stale = `${name}=${(Date.now() - 13 * 3600_000).toString(36)}.${value.split('.')[1]}`
    assert.equal((await fetch(`${base}api/workers`, { headers: { cookie: stale } })).status, 401, 'another issue time')
    assert.equal((await fetch(`${base}api/workers`, { headers: { cookie: `${name}=${encodeURIComponent(token)}` } })).status, 401, 'the token is not a cookie value')
  } finally {
    await ui.stop()
  }
})

test('a base64 token with + and / pasted in ?token= as is (not percent-encoded) lets in; a near miss does not', async () => {
  const token = 'ab+cd/ef+gh+ij/kl+mn+op/qr+st+uv/wx+yz+0123='
  const ui = await startUi({ host: '0.0.0.0', token })
  try {
    const base = `http://127.0.0.1:${ui.dashboard.port}/`
    const login = await fetch(`${base}workers?token=${token}`, { redirect: 'manual' })
    assert.equal(login.status, 302, 'the query reads + as a space: matched as +')
    assert.equal((await fetch(`${base}workers?token=${encodeURIComponent(token)}`, { redirect: 'manual' })).status, 302, 'percent-encoded too')
    assert.equal((await fetch(`${base}workers?token=${token.replace('ab+', 'ab-')}`, { redirect: 'manual' })).status, 401)
  } finally {
    await ui.stop()
  }
})

test('actions need the dashboard header and the same origin; unknown routes are 404/405', async () => {
  const ui = await startUi()
  try {
    const base = ui.dashboard.url
    const id = await ui.rt.coordinator.createTask({ graph: demoGraph() })
    const bare = await fetch(`${base}api/tasks/${id}/cancel`, { method: 'POST' })
    assert.equal(bare.status, 403)
    assert.match(((await bare.json()) as { error: string }).error, /X-Flowkit-Dashboard/)
    const cross = await fetch(`${base}api/tasks/${id}/cancel`, { method: 'POST', headers: { ...ACTION, origin: 'http://evil.example' } })
    assert.equal(cross.status, 403)
    assert.equal((await ui.rt.coordinator.getTask(id))?.cancelled, false, 'nothing was cancelled')
    const wrong = await fetch(`${base}api/tasks/${id}/cancel`)
    assert.equal(wrong.status, 405)
    assert.equal(wrong.headers.get('allow'), 'POST', 'a 405 says what is allowed')
    const page = await fetch(`${base}workers`, { method: 'POST', headers: ACTION })
    assert.equal(page.status, 405)
    assert.equal(page.headers.get('allow'), 'GET, HEAD')
    const head = await fetch(`${base}api/tasks`, { method: 'HEAD' })
    assert.equal(head.status, 200, 'HEAD answers as GET does')
    assert.equal(await head.text(), '', 'without the body')
    const post = await fetch(`${base}api/workers`, { method: 'POST', headers: ACTION })
    assert.equal(post.headers.get('allow'), 'GET, HEAD')
    assert.equal((await fetch(`${base}api/nope`)).status, 404)
    assert.equal((await fetch(`${base}api/tasks/missing`)).status, 404)
    assert.equal((await fetch(`${base}assets/../server.ts`)).status, 404)
    assert.equal((await fetch(`${base}assets/%2e%2e/server.ts`)).status, 404)
    assert.equal((await fetch(`${base}assets/vendor/dagre.esm.js`)).headers.get('content-type'), 'text/javascript; charset=utf-8')
    assert.equal((await fetch(`${base}no/such/page`)).status, 404)
  } finally {
    await ui.stop()
  }
})

test('task event stream: snapshot, node transitions, progress with batches seen, the terminal task event, then end', async () => {
  const ui = await startUi({ batches: 5, everyMs: 30 })
  try {
    const id = await ui.rt.coordinator.createTask({ graph: demoGraph() })
    const sse = await openSse(`${ui.dashboard.url}api/tasks/${id}/events`)
    assert.equal(sse.status, 200)
    assert.equal(sse.headers.get('content-type'), 'text/event-stream; charset=utf-8')
    const first = await sse.next()
    assert.equal(first.event, 'snapshot')
    assert.equal((first.data as { task: { id: string } }).task.id, id)
    const held = await sse.collect((e) => e.event === 'progress' && progressOf(e, 'extract') >= 4)
    assert.ok(held.some((e) => e.event === 'node' && (e.data as { node_id: string; status: string }).node_id === 'extract'), 'node events')
    ui.hold.open()
    const rest = await sse.collect((e) => e.event === 'end')
    const all = [first, ...held, ...rest]
    const extractDone = all.find((e) => e.event === 'node' && (e.data as { node_id: string; status: string }).node_id === 'extract' && (e.data as { status: string }).status === 'finished')
    assert.ok(extractDone, 'extract finished')
    const taskEnd = all.find((e) => e.event === 'task' && (e.data as { status: string }).status === 'finished')
    assert.ok(taskEnd, 'task finished event')
    assert.ok(all.indexOf(taskEnd) < all.length - 1 && all.at(-1)?.event === 'end', 'end comes last')
    sse.close()
    // A finished task: its final snapshot, then end at once.
    const again = await openSse(`${ui.dashboard.url}api/tasks/${id}/events`)
    const replay = await again.collect((e) => e.event === 'end')
    assert.deepEqual(replay.map((e) => e.event), ['snapshot', 'end'])
    again.close()
    assert.equal((await fetch(`${ui.dashboard.url}api/tasks/nope/events`)).status, 404)
  } finally {
    await ui.stop()
  }
})

function progressOf(e: SseEvent, nodeId: string): number {
  const n = (e.data as { nodes: { node_id: string; batches_seen: number }[] }).nodes.find((x) => x.node_id === nodeId)
  return n?.batches_seen ?? -1
}

test('list event stream: counts first, and again when a task is created and when it ends', async () => {
  const ui = await startUi({ batches: 2, everyMs: 10 })
  try {
    const sse = await openSse(`${ui.dashboard.url}api/events`)
    const first = await sse.collect((e) => e.event === 'tasks')
    const counts = first.at(-1) as SseEvent & { data: { all: number } }
    assert.equal(counts.data.all, 0)
    const id = await ui.rt.coordinator.createTask({ graph: demoGraph() })
    const created = await sse.collect((e) => e.event === 'tasks' && (e.data as { all: number }).all === 1)
    assert.ok(created.length > 0)
    ui.hold.open()
    await ui.rt.coordinator.waitForTask(id)
    await sse.collect((e) => e.event === 'tasks' && (e.data as { counts: { finished: number } }).counts.finished === 1)
    sse.close()
  } finally {
    await ui.stop()
  }
})

test('the workers event counts every dead letter (the store counts them: none is read, no cap)', async () => {
  const ui = await startUi()
  try {
    for (let i = 0; i < 1_005; i++) await ui.rt.store.outboxEnqueue({ topic: 'flowkit.cmd.gone', key: `k${i}`, value: 'x'.repeat(100), dedup_id: `d${i}` }, Date.now(), { attempts: 5, error: 'gave up' })
    const sse = await openSse(`${ui.dashboard.url}api/events`)
    const [workers] = (await sse.collect((e) => e.event === 'workers')).filter((e) => e.event === 'workers')
    assert.ok(workers !== undefined)
    assert.equal((workers.data as { dead_letters: number }).dead_letters, 1_005)
    sse.close()
  } finally {
    await ui.stop()
  }
})

test('control actions through the Coordinator: cancel a running task, resubmit it, retry a dead letter; node details', async () => {
  const ui = await startUi({ batches: 3, everyMs: 20 })
  try {
    const base = ui.dashboard.url
    const post = async (path: string, body: unknown = {}): Promise<{ status: number; body: Record<string, unknown> }> => {
      const res = await fetch(`${base}${path}`, { method: 'POST', headers: ACTION, body: JSON.stringify(body) })
      return { status: res.status, body: (await res.json()) as Record<string, unknown> }
    }
    const id = await ui.rt.coordinator.createTask({ graph: demoGraph(), params: { day: 'mon' }, deadlineSec: 600 })
    await waitFor(async () => (await ui.rt.coordinator.getTask(id))?.nodes.find((n) => n.node_id === 'extract')?.status === 'running')
    assert.deepEqual(await post(`api/tasks/${id}/cancel`, { reason: 'operator said so' }), { status: 200, body: { ok: true } })
    const cancelled = await ui.rt.coordinator.waitForTask(id, { timeoutMs: 10_000 })
    assert.equal(cancelled.status, 'cancelled')
    assert.deepEqual(await post(`api/tasks/${id}/cancel`), { status: 200, body: { ok: false } }, 'already ended')
    const page = (await (await fetch(`${base}api/tasks/${id}`)).json()) as { cancel_reason: string; graph: { edges: unknown[] } }
    assert.equal(page.cancel_reason, 'operator said so')
    assert.equal(page.graph.edges.length, 3)

    ui.hold = gate()
    ui.hold.open()
    const again = await post(`api/tasks/${id}/resubmit`)
    assert.equal(again.status, 200)
    const newId = again.body['id'] as string
    assert.notEqual(newId, id)
    const rerun = await ui.rt.coordinator.waitForTask(newId, { timeoutMs: 10_000 })
    assert.equal(rerun.status, 'finished')
    assert.deepEqual(rerun.params, { day: 'mon' })
    assert.deepEqual(rerun.nodes.map((n) => n.node_id), cancelled.nodes.map((n) => n.node_id))

    // Per-batch metric rows are a read model the coordinator writes in the background.
    let node: Record<string, { total: number } | unknown[]> = {}
    await waitFor(async () => {
      node = (await (await fetch(`${base}api/tasks/${newId}/nodes/extract`)).json()) as typeof node
      return (node['batches'] as { total: number }).total === 3
    })
    assert.equal((node['artifacts'] as { total: number }).total, 4, '3 partial artifacts and the complete one')
    assert.deepEqual((node['attempts'] as { attempt_epoch: number; workers: string[]; batches: number }[]).map((a) => [a.attempt_epoch, a.workers, a.batches]), [[1, ['ui-worker-1'], 3]])
    assert.equal((await fetch(`${base}api/tasks/${newId}/nodes/nope`)).status, 404)

    const now = Date.now()
    await ui.rt.store.outboxEnqueue({ topic: 'cmd.ticker.v1', key: `${newId}:extract`, value: JSON.stringify({ msg_type: 'TASK_START', task_id: newId, node_id: 'extract', token: 'secret=hunter2' }), dedup_id: 'dl-1' }, now, { attempts: 5, error: 'broker refused: password=hunter2' })
    const dead = (await (await fetch(`${base}api/dead-letters`)).json()) as { items: { id: string; msg_type: string; task_id: string; last_error: string; value_preview: string; value_bytes: number }[] }
    assert.equal(dead.items.length, 1)
    const row = dead.items[0] as (typeof dead.items)[number]
    assert.equal(row.msg_type, 'TASK_START')
    assert.equal(row.task_id, newId)
    assert.doesNotMatch(row.last_error + row.value_preview, /hunter2/, 'secrets are masked')
    assert.match(row.value_preview, /"token":"\*\*\*"/, 'a JSON message stays JSON, its secret fields "***" (as dlq ls shows them)')
    // A secret that starts before the preview's cut (400 characters) and ends after it is masked too.
    const head = JSON.stringify({ msg_type: 'TASK_START', task_id: newId, node_id: 'cut', pad: '' }).slice(0, -2)
    const pad = 'y'.repeat(400 - head.length - '","password":"'.length - 5)
    const cutValue = JSON.stringify({ msg_type: 'TASK_START', task_id: newId, node_id: 'cut', pad, password: 'CutPW9abcdefghijklmnop' })
    assert.ok(cutValue.indexOf('CutPW9') < 400 && cutValue.indexOf('CutPW9') + 22 > 400, 'the password straddles the cut')
    await ui.rt.store.outboxEnqueue({ topic: 'cmd.ticker.v1', key: `${newId}:cut`, value: cutValue, dedup_id: 'dl-cut' }, now, { attempts: 5, error: 'x' })
    const cutRow = ((await (await fetch(`${base}api/dead-letters`)).json()) as typeof dead).items.find((r) => r.value_preview.includes('yyyy'))
    assert.ok(cutRow !== undefined)
    assert.doesNotMatch(cutRow.value_preview, /CutPW/, 'masked before it is cut')
    assert.ok(cutRow.value_preview.length <= 400)
    assert.deepEqual(await post(`api/dead-letters/${encodeURIComponent(row.id)}/retry`), { status: 200, body: { ok: true } })
    const retriedTwice = await post(`api/dead-letters/${encodeURIComponent(row.id)}/retry`)
    assert.equal(retriedTwice.status, 404, 'no longer a dead letter')
    assert.match(String(retriedTwice.body['error']), /no dead letter/)
    const workers = (await (await fetch(`${base}api/workers`)).json()) as { workers: { worker_id: string; roles: string[]; capacity: number; active_runs: unknown[] }[] }
    assert.deepEqual(workers.workers.map((w) => [w.worker_id, w.roles.sort(), w.capacity]), [['ui-worker-1', ['sink', 'stream', 'ticker'], 4]])
  } finally {
    await ui.stop()
  }
})

test('task event stream of a task another coordinator runs: progress from the store, then its end', async () => {
  const store = new MemoryStore()
  const task = buildTask({ graph: { nodes: [{ node_id: 'a', type: 'x' }] } }, { coordinatorFns: new Set(), rejectUnknownInputAdapters: false }, Date.now())
  await store.createTask(task)
  let status: 'running' | 'finished' = 'running'
  const view = (): TaskView => {
    const v = toTaskView(task)
    return { ...v, status, nodes: v.nodes.map((n) => ({ ...n, status, batches_seen: status === 'running' ? 3 : 5 })) }
  }
  // This process's coordinator does not run the task: its watch gives the snapshot, then nothing.
  const coordinator = {
    async getTask(id: string) {
      return id === task.id ? view() : null
    },
    async *watch(id: string, options: { signal?: AbortSignal } = {}) {
      yield { type: 'snapshot' as const, task_id: id, at_ms: Date.now(), task: view() }
      await new Promise((resolve) => options.signal?.addEventListener('abort', resolve, { once: true }))
    },
    async listWorkers() {
      return []
    },
    async listDeadLetters() {
      return []
    },
  } as unknown as DashboardCoordinator
  const dash = await startDashboard({ coordinator, store, port: 0, progressMs: 50 })
  try {
    const sse = await openSse(`${dash.url}api/tasks/${task.id}/events`)
    assert.equal((await sse.next()).event, 'snapshot')
    status = 'finished'
    const events = await sse.collect((e) => e.event === 'end')
    const progress = events.filter((e) => e.event === 'progress').at(-1)?.data as { nodes: { node_id: string; status: string; batches_seen: number }[] }
    assert.deepEqual(progress.nodes.map((n) => [n.node_id, n.status, n.batches_seen]), [['a', 'finished', 5]])
    assert.deepEqual(events.filter((e) => e.event === 'task').map((e) => (e.data as { status: string }).status), ['finished'])
    sse.close()
  } finally {
    await dash.close()
  }
})

test('POST /api/tasks submits a graph through the coordinator (a dev runtime without --graph takes work this way); a refused graph is 422 with every problem', async () => {
  const ui = await startUi({ batches: 1, everyMs: 1 })
  try {
    const base = ui.dashboard.url
    const post = async (body: unknown, headers: Record<string, string> = ACTION): Promise<{ status: number; body: Record<string, unknown> }> => {
      const res = await fetch(`${base}api/tasks`, { method: 'POST', headers, body: JSON.stringify(body) })
      return { status: res.status, body: (await res.json()) as Record<string, unknown> }
    }
    ui.hold = gate()
    ui.hold.open()
    const ok = await post({ graph: demoGraph(), params: { day: 'tue' } })
    assert.equal(ok.status, 200, JSON.stringify(ok.body))
    const t = await ui.rt.coordinator.waitForTask(ok.body['id'] as string, { timeoutMs: 10_000 })
    assert.equal(t.status, 'finished')
    assert.deepEqual(t.params, { day: 'tue' })
    const bad = await post({ graph: { nodes: [{ node_id: 'a', type: 'x', fan_in: 'most' }, { node_id: 'b', type: 'x', depends_on: ['ghost'] }] } })
    assert.equal(bad.status, 422)
    assert.deepEqual((bad.body['errors'] as { path: string }[]).map((e) => e.path), ['nodes[0].fan_in', 'nodes[1].depends_on[0]'])
    assert.equal((await post({ params: {} })).status, 400)
    for (const deadline_sec of [-1, 0, 1e9]) {
      const r = await post({ graph: demoGraph(), deadline_sec })
      assert.equal(r.status, 422, `deadline_sec ${deadline_sec}`)
      assert.match(JSON.stringify(r.body), /"deadline_sec\\" must be/, 'names the field the caller sent')
    }
    assert.equal((await post({ graph: demoGraph(), params: [1] })).status, 400)
    // An unknown field is refused, with the near miss (`deadlineSec` was dropped: no deadline).
    const typo = await post({ graph: demoGraph(), deadlineSec: 5 })
    assert.equal(typo.status, 400)
    assert.match(String(typo.body['error']), /unknown field "deadlineSec" \(did you mean "deadline_sec"\?\)/)
    // Another site cannot submit: the action header is required.
    assert.equal((await post({ graph: demoGraph() }, { 'content-type': 'application/json' })).status, 403)
  } finally {
    await ui.stop()
  }
})

test('node details list every attempt, also one that wrote nothing, with the last failure on its attempt', async () => {
  let calls = 0
  const flaky: RoleHandler = {
    async processBatch() {
      calls++
      if (calls === 1) throw new Error('first attempt fails before writing anything')
      return { meta: { ok: true }, metrics: { n: 1 } }
    },
  }
  const rt = await startRuntime({ handlers: { flaky } })
  const dashboard = await startDashboard({ coordinator: rt.coordinator, store: rt.store, port: 0 })
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'flaky', retry_policy: { max: 3, backoff_sec: 0 } }] } })
    assert.equal((await rt.coordinator.waitForTask(id, { timeoutMs: 10_000 })).status, 'finished')
    const res = await fetch(`${dashboard.url}api/tasks/${id}/nodes/n`)
    assert.equal(res.status, 200)
    const body = (await res.json()) as { attempts: { attempt_epoch: number; complete: number; error: { reason_code: string } | null }[] }
    assert.deepEqual(body.attempts.map((a) => [a.attempt_epoch, a.complete, a.error?.reason_code ?? null]), [[2, 1, null], [1, 0, 'unexpected_error']])
  } finally {
    await dashboard.close()
    await rt.stop()
  }
})

test("workers: silent past the coordinator's workerLivenessSec, not before (an idle worker announces every 60 s)", async () => {
  const store = new MemoryStore()
  const now = Date.now()
  const workers = [
    // Heard from 90 s ago: between two announcements of an idle worker with the defaults.
    { worker_id: 'w-idle', roles: ['a'], capacity: 2, version: '1', status: 'online' as const, last_seen_ms: now - 90_000 },
    // Killed long ago without a goodbye: still "online" by its last announcement.
    { worker_id: 'w-killed', roles: ['a'], capacity: 2, version: '1', status: 'online' as const, last_seen_ms: now - 600_000 },
    { worker_id: 'w-gone', roles: ['a'], capacity: 2, version: '1', status: 'offline' as const, last_seen_ms: now - 600_000 },
  ]
  const coordinator = { config: { workerLivenessSec: 180 }, listWorkers: async () => workers, listDeadLetters: async () => [], countDeadLetters: async () => 0 } as unknown as DashboardCoordinator
  const dash = await startDashboard({ coordinator, store, port: 0 })
  try {
    const body = (await (await fetch(`${dash.url}api/workers`)).json()) as { liveness_ms: number; workers: { worker_id: string; silent: boolean }[] }
    assert.equal(body.liveness_ms, 180_000)
    assert.deepEqual(body.workers.map((w) => [w.worker_id, w.silent]), [['w-idle', false], ['w-killed', true], ['w-gone', false]])
    // The nav badge's count (the live stream): the silent worker is not online (it was counted so).
    const live = await openSse(`${dash.url}api/events`)
    try {
      const event = (await live.collect((e) => e.event === 'workers')).at(-1)
      assert.deepEqual(event?.data, { workers: 3, online: 1, silent: 1, dead_letters: 0 })
    } finally {
      live.close()
    }
  } finally {
    await dash.close()
  }
  // `flowkit ui` passes its config's window (its coordinator is remote: no config of its own).
  const narrow = await startDashboard({ coordinator, store, port: 0, workerLivenessMs: 60_000 })
  try {
    const body = (await (await fetch(`${narrow.url}api/workers`)).json()) as { workers: { worker_id: string; silent: boolean }[] }
    assert.deepEqual(body.workers.map((w) => [w.worker_id, w.silent]), [['w-idle', true], ['w-killed', true], ['w-gone', false]])
  } finally {
    await narrow.close()
  }
})

test('a bad request target is a 400 and a client that goes away mid-upload is no server error (each was logged as dashboard.request_failed; `GET //` answered 500)', async () => {
  const { MemoryLogger } = await import('flowkit')
  const logger = new MemoryLogger()
  const ui = await startUi({ logger })
  try {
    const { port } = ui.dashboard
    const raw = (head: string, body = ''): Promise<string> =>
      new Promise((resolve, reject) => {
        const sock = connect(port, '127.0.0.1', () => sock.end(`${head}\r\n\r\n${body}`))
        let text = ''
        sock.on('data', (c) => (text += c.toString('utf8')))
        sock.on('end', () => resolve(text))
        sock.on('error', reject)
      })
    const answer = await raw('GET // HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close')
    assert.match(answer, /^HTTP\/1\.1 400 /)
    // An upload cut off: the body announced is never all sent.
    await new Promise<void>((resolve) => {
      const sock = connect(port, '127.0.0.1', () => {
        sock.write('POST /api/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Flowkit-Dashboard: 1\r\nContent-Length: 100000\r\n\r\n{"graph":')
        setTimeout(() => {
          sock.destroy()
          resolve()
        }, 100)
      })
    })
    await waitFor(() => logger.records.some((r) => r.event === 'dashboard.request_aborted'), { message: 'the cut-off upload was not seen' })
    assert.deepEqual(logger.records.filter((r) => r.event === 'dashboard.request_failed').map((r) => r.fields), [])
  } finally {
    await ui.stop()
  }
})

test('the task page masks what looks like a credential in params, variables, artifact metas and checkpoints (they were shown in clear)', async () => {
  const secret = 'hunter2SECRET'
  const handler: RoleHandler = {
    async processBatch(_b, ctx) {
      await ctx.checkpoint({ password: secret, at: 1 })
      return { metrics: { count: 1 }, meta: { api_key: secret, rows: 3 } }
    },
  }
  const rt = await startRuntime({ handlers: { s: handler } })
  const dash = await startDashboard({ coordinator: rt.coordinator, store: rt.store, port: 0 })
  try {
    const id = await rt.coordinator.createTask({
      graph: { nodes: [{ node_id: 'v', type: 'coordinator_fn', io: { fn: 'vars.set', fn_args: { kv: { 'db.password': secret, 'db.host': 'db1' } } } }, { node_id: 'a', type: 's', depends_on: ['v'] }] },
      params: { password: secret, dsn: `postgres://admin:${secret}@db/x`, day: 'tue' },
    })
    await rt.coordinator.waitForTask(id)
    const page = await (await fetch(`${dash.url}api/tasks/${id}`)).text()
    const node = await (await fetch(`${dash.url}api/tasks/${id}/nodes/a`)).text()
    const output = await (await fetch(`${dash.url}api/tasks/${id}/output`)).text()
    const stream = await openSse(`${dash.url}api/tasks/${id}/events`)
    let events: SseEvent[] = []
    try {
      events = await stream.collect((e) => e.event === 'snapshot')
    } finally {
      stream.close()
    }
    for (const [what, text] of [['task', page], ['node', node], ['output', output], ['snapshot', JSON.stringify(events)]] as const) {
      assert.ok(!text.includes(secret), `${what}: ${text.slice(0, 400)}`)
    }
    const task = (JSON.parse(page) as { task: TaskView }).task
    assert.equal(task.params['day'], 'tue', 'the rest is shown')
    assert.equal((task.vars['db'] as Record<string, unknown>)['host'], 'db1')
    assert.ok(node.includes('rows'))
  } finally {
    await dash.close()
    await rt.stop()
  }
})
