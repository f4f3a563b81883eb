/**
 * Dashboard task list (issue 9): filters, live counts and pages over 10,000 tasks, answered from
 * the in-memory task index without loading every task per request. The coordinator is a stub
 * over the store (these tasks are not run): only the list is under test here.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { channel } from 'node:diagnostics_channel'
import { performance } from 'node:perf_hooks'
import { MemoryStore, TASK_EVENTS_CHANNEL, type TaskDoc, type TaskStatus } from 'flowkit'
import { buildTask } from '../../src/coordinator/submit.ts'
import { toTaskView } from '../../src/coordinator/view.ts'
import type { DashboardCoordinator } from '../../src/ui/api.ts'
import { startDashboard } from '../../src/ui/server.ts'
import { HttpError } from '../../src/ui/http.ts'
import { gate } from '../helpers/gate.ts'
import { waitFor } from '../helpers/wait.ts'
import { TaskIndex } from '../../src/ui/task-index.ts'
import { overrideStore } from '../helpers/store-proxy.ts'

const STATUSES: TaskStatus[] = ['queued', 'running', 'cancelling', 'finished', 'failed', 'cancelled']
const N = 10_000
const NOW = Date.UTC(2030, 0, 10)
const HOUR = 3_600_000

function stubCoordinator(store: MemoryStore): DashboardCoordinator {
  const no = (): never => {
    throw new Error('not used by this test')
  }
  return {
    async getTask(id: string) {
      const t = await store.getTask(id)
      return t === null ? null : toTaskView(t)
    },
    async listWorkers() {
      return []
    },
    async listDeadLetters() {
      return []
    },
    async countDeadLetters() {
      return 0
    },
    createTask: no,
    watch: no,
    cancelTask: no,
    retryDeadLetter: no,
    listArtifacts: no,
    getOutput: no,
  }
}

/** Task i: status STATUSES[i % 6], types by i % 3, created i * 1.5 min before NOW (newest: i = 0). */
function makeTasks(): TaskDoc[] {
  const shapes = [
    { nodes: [{ node_id: 'a', type: 'extract' }, { node_id: 'b', type: 'load', depends_on: ['a'] }] },
    { nodes: [{ node_id: 'a', type: 'extract' }, { node_id: 'b', type: 'score', depends_on: ['a'] }] },
    { nodes: [{ node_id: 'x', type: 'report' }] },
  ]
  const templates = shapes.map((graph) => buildTask({ graph }, { coordinatorFns: new Set(), rejectUnknownInputAdapters: false }, NOW))
  const out: TaskDoc[] = []
  for (let i = 0; i < N; i++) {
    const t = templates[i % 3] as TaskDoc
    const status = STATUSES[i % 6] as TaskStatus
    const created = NOW - i * 90_000
    const terminal = i % 6 >= 3
    const nodes = Object.fromEntries(Object.entries(t.nodes).map(([k, n]) => [k, { ...n, status: terminal ? (status === 'failed' ? 'failed' : 'finished') : n.status }]))
    out.push({ ...t, id: `task-${String(i).padStart(5, '0')}`, status, nodes: nodes as TaskDoc['nodes'], created_at_ms: created, updated_at_ms: created, finished_at_ms: terminal ? created + 1000 : null, error: status === 'failed' ? 'boom' : null })
  }
  return out
}

async function getJson(url: string): Promise<{ ms: number; body: Record<string, unknown> }> {
  const t0 = performance.now()
  const res = await fetch(url)
  const body = (await res.json()) as Record<string, unknown>
  const ms = performance.now() - t0
  assert.equal(res.status, 200, JSON.stringify(body))
  return { ms, body }
}

