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
    await index.ensureFresh() // the first load is waited for
    assert.equal(index.query({ offset: 0, limit: 10 }).all, 1)
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
