// Task list: filters (status, node type, age, id), live per-status counts, pages of 50. The
// server filters and pages (GET /api/tasks); this page re-reads the current page when the shared
// live stream says the tasks moved, at most once a second. The first page is the newest tasks
// (it moves as they arrive); another page is held by the row next to it (the server's `next` /
// `prev` cursors), so its rows stay put while tasks arrive, end or leave a status.
import { ACTIVE, TASK_STATUSES, api, badge, duration, errorBox, fill, h, live, now, num, syncClock, throttle, timeCell } from './util.js'

const AGES = [
  { key: '', label: 'any age' },
  { key: '15m', label: 'last 15 min', max: 900 },
  { key: '1h', label: 'last hour', max: 3600 },
  { key: '24h', label: 'last 24 h', max: 86400 },
  { key: '7d', label: 'last 7 days', max: 604800 },
  { key: 'gt1h', label: 'older than 1 hour', min: 3600 },
  { key: 'gt1d', label: 'older than 1 day', min: 86400 },
]
const PAGE_SIZE = 50

function readFilters() {
  const p = new URLSearchParams(location.search)
  const page = Number(p.get('page') ?? '1')
  return {
    status: (p.get('status') ?? '').split(',').filter((s) => TASK_STATUSES.includes(s)),
    type: p.get('type') ?? '',
    age: AGES.some((a) => a.key === p.get('age')) ? p.get('age') : '',
    q: p.get('q') ?? '',
    // Where the page is: one of a cursor (before / after a row), the oldest page, or a page number.
    before: p.get('before') ?? '',
    after: p.get('after') ?? '',
    last: p.get('last') === '1',
    page: Number.isInteger(page) && page > 0 ? page : 1,
  }
}

function writeFilters(f) {
  const p = new URLSearchParams()
  if (f.status.length > 0) p.set('status', f.status.join(','))
  if (f.type) p.set('type', f.type)
  if (f.age) p.set('age', f.age)
  if (f.q) p.set('q', f.q)
  setPosition(p, f)
  const qs = p.toString()
  history.replaceState(null, '', qs ? `/?${qs}` : '/')
}

function setPosition(p, f) {
  if (f.before) p.set('before', f.before)
  else if (f.after) p.set('after', f.after)
  else if (f.last) p.set('last', '1')
  else if (f.page > 1) p.set('page', String(f.page))
}

/** Moves the page to `where` (`{}`: the first page). */
function moveTo(f, where) {
  f.before = where.before ?? ''
  f.after = where.after ?? ''
  f.last = where.last === true
  f.page = 1
}

function apiQuery(f) {
  const p = new URLSearchParams({ limit: String(PAGE_SIZE) })
  setPosition(p, f)
  if (f.status.length > 0) p.set('status', f.status.join(','))
  if (f.type) p.set('type', f.type)
  if (f.q) p.set('q', f.q)
  const age = AGES.find((a) => a.key === f.age)
  if (age?.max) p.set('max_age_sec', String(age.max))
  if (age?.min) p.set('min_age_sec', String(age.min))
  return `/api/tasks?${p}`
}

function progress(t) {
  const pct = t.nodes > 0 ? Math.round((100 * t.nodes_done) / t.nodes) : 0
  return h(
    'div',
    { class: 'progress', title: `${t.nodes_done} of ${t.nodes} nodes ended` },
    h('progress', { max: String(Math.max(1, t.nodes)), value: String(t.nodes_done) }),
    h('span', {}, `${num(t.nodes_done)}/${num(t.nodes)}`),
    h('span', { class: 'sr-only' }, `${pct}%`),
  )
}

function row(t) {
  const end = t.finished_at_ms ?? (ACTIVE.has(t.status) ? now() : t.updated_at_ms)
  return h(
    'tr',
    { 'data-task-id': t.id },
    h('td', { class: 'id' }, h('a', { href: `/tasks/${encodeURIComponent(t.id)}`, class: 'task-link' }, t.id)),
    h('td', {}, badge(t.status)),
    h('td', {}, progress(t)),
    h('td', { class: 'types', title: t.types.join(', ') }, t.types.slice(0, 3).join(', '), t.types.length > 3 ? ` +${t.types.length - 3}` : ''),
    h('td', {}, timeCell(t.created_at_ms)),
    h('td', {}, duration(end - t.created_at_ms)),
    h('td', { class: 'err', title: t.error ?? '' }, t.error ?? ''),
  )
}