test('task list over 10,000 tasks: status counts, filters by status, type, age and id, pages newest first, each request fast', async (t) => {
  const store = new MemoryStore()
  const tasks = makeTasks()
  await store.createTasks(tasks)
  const clock = { now: () => NOW, sleep: async () => undefined }
  const dash = await startDashboard({ coordinator: stubCoordinator(store), store, port: 0, clock })
  try {
    const first = await getJson(`${dash.url}api/tasks`)
    t.diagnostic(`first request (index built from the store): ${first.ms.toFixed(0)} ms`)
    assert.equal(first.body['all'], N)
    assert.equal(first.body['total'], N)
    assert.deepEqual(first.body['counts'], Object.fromEntries(STATUSES.map((s, k) => [s, Math.ceil((N - k) / 6)])))
    const items = first.body['items'] as { id: string; status: string; nodes: number; nodes_done: number; types: string[] }[]
    assert.equal(items.length, 50)
    assert.deepEqual(items.slice(0, 3).map((i) => i.id), ['task-00000', 'task-00001', 'task-00002'])
    assert.deepEqual(items[1]?.types, ['extract', 'score'])
    assert.ok(first.ms < 10_000, `first request took ${first.ms} ms`)

    const cases: [string, (i: number) => boolean, number][] = [
      ['status=failed', (i) => i % 6 === 4, 1],
      ['status=running,cancelling', (i) => i % 6 === 1 || i % 6 === 2, 1],
      ['type=score', (i) => i % 3 === 1, 1],
      ['type=extract&status=finished&page=3', (i) => i % 3 !== 2 && i % 6 === 3, 3],
      ['max_age_sec=3600', (i) => NOW - i * 90_000 >= NOW - HOUR, 1],
      ['min_age_sec=86400&limit=200&page=2', (i) => NOW - i * 90_000 < NOW - 24 * HOUR, 2],
      ['q=task-0999', (i) => `task-${String(i).padStart(5, '0')}`.includes('task-0999'), 1],
    ]
    const times: number[] = []
    for (const [query, match, page] of cases) {
      const { ms, body } = await getJson(`${dash.url}api/tasks?${query}`)
      times.push(ms)
      const limit = Number(/limit=(\d+)/.exec(query)?.[1] ?? 50)
      const expected = tasks.map((_, i) => i).filter(match)
      assert.equal(body['total'], expected.length, `${query}: total`)
      const ids = (body['items'] as { id: string }[]).map((i) => i.id)
      assert.deepEqual(ids, expected.slice((page - 1) * limit, page * limit).map((i) => `task-${String(i).padStart(5, '0')}`), `${query}: page ${page}`)
      // The live counts ignore the status filter, so the chips show what each would give.
      const counts = body['counts'] as Record<string, number>
      if (!query.includes('status=')) assert.equal(Object.values(counts).reduce((a, b) => a + b, 0), expected.length, `${query}: counts`)
    }
    const sorted = [...times].sort((a, b) => a - b)
    t.diagnostic(`filtered pages: median ${sorted[Math.floor(sorted.length / 2)]?.toFixed(1)} ms, max ${sorted.at(-1)?.toFixed(1)} ms`)
    assert.ok((sorted.at(-1) ?? 0) < 1_500, `a filtered page took ${sorted.at(-1)} ms`)

    const bad = await fetch(`${dash.url}api/tasks?status=sleeping`)
    assert.equal(bad.status, 400)
    assert.match(((await bad.json()) as { error: string }).error, /unknown status "sleeping"/)
    for (const q of ['limit=1e1', 'limit=0x10', 'limit=%205', 'page=1.0', 'max_age_sec=-1']) {
      const refused = await fetch(`${dash.url}api/tasks?${q}`)
      assert.equal(refused.status, 400, q)
      assert.match(((await refused.json()) as { error: string }).error, /must be an integer from/)
    }
    const types = await getJson(`${dash.url}api/types`)
    assert.deepEqual(types.body['types'], [
      { type: 'extract', tasks: 6667 },
      { type: 'load', tasks: 3334 },
      { type: 'report', tasks: 3333 },
      { type: 'score', tasks: 3333 },
    ])
  } finally {
    await dash.close()
  }
})

test('task index: a task that retention deleted leaves the list at the next refresh; the others stay', async () => {
  const store = new MemoryStore()
  const [a, b] = makeTasks().slice(3, 5) as [TaskDoc, TaskDoc]
  await store.createTask(a) // finished, long ago
  await store.createTask({ ...b, created_at_ms: NOW, status: 'running' })
  let now = NOW
  const index = new TaskIndex(store, () => now, { refreshMs: 1000 })
  try {
    await index.ensureFresh()
    assert.equal(index.query({ offset: 0, limit: 10 }).all, 2)
    assert.deepEqual(await store.purgeTasks(NOW, 100), [a.id])
    now += 5_000
    await index.ensureFresh(undefined, { wait: true })
    assert.equal(index.get(a.id), undefined)
    assert.equal(index.get(b.id)?.status, 'running')
    assert.equal(index.query({ offset: 0, limit: 10 }).all, 1)
  } finally {
    index.close()
  }
})

