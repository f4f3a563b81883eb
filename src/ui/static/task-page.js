// Task page: header and actions (cancel, resubmit), the DAG, the selected node's details, every
// node in a table, task variables, params, result and output. Live from the task's event
// stream (/api/tasks/:id/events): node and task transitions as they become durable, progress
// (batches seen) about once a second, from which each running node's batches/s is derived.
import { DagView } from './dag.js'
import { nodePanel } from './node-panel.js'
import { ACTIVE, api, badge, duration, errorBox, fill, h, json, nav, num, statsLine, syncClock, throttle, timeCell, toast } from './util.js'

const TABLE_MAX = 1000

/** batches/s of one node, smoothed: updated on every progress event. */
function nextRate(prev, batches, atMs, status) {
  if (status !== 'running' && status !== 'cancelling') return { t: atMs, b: batches, rate: undefined }
  if (!prev || batches < prev.b || atMs <= prev.t) return { t: atMs, b: batches, rate: prev && batches >= prev.b ? prev.rate : undefined }
  const inst = (batches - prev.b) / ((atMs - prev.t) / 1000)
  return { t: atMs, b: batches, rate: prev.rate === undefined ? inst : 0.5 * prev.rate + 0.5 * inst }
}

export async function taskPage(root, id) {
  let data = await api(`/api/tasks/${encodeURIComponent(id)}`)
  syncClock(data.now_ms)
  const specs = new Map(data.task.nodes.map((n) => [n.node_id, n]))
  const state = new Map(data.task.nodes.map((n) => [n.node_id, { ...n, worker_id: n.lease?.worker_id ?? null }]))
  const rates = new Map()
  let task = data.task
  let selected = null
  let refreshPanel = null
  let es = null
  let closed = false

  const head = h('div', { class: 'task-head' })
  const panel = h('section', { class: 'panel node-panel' }, h('p', { class: 'muted' }, 'Click a node to see its attempts, artifacts and batches.'))
  const nodesBody = h('tbody')
  const extras = h('div', { class: 'extras' })
  // Why live updates stopped (the task is gone, the session ended): empty while they flow.
  const notice = h('div', { class: 'stream-notice' })
  const dag = new DagView(data.graph, { onSelect: (nid) => selectNode(nid) })

  fill(
    root,
    head,
    notice,
    h('div', { class: 'task-main' }, h('section', { class: 'panel dag-panel' }, dag.el), panel),
    h(
      'section',
      { class: 'panel' },
      h('h2', {}, 'Nodes'),
      h(
        'table',
        { class: 'grid nodes' },
        h('thead', {}, h('tr', {}, ['Node', 'Type', 'Status', 'Epoch', 'Failures', 'Worker', 'Batches', 'Rate', 'Stats', 'Last error'].map((c) => h('th', {}, c)))),
        nodesBody,
      ),
      data.task.nodes.length > TABLE_MAX ? h('p', { class: 'muted' }, `First ${TABLE_MAX} of ${num(data.task.nodes.length)} nodes.`) : null,
    ),
    extras,
  )

  function renderHead() {
    const t = task
    const active = ACTIVE.has(t.status)
    const end = t.finished_at_ms ?? (active ? null : t.updated_at_ms)
    fill(
      head,
      h('div', { class: 'crumbs' }, h('a', { href: '/' }, 'Tasks'), ' / '),
      h(
        'div',
        { class: 'title-row' },
        h('h1', {}, h('code', { class: 'task-id' }, t.id)),
        badge(t.status, 'big'),
        h(
          'div',
          { class: 'actions' },
          active ? h('button', { type: 'button', class: 'danger', id: 'cancel-task', onclick: cancel }, t.status === 'cancelling' ? 'Cancelling…' : 'Cancel task') : null,
          h('button', { type: 'button', id: 'resubmit-task', onclick: resubmit }, 'Resubmit'),
        ),
      ),
      h(
        'div',
        { class: 'meta-row' },
        h('span', {}, 'created ', timeCell(t.created_at_ms)),
        end ? h('span', {}, 'ended ', timeCell(end), ` after ${duration(end - t.created_at_ms)}`) : h('span', {}, 'updated ', timeCell(t.updated_at_ms)),
        data.deadline_at_ms ? h('span', {}, 'deadline ', timeCell(data.deadline_at_ms)) : null,
        h('span', {}, `${num(t.nodes.length)} nodes`),
      ),
      t.error ? h('div', { class: 'error-box', id: 'task-error' }, t.error) : null,
      // (A failed task's other nodes were stopped because it failed: its error says why, not a cancel.)
      t.cancelled && data.cancel_reason && t.status !== 'failed' ? h('div', { class: 'note' }, `cancel reason: ${data.cancel_reason}`) : null,
    )
  }

  function nodeRow(nid) {
    const s = state.get(nid)
    const r = rates.get(nid)?.rate
    return h(
      'tr',
      { 'data-node-id': nid, class: selected === nid ? 'selected' : '' },
      h('td', {}, h(
          'a',
          {
            href: '#',
            onclick: (e) => {
              e.preventDefault()
              selectNode(nid)
            },
          },
          nid,
        )),
      h('td', {}, s.type),
      h('td', {}, badge(s.status), s.waiting_for_worker ? h('span', { class: 'warn-text', title: 'no live worker serves this type' }, ' ⚠') : null),
      h('td', {}, num(s.attempt_epoch ?? 0)),
      h('td', {}, s.failures ? num(s.failures) : ''),
      h('td', {}, s.worker_id ?? ''),
      h('td', {}, num(s.batches_seen ?? 0)),
      h('td', {}, typeof r === 'number' && s.status === 'running' ? `${r.toFixed(1)}/s` : ''),
      h('td', { class: 'stats' }, statsLine(s.stats)),
      h('td', { class: 'err', title: s.last_error?.error ?? '' }, s.last_error ? `${s.last_error.reason_code}${s.last_error.error ? `: ${s.last_error.error}` : ''}` : ''),
    )
  }

  function renderNodes() {
    fill(nodesBody, [...state.keys()].slice(0, TABLE_MAX).map(nodeRow))
  }

  function updateNode(nid) {
    const s = state.get(nid)
    if (!s) return
    dag.update(nid, { ...s, rate: rates.get(nid)?.rate })
    const old = nodesBody.querySelector(`tr[data-node-id="${CSS.escape(nid)}"]`)
    if (old) old.replaceWith(nodeRow(nid))
    if (selected === nid) panelSoon()
  }

  const panelSoon = throttle(() => refreshPanel?.(), 1500)

  function selectNode(nid) {
    selected = nid
    dag.select(nid)
    for (const tr of nodesBody.querySelectorAll('tr.selected')) tr.classList.remove('selected')
    nodesBody.querySelector(`tr[data-node-id="${CSS.escape(nid)}"]`)?.classList.add('selected')
    refreshPanel = nodePanel(panel, id, nid, () => ({ node: specs.get(nid), live: { ...state.get(nid), rate: rates.get(nid)?.rate } }))
  }

  function renderExtras(output) {
    const t = task
    fill(
      extras,
      h('section', { class: 'panel' }, h('h2', {}, 'Task variables'), Object.keys(t.vars ?? {}).length > 0 ? json(t.vars) : h('p', { class: 'muted' }, 'No variables.')),
      h('section', { class: 'panel' }, h('h2', {}, 'Params'), json(t.params)),
      t.result !== null && t.result !== undefined ? h('section', { class: 'panel' }, h('h2', {}, 'Result'), json(t.result)) : null,
      output && output.length > 0
        ? h(
            'section',
            { class: 'panel' },
            h('h2', {}, 'Output (final artifacts of the sink nodes)'),
            output.map((o) => h('div', {}, h('h3', {}, h('span', { class: 'as-is' }, o.node_id), o.artifact ? ` · epoch ${o.artifact.attempt_epoch}` : ''), o.artifact ? h('pre', { class: 'json' }, o.artifact.meta.json) : h('p', { class: 'muted' }, 'no artifact'))),
          )
        : null,
    )
  }

  /** Reads the whole task again (variables, result, output): after it ends, and now and then. */
  const reread = throttle(async () => {
    try {
      data = await api(`/api/tasks/${encodeURIComponent(id)}`)
      task = data.task
      renderHead()
      let output = null
      if (task.status === 'finished') output = (await api(`/api/tasks/${encodeURIComponent(id)}/output`)).outputs
      if (!closed) renderExtras(output)
    } catch {
      // the stream goes on; the next reread tries again
    }
  }, 2000)

  /** Runs `fn` with the button disabled (a second click while the request runs does nothing). */
  async function busy(buttonId, fn) {
    const b = document.getElementById(buttonId)
    if (b?.disabled) return
    if (b) b.disabled = true
    try {
      await fn()
    } finally {
      if (b) b.disabled = false
    }
  }

  async function cancel() {
    if (!window.confirm(`Cancel task ${id}? Running nodes are asked to stop.`)) return
    await busy('cancel-task', cancelNow)
  }

  async function cancelNow() {
    try {
      const r = await api(`/api/tasks/${encodeURIComponent(id)}/cancel`, { method: 'POST', body: { reason: 'cancelled from the dashboard' } })
      toast(r.ok ? 'Cancel requested.' : 'Not cancelled: the task had already ended, or is stopping because it failed.')
    } catch (err) {
      toast(err.message, 'error')
    }
  }

  async function resubmit() {
    if (!window.confirm(`Submit task ${id} again, as a new task (same graph and params)?`)) return
    await busy('resubmit-task', resubmitNow)
  }

  async function resubmitNow() {
    try {
      const r = await api(`/api/tasks/${encodeURIComponent(id)}/resubmit`, { method: 'POST' })
      toast(`Submitted as ${r.id}.`)
      nav.go(`/tasks/${encodeURIComponent(r.id)}`)
    } catch (err) {
      toast(err.message, 'error')
    }
  }

  function merge(nid, patch) {
    const cur = state.get(nid)
    if (!cur) return
    state.set(nid, { ...cur, ...patch })
  }

  function connect() {
    es = new EventSource(`/api/tasks/${encodeURIComponent(id)}/events`)
    es.addEventListener('snapshot', (e) => {
      const d = JSON.parse(e.data)
      task = { ...task, ...d.task }
      for (const n of d.task.nodes) merge(n.node_id, { ...n, worker_id: n.lease?.worker_id ?? null })
      renderHead()
      renderNodes()
      for (const nid of state.keys()) dag.update(nid, { ...state.get(nid), rate: rates.get(nid)?.rate })
    })
    es.addEventListener('node', (e) => {
      const d = JSON.parse(e.data)
      merge(d.node_id, { status: d.status, attempt_epoch: d.attempt_epoch, stats: d.stats, last_error: d.last_error, worker_id: d.worker_id })
      updateNode(d.node_id)
    })
    es.addEventListener('progress', (e) => {
      const d = JSON.parse(e.data)
      const seen = new Set()
      for (const n of d.nodes) {
        seen.add(n.node_id)
        merge(n.node_id, n)
        rates.set(n.node_id, nextRate(rates.get(n.node_id), n.batches_seen ?? 0, d.at_ms, n.status))
        updateNode(n.node_id)
      }
      for (const [nid, s] of state) {
        if (seen.has(nid) || s.status !== 'running') continue
        rates.set(nid, nextRate(rates.get(nid), s.batches_seen ?? 0, d.at_ms, s.status))
        updateNode(nid)
      }
      if (d.status !== task.status) {
        task = { ...task, status: d.status }
        renderHead()
      }
    })
    es.addEventListener('task', (e) => {
      const d = JSON.parse(e.data)
      task = { ...task, status: d.status, error: d.error }
      renderHead()
      reread()
    })
    es.addEventListener('end', () => {
      es.close()
      reread()
    })
    es.addEventListener('open', () => fill(notice))
    es.addEventListener('error', () => {
      // The browser retries a dropped stream by itself, but gives up on an answer that is not a
      // stream (404: the task is gone; 401: the session ended): say why instead of going quiet.
      if (!closed && es.readyState === EventSource.CLOSED) void streamLost()
    })
    es.addEventListener('failure', (e) => {
      es.close()
      fill(extras, errorBox(JSON.parse(e.data).error))
    })
  }

  /** The task's stream was refused: shows why, and streams again while the task is there. */
  async function streamLost() {
    try {
      await api(`/api/tasks/${encodeURIComponent(id)}`)
    } catch (err) {
      if (closed) return
      const gone = err.status === 404
      const signedOut = err.status === 401
      fill(
        notice,
        errorBox(
          gone
            ? 'This task is no longer in the store (deleted, or the dev runtime restarted): what is shown is its last known state.'
            : signedOut
              ? 'Live updates stopped: this session is not signed in any more (the dashboard token changed?). Reload the page to sign in.'
              : `Live updates stopped: ${err.message}. Trying again…`,
        ),
      )
      if (gone || signedOut) return
    }
    setTimeout(() => {
      if (!closed) connect()
    }, 3000)
  }

  renderHead()
  renderNodes()
  for (const nid of state.keys()) dag.update(nid, state.get(nid))
  renderExtras(null)
  if (task.status === 'finished') reread()
  const firstBusy = [...state.values()].find((s) => s.status === 'failed') ?? [...state.values()].find((s) => s.status === 'running')
  if (firstBusy) selectNode(firstBusy.node_id)
  connect()
  return () => {
    closed = true
    es?.close()
  }
}
