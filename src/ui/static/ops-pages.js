// Workers (roles, capacity, last heartbeat/announce, runs in hand) and dead letters (outbox
// messages parked after their last send failed, each with a retry button). Both re-read when the
// shared live stream says workers or dead letters changed, and every 5 s for the relative times.
import { api, errorBox, fill, h, live, num, syncClock, throttle, timeCell, toast } from './util.js'


function livePage(root, title, intro, load, event) {
  const body = h('div', {}, h('p', { class: 'muted' }, 'Loading…'))
  fill(root, h('div', { class: 'page-head' }, h('h1', {}, title)), h('p', { class: 'muted' }, intro), body)
  let closed = false
  const run = async () => {
    try {
      const content = await load()
      if (!closed) fill(body, content)
    } catch (err) {
      if (!closed) fill(body, errorBox(err))
    }
  }
  const again = throttle(run, 1000)
  live.addEventListener(event, again)
  const timer = setInterval(again, 5000)
  run()
  return {
    refresh: run,
    stop: () => {
      closed = true
      live.removeEventListener(event, again)
      clearInterval(timer)
    },
  }
}

export async function workersPage(root) {
  const page = livePage(
    root,
    'Workers',
    'Workers that announced themselves: the roles (node types) they serve, how many nodes they run at once, and when the coordinator last heard from them.',
    async () => {
      const d = await api('/api/workers')
      syncClock(d.now_ms)
      if (d.workers.length === 0) return h('p', { class: 'empty' }, 'No worker has announced itself yet.')
      return h(
        'table',
        { class: 'grid workers' },
        h('thead', {}, h('tr', {}, ['Worker', 'Status', 'Roles', 'Capacity', 'Running', 'Last heard', 'Version'].map((c) => h('th', {}, c)))),
        h(
          'tbody',
          {},
          d.workers.map((w) => {
            // The server judges silence by the coordinator's liveness window (workerLivenessSec).
            const silent = w.silent === true
            return h(
              'tr',
              { 'data-worker-id': w.worker_id },
              h('td', { class: 'id' }, w.worker_id),
              h('td', {}, h('span', { class: `status st-${silent ? 'silent' : w.status}` }, silent ? 'silent' : w.status)),
              h('td', {}, w.roles.map((r) => h('span', { class: 'role' }, r))),
              h('td', {}, num(w.capacity)),
              h(
                'td',
                {},
                w.active_runs.length === 0
                  ? h('span', { class: 'muted' }, 'idle')
                  : h(
                      'details',
                      {},
                      h('summary', { title: silent ? 'as it last reported them: it has not been heard from since' : '' }, `${num(w.active_runs.length)} / ${num(w.capacity)}${silent ? ' (last reported)' : ''}`),
                      h(
                        'ul',
                        { class: 'runs' },
                        w.active_runs.map((r) => h('li', {}, h('a', { href: `/tasks/${encodeURIComponent(r.task_id)}` }, r.task_id), ` / ${r.node_id} (${r.step_type}, epoch ${r.attempt_epoch}) since `, timeCell(r.started_at_ms))),
                      ),
                    ),
              ),
              h('td', {}, timeCell(w.last_seen_ms)),
              h('td', {}, w.version),
            )
          }),
        ),
      )
    },
    'workers',
  )
  return page.stop
}

export async function deadLettersPage(root) {
  const retry = async (id, button) => {
    button.disabled = true
    try {
      const r = await api(`/api/dead-letters/${encodeURIComponent(id)}/retry`, { method: 'POST' })
      if (r.ok) toast('Queued for sending again.')
    } catch (err) {
      toast(err.message, 'error')
    }
    await page.refresh()
  }
  const page = livePage(
    root,
    'Dead letters',
    'Commands the coordinator could not send after its last attempt (its outbox parked them). Retry sends one again once the cause is fixed.',
    async () => {
      const d = await api('/api/dead-letters')
      syncClock(d.now_ms)
      if (d.items.length === 0) return h('p', { class: 'empty' }, 'No dead letter.')
      return h(
        'table',
        { class: 'grid dead-letters' },
        h('thead', {}, h('tr', {}, ['Message', 'Topic', 'Key', 'Attempts', 'Last error', 'Parked', '', ''].map((c) => h('th', {}, c)))),
        h(
          'tbody',
          {},
          d.items.map((r) => {
            const button = h('button', { type: 'button', class: 'retry', 'data-id': r.id }, 'Retry')
            button.addEventListener('click', () => retry(r.id, button))
            return h(
              'tr',
              { 'data-dead-letter-id': r.id },
              h('td', {}, r.msg_type ?? '?', h('div', { class: 'muted small' }, `${num(r.value_bytes)} bytes`)),
              h('td', {}, r.topic),
              h('td', {}, r.task_id ? h('a', { href: `/tasks/${encodeURIComponent(r.task_id)}` }, r.key ?? r.task_id) : (r.key ?? '')),
              h('td', {}, num(r.attempts)),
              h('td', { class: 'err', title: r.last_error ?? '' }, r.last_error ?? ''),
              h('td', {}, timeCell(r.updated_at_ms)),
              h('td', {}, h('details', {}, h('summary', {}, 'payload'), h('pre', { class: 'json' }, r.value_preview))),
              h('td', {}, button),
            )
          }),
        ),
      )
    },
    'workers',
  )
  return page.stop
}