test('task index: a task event moves a status forward at once, never back; new tasks appear at the next refresh', async () => {
  const store = new MemoryStore()
  const [a, b] = makeTasks().slice(0, 2) as [TaskDoc, TaskDoc]
  await store.createTask({ ...a, status: 'running' })
  let now = NOW
  const index = new TaskIndex(store, () => now, { refreshMs: 1000 })
  try {
    await index.ensureFresh()
    assert.equal(index.get(a.id)?.status, 'running')
    const v = index.version
    channel(TASK_EVENTS_CHANNEL).publish({ type: 'task', task_id: a.id, at_ms: NOW + 5, status: 'finished', error: null })
    assert.equal(index.get(a.id)?.status, 'finished')
    assert.equal(index.get(a.id)?.finished_at_ms, NOW + 5)
    assert.ok(index.version > v)
    // The store's snapshot still says running: a refresh does not move the status back.
    now += 5_000
    await store.createTask(b)
    await index.ensureFresh(undefined, { wait: true })
    assert.equal(index.get(a.id)?.status, 'finished')
    assert.equal(index.get(b.id)?.status, b.status)
    assert.equal(index.query({ offset: 0, limit: 10 }).all, 2)
  } finally {
    index.close()
  }
})

test('task index: after its first load a page waits for a slow refresh waitMs at most, then is answered from the summaries held; a status read that took d rests 3 d', async () => {
  const store = new MemoryStore()
  const [a, b] = makeTasks().slice(0, 2) as [TaskDoc, TaskDoc]
  await store.createTask(a)
  let now = NOW
  let gate: Promise<void> | null = null
  let scans = 0
  // A store whose status scan takes 4 s of the index's clock (a server that scans 10,000 tasks).
  const slow = overrideStore(store, {
    listTaskStatuses: (original) => async (...args: unknown[]) => {
      scans++
      if (gate !== null) await gate
      now += 4_000
      return original(...args)
    },
  })
  const index = new TaskIndex(slow, () => now, { refreshMs: 1000, waitMs: 100 })
  try {
    await index.ensureFresh() // the first load is waited for: one read of every task, no status read
    assert.equal(index.query({ offset: 0, limit: 10 }).all, 1)
    assert.equal(scans, 0)
    now += 2_000
    await index.ensureFresh(undefined, { wait: true })
    assert.equal(scans, 1)
    // It took 4 s: no refresh for 12 s after it, however often asked.
    now += 11_000
    await index.ensureFresh()
    assert.equal(scans, 1)
    // Past the rest, a refresh starts, held by the store; the request waits for it waitMs at most.
    now += 2_000
    await store.createTask(b)
    let open!: () => void
    gate = new Promise<void>((r) => {
      open = r
    })
    const asked = index.ensureFresh()
    const answered = await Promise.race([asked.then(() => 'answered'), new Promise((r) => setTimeout(() => r('waiting'), 5_000))])
    assert.equal(answered, 'answered')
    assert.equal(scans, 2)
    assert.equal(index.query({ offset: 0, limit: 10 }).all, 1, 'the held summaries, while the refresh runs')
    // The live stream waits for the refresh running, and then sees the new task.
    const live = index.ensureFresh(undefined, { wait: true })
    open()
    await live
    assert.equal(index.query({ offset: 0, limit: 10 }).all, 2)
    assert.equal(scans, 2)
  } finally {
    index.close()
  }
})

test('task index: with a store that answers at once, each request sees what the store holds now (not the previous request)', async () => {
  const store = new MemoryStore()
  const tasks = makeTasks().slice(0, 3) as TaskDoc[]
  let now = NOW
  const index = new TaskIndex(store, () => now, { refreshMs: 500 })
  try {
    for (let i = 0; i < tasks.length; i++) {
      await store.createTask(tasks[i] as TaskDoc)
      now += 2_000
      await index.ensureFresh()
      assert.equal(index.query({ offset: 0, limit: 10 }).all, i + 1)
    }
  } finally {
    index.close()
  }
})