export async function tasksPage(root) {
  const f = readFilters()
  const chips = h('div', { class: 'chips', role: 'group', 'aria-label': 'status' })
  const typeSelect = h('select', { name: 'type', 'aria-label': 'node type' }, h('option', { value: '' }, 'all types'))
  const ageSelect = h('select', { name: 'age', 'aria-label': 'age' }, AGES.map((a) => h('option', { value: a.key, selected: a.key === f.age }, a.label)))
  const search = h('input', { type: 'search', name: 'q', placeholder: 'task id contains…', value: f.q, 'aria-label': 'task id' })
  const tbody = h('tbody')
  const pager = h('div', { class: 'pager' })
  const message = h('div')
  const summary = h('span', { class: 'muted' })
  fill(
    root,
    h('div', { class: 'page-head' }, h('h1', {}, 'Tasks'), summary),
    h('div', { class: 'filters' }, chips, typeSelect, ageSelect, search),
    message,
    h(
      'table',
      { class: 'grid tasks' },
      h('thead', {}, h('tr', {}, ['Task', 'Status', 'Nodes', 'Types', 'Created', 'Duration', 'Error'].map((c) => h('th', {}, c)))),
      tbody,
    ),
    pager,
  )

  // One read of the list at a time: a reload asked for while one is under way runs after it (on a
  // slow store, starting a new read each time and dropping the older answers showed nothing at
  // all). `seq` moves with the filters and the position: an answer for older ones is read again.
  let seq = 0
  let closed = false
  let running = false
  let again = false
  let typesLoaded = false
  const load = async () => {
    if (running) {
      again = true
      return
    }
    running = true
    try {
      do {
        again = false
        await loadOnce()
      } while (again && !closed)
    } finally {
      running = false
    }
  }
  const loadOnce = async () => {
    const mine = seq
    try {
      const data = await api(apiQuery(f))
      if (closed) return
      if (mine !== seq) {
        again = true
        return
      }
      // A page past the end (an old link, the rows after it gone): the oldest page instead; a
      // page reached going back that has nothing newer before it: the first (live) page.
      if (data.items.length === 0 && data.total > 0 && !f.last) {
        moveTo(f, { last: true })
        writeFilters(f)
        again = true
        return
      }
      if (data.offset === 0 && (f.after || f.before || f.last || f.page > 1)) {
        moveTo(f, {})
        writeFilters(f)
        if (data.items.length < Math.min(data.limit, data.total)) {
          again = true
          return
        }
      }
      syncClock(data.now_ms)
      fill(message)
      renderChips(data)
      fill(summary, `${num(data.all)} tasks in all`)
      fill(tbody, data.items.length > 0 ? data.items.map(row) : h('tr', {}, h('td', { colspan: '7', class: 'empty' }, 'No task matches these filters.')))
      renderPager(data)
      if (!typesLoaded) loadTypes()
    } catch (err) {
      if (mine === seq && !closed) fill(message, errorBox(err))
    }
  }
  const reload = throttle(load, 1000)
  const change = () => {
    seq++
    moveTo(f, {})
    writeFilters(f)
    load()
  }

  function renderChips(data) {
    const total = TASK_STATUSES.reduce((s, k) => s + (data.counts[k] ?? 0), 0)
    const chip = (key, label, count) =>
      h(
        'button',
        {
          type: 'button',
          class: `chip ${key ? `st-${key}` : ''} ${(key ? f.status.includes(key) : f.status.length === 0) ? 'on' : ''}`,
          'data-status': key || 'all',
          'aria-pressed': String(key ? f.status.includes(key) : f.status.length === 0),
          onclick: () => {
            if (!key) f.status = []
            else f.status = f.status.includes(key) ? f.status.filter((s) => s !== key) : [...f.status, key]
            change()
          },
        },
        label,
        h('span', { class: 'count' }, num(count)),
      )
    fill(chips, chip('', 'all', total), TASK_STATUSES.map((s) => chip(s, s, data.counts[s] ?? 0)))
  }

  function renderPager(data) {
    const pages = Math.max(1, Math.ceil(data.total / data.limit))
    const first = data.items.length === 0 ? 0 : data.offset + 1
    const last = data.offset + data.items.length
    const page = Math.min(pages, Math.floor(data.offset / data.limit) + 1)
    const go = (where) => () => {
      seq++
      moveTo(f, where)
      writeFilters(f)
      load()
    }
    fill(
      pager,
      h('button', { type: 'button', disabled: data.prev === null, onclick: go({}), 'aria-label': 'first page' }, '«'),
      h('button', { type: 'button', disabled: data.prev === null, onclick: go({ after: data.prev }), rel: 'prev' }, '‹ prev'),
      h('span', { class: 'range' }, `${num(first)}–${num(last)} of ${num(data.total)}`, h('span', { class: 'muted' }, ` · page ${num(page)} of ${num(pages)}`)),
      h('button', { type: 'button', disabled: data.next === null, onclick: go({ before: data.next }), rel: 'next' }, 'next ›'),
      h('button', { type: 'button', disabled: data.next === null, onclick: go({ last: true }), 'aria-label': 'last page' }, '»'),
    )
  }

  typeSelect.addEventListener('change', () => {
    f.type = typeSelect.value
    change()
  })
  ageSelect.addEventListener('change', () => {
    f.age = ageSelect.value
    change()
  })
  let typing = null
  search.addEventListener('input', () => {
    clearTimeout(typing)
    typing = setTimeout(() => {
      f.q = search.value.trim()
      change()
    }, 250)
  })

  // The node types (asked again after a list that came while they could not be read: the store
  // still loading the task list answers 503).
  let typesAsked = false
  function loadTypes() {
    if (typesAsked) return
    typesAsked = true
    api('/api/types')
      .then((d) => {
        if (typesLoaded || closed) return
        typesLoaded = true
        for (const t of d.types) typeSelect.append(h('option', { value: t.type, selected: t.type === f.type }, `${t.type} (${num(t.tasks)})`))
        if (f.type && !d.types.some((t) => t.type === f.type)) typeSelect.append(h('option', { value: f.type, selected: true }, f.type))
      })
      .catch(() => undefined)
      .finally(() => {
        typesAsked = false
      })
  }
  loadTypes()

  const onTasks = () => reload()
  live.addEventListener('tasks', onTasks)
  // Relative times and durations move even when nothing else does.
  const clock = setInterval(reload, 15000)
  await load()
  return () => {
    closed = true
    live.removeEventListener('tasks', onTasks)
    clearInterval(clock)
  }
}