/** Walks the task list from the first page by its `next` cursors, calling `between` (with the ids shown so far) before each later page. */
async function walk(url: string, query: string, between: (shown: readonly string[]) => Promise<void>): Promise<string[]> {
  const shown: string[] = []
  let next: string | null = null
  for (let page = 1; page === 1 || next !== null; page++) {
    if (page > 1) await between(shown)
    const { body } = await getJson(`${url}api/tasks?limit=50${query}${next === null ? '' : `&before=${encodeURIComponent(next)}`}`)
    const items = body['items'] as { id: string }[]
    shown.push(...items.map((i) => i.id))
    next = body['next'] as string | null
    assert.ok(page < 100, 'the walk ends')
  }
  return shown
}

test('task list pages hold their place: walking them by "next" shows each task once while new tasks arrive, and skips none while running tasks end', async () => {
  const store = new MemoryStore()
  const tasks = makeTasks().slice(0, 1_200)
  await store.createTasks(tasks)
  let now = NOW
  const clock = { now: () => now, sleep: async () => undefined }
  const dash = await startDashboard({ coordinator: stubCoordinator(store), store, port: 0, clock, refreshMs: 1_000 })
  try {
    // 5 new tasks before each page (newer than every task: the top of the list).
    let added = 0
    const arrivals = async (): Promise<void> => {
      const fresh = tasks.slice(0, 5).map((t) => ({ ...t, id: `new-${String(added++).padStart(4, '0')}`, created_at_ms: now, updated_at_ms: now }))
      await store.createTasks(fresh)
      now += 2_000 // past the index's refresh period: each page sees them
    }
    const shown = await walk(dash.url, '', arrivals)
    assert.ok(added >= 100, `${added} tasks arrived during the walk`)
    assert.equal(new Set(shown).size, shown.length, 'no task shown twice')
    assert.deepEqual(shown, tasks.map((t) => t.id), 'every task there at the start, once, newest first')
    const bad = await fetch(`${dash.url}api/tasks?before=yesterday`)
    assert.equal(bad.status, 400)
    assert.match(((await bad.json()) as { error: string }).error, /before: <created_at_ms>\.<task id>/)
    for (const cursor of ['-1.a', '1e3.a', '0x10.a', ' 1.a', '+1.a']) {
      const refused = await fetch(`${dash.url}api/tasks?after=${encodeURIComponent(cursor)}`)
      assert.equal(refused.status, 400, `after=${cursor}`)
      await refused.body?.cancel()
    }

    // Filtered by running: before each page, 10 of the running tasks already shown end.
    const running = tasks.filter((t) => t.status === 'running').map((t) => t.id)
    const ended = new Set<string>()
    const shownRunning = await walk(dash.url, '&status=running', async (seen) => {
      for (const id of seen.filter((i) => !ended.has(i)).slice(0, 10)) {
        ended.add(id)
        channel(TASK_EVENTS_CHANNEL).publish({ type: 'task', task_id: id, at_ms: now, status: 'finished', error: null })
      }
    })
    assert.ok(ended.size >= 30, `${ended.size} running tasks ended during the walk`)
    assert.deepEqual(shownRunning.filter((id) => !ended.has(id)), running.filter((id) => !ended.has(id)), 'every task that stayed running, once')
  } finally {
    await dash.close()
  }
})

test('task index: pages by cursor — "after" a page\'s first row is the page before it, "last" the oldest rows; each says its offset', async () => {
  const store = new MemoryStore()
  const tasks = makeTasks().slice(0, 230)
  await store.createTasks(tasks)
  const index = new TaskIndex(store, () => NOW)
  try {
    await index.ensureFresh()
    const ids = (p: { items: { id: string }[] }): string[] => p.items.map((i) => i.id)
    const cursor = (s: { id: string; created_at_ms: number } | undefined) => ({ id: s?.id ?? '', created_at_ms: s?.created_at_ms ?? 0 })
    const p2 = index.query({ offset: 50, limit: 50 })
    const p3 = index.query({ offset: 0, before: cursor(p2.items.at(-1)), limit: 50 })
    assert.deepEqual(ids(p3), tasks.slice(100, 150).map((t) => t.id))
    assert.equal(p3.offset, 100)
    const back = index.query({ offset: 0, after: cursor(p3.items[0]), limit: 50 })
    assert.deepEqual(ids(back), ids(p2))
    assert.equal(back.offset, 50)
    const top = index.query({ offset: 0, after: cursor(tasks[20]), limit: 50 })
    assert.deepEqual(ids(top), tasks.slice(0, 20).map((t) => t.id), 'fewer newer rows than a page: those')
    assert.equal(top.offset, 0)
    const last = index.query({ offset: 0, last: true, limit: 50 })
    assert.deepEqual(ids(last), tasks.slice(180).map((t) => t.id))
    assert.equal(last.offset, 180)
    const failed = index.query({ offset: 0, statuses: ['failed'], last: true, limit: 10 })
    assert.deepEqual(ids(failed), tasks.filter((t) => t.status === 'failed').slice(-10).map((t) => t.id))
    assert.equal(failed.offset + 10, failed.total)
  } finally {
    index.close()
  }
})

test('task page: its graph and deadline are read once per task; a reload reads the task once (through the coordinator)', async () => {
  const store = new MemoryStore()
  const [a] = makeTasks().slice(1, 2) as [TaskDoc]
  await store.createTask({ ...a, deadline_at_ms: NOW + 60_000 })
  let reads = 0
  const counted = overrideStore(store, {
    getTask: (original) => async (...args: unknown[]) => {
      reads++
      return original(...args)
    },
  }) as MemoryStore
  const dash = await startDashboard({ coordinator: stubCoordinator(counted), store: counted, port: 0, clock: { now: () => NOW, sleep: async () => undefined } })
  try {
    await getJson(`${dash.url}api/tasks`)
    const before = reads
    const first = await getJson(`${dash.url}api/tasks/${a.id}`)
    assert.equal(first.body['deadline_at_ms'], NOW + 60_000)
    assert.equal((first.body['graph'] as { nodes: unknown[] }).nodes.length, 2)
    assert.equal(reads - before, 2, 'first open: the task, and its graph and deadline')
    const again = await getJson(`${dash.url}api/tasks/${a.id}`)
    assert.equal(reads - before, 3, 'a reload: the task only')
    assert.deepEqual(again.body['graph'], first.body['graph'])
    assert.equal(again.body['deadline_at_ms'], NOW + 60_000)
  } finally {
    await dash.close()
  }
})

test('task index: a request waits for the first load firstWaitMs at most, then gets a 503 to come back; a failed load rests 3 times as long as it took before the next', async () => {
  const store = new MemoryStore()
  const [a] = makeTasks().slice(0, 1) as [TaskDoc]
  await store.createTask(a)
  let now = NOW
  let gate: Promise<void> | null = null
  let fail = false
  let loads = 0
  // A store whose full read takes 20 s of the index's clock, held until the test opens it.
  const slow = overrideStore(store, {
    listTasks: (original) => async (...args: unknown[]) => {
      loads++
      if (gate !== null) await gate
      now += 20_000
      if (fail) throw new Error('server selection timed out')
      return original(...args)
    },
  })
  const index = new TaskIndex(slow, () => now, { refreshMs: 1000, firstWaitMs: 50 })
  const refused = async (pattern: RegExp): Promise<void> => {
    await assert.rejects(index.ensureFresh(), (err: unknown) => {
      assert.ok(err instanceof HttpError)
      assert.equal(err.status, 503)
      assert.equal(err.headers['Retry-After'], '5')
      assert.match(err.message, pattern)
      return true
    })
  }
  try {
    let open!: () => void
    gate = new Promise<void>((r) => {
      open = r
    })
    fail = true
    await refused(/still being read from the store \(reading for 0 s\)/)
    assert.equal(index.loaded, false)
    await refused(/reading for/) // the same load: not a second one
    assert.equal(loads, 1)
    open()
    gate = null
    await index.ensureFresh(undefined, { wait: true }).catch(() => undefined)
    // It failed after 20 s: for 60 s no new read, however often asked.
    now += 59_000
    await refused(/its last read failed/)
    assert.equal(loads, 1)
    now += 2_000
    fail = false
    await index.ensureFresh()
    assert.equal(loads, 2)
    assert.equal(index.loaded, true)
    assert.equal(index.query({ offset: 0, limit: 10 }).all, 1)
  } finally {
    index.close()
  }
})

test('task list: an active row is read again once per refresh period, not at every page request', async () => {
  const store = new MemoryStore()
  const tasks = makeTasks().slice(0, 12) // 2 running, 2 queued, 2 cancelling among them
  await store.createTasks(tasks)
  let now = NOW
  let reads = 0
  const coordinator = stubCoordinator(store)
  const counting: DashboardCoordinator = {
    ...coordinator,
    getTask: async (id: string) => {
      reads++
      return coordinator.getTask(id)
    },
  }
  const dash = await startDashboard({ coordinator: counting, store, port: 0, clock: { now: () => now, sleep: async () => undefined }, refreshMs: 2_000 })
  try {
    await getJson(`${dash.url}api/tasks`)
    assert.equal(reads, 6, 'the active rows, read in full')
    await getJson(`${dash.url}api/tasks`)
    now += 1_000
    await getJson(`${dash.url}api/tasks?status=running`)
    assert.equal(reads, 6, 'within the refresh period: from the summaries')
    now += 1_000
    await getJson(`${dash.url}api/tasks`)
    assert.equal(reads, 12, 'a refresh period later: read again')
  } finally {
    await dash.close()
  }
})

test('on a slow store a page of active rows is answered from the summaries within 0.5 s, each row read once however often asked; the live stream opens before the first load is done', async () => {
  const store = new MemoryStore()
  const tasks = makeTasks().slice(0, 12) // 6 active
  await store.createTasks(tasks)
  let reads = 0
  const slowReads = gate()
  const coordinator = stubCoordinator(store)
  const slow: DashboardCoordinator = {
    ...coordinator,
    getTask: async (id: string) => {
      reads++
      await slowReads.wait()
      return coordinator.getTask(id)
    },
  }
  // The first load held until the test lets it go.
  const firstLoad = gate()
  const held = overrideStore(store, {
    listTasks: (original) => async (...args: unknown[]) => {
      await firstLoad.wait()
      return original(...args)
    },
  }) as MemoryStore
  const dash = await startDashboard({ coordinator: slow, store: held, port: 0, clock: { now: () => NOW, sleep: async () => undefined } })
  const ac = new AbortController()
  try {
    const opening = performance.now()
    const events = await fetch(`${dash.url}api/events`, { signal: ac.signal })
    assert.equal(events.status, 200, 'the stream opens while the first load runs')
    assert.ok(performance.now() - opening < 5_000, `the stream opened after ${performance.now() - opening} ms (a request waits 10 s for the first load)`)
    firstLoad.open()
    const t0 = performance.now()
    const first = await getJson(`${dash.url}api/tasks`)
    const second = await getJson(`${dash.url}api/tasks`)
    assert.ok(performance.now() - t0 < 5_000, `two pages took ${performance.now() - t0} ms`)
    assert.equal((first.body['items'] as unknown[]).length, 12)
    assert.deepEqual(second.body['items'], first.body['items'])
    assert.equal(reads, 6, 'each active row read once, the reads still under way')
    slowReads.open()
    await waitFor(async () => {
      await getJson(`${dash.url}api/tasks`)
      return reads === 6
    })
  } finally {
    ac.abort()
    slowReads.open()
    firstLoad.open()
    await dash.close()
  }
})

test('task index: page rows whose re-read throws are read again at a later request (a failed read does not leave the others marked as being read)', async () => {
  const store = new MemoryStore()
  const tasks = makeTasks().slice(0, 72) // 36 active, more than the reads made at once
  await store.createTasks(tasks)
  let now = NOW
  const index = new TaskIndex(store, () => now, { refreshMs: 1000 })
  try {
    await index.ensureFresh()
    const rows = index.query({ offset: 0, limit: 72, statuses: ['queued', 'running', 'cancelling'] }).items
    assert.equal(rows.length, 36)
    await index.reread(rows, async () => {
      throw new Error('server selection timed out')
    })
    now += 1_000
    assert.deepEqual(rows.filter((s) => !index.needsRead(s)).map((s) => s.id), [], 'every row is due a read again')
  } finally {
    index.close()
  }
})
