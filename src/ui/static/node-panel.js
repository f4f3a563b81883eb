// The selected node's details on the task page: state, attempts (every epoch: workers, batches,
// artifacts, the last failure's reason), the artifacts and batch metrics of the attempt that counts, its checkpoint.
import { api, badge, duration, errorBox, fill, h, json, num, timeCell } from './util.js'

function dl(rows) {
  return h(
    'dl',
    { class: 'kv' },
    rows.filter(([, v]) => v !== undefined && v !== null && v !== '').map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]),
  )
}

function table(cols, rows, empty) {
  if (rows.length === 0) return h('p', { class: 'muted' }, empty)
  return h('table', { class: 'grid small' }, h('thead', {}, h('tr', {}, cols.map((c) => h('th', {}, c)))), h('tbody', {}, rows.map((r) => h('tr', {}, r.map((c) => h('td', {}, c))))))
}

export function nodeState(node, live) {
  const s = { ...node, ...live }
  const rate = typeof s.rate === 'number' && (s.status === 'running' || s.status === 'cancelling') ? `${s.rate.toFixed(2)} batches/s` : null
  return dl([
    ['status', h('span', {}, badge(s.status), s.waiting_for_worker ? h('span', { class: 'warn-text' }, ' waiting for a worker of this type') : null, s.suspected ? h('span', { class: 'warn-text' }, ' no heartbeat lately') : null)],
    ['type', s.type],
    ['attempt epoch', num(s.attempt_epoch ?? 0)],
    ['failed attempts', num(s.failures ?? 0)],
    ['hand-backs', s.handbacks ? num(s.handbacks) : null],
    ['lost with their worker', s.lost_attempts ? num(s.lost_attempts) : null],
    ['start resends', s.resends ? num(s.resends) : null],
    ['lease holder', s.worker_id ?? s.lease?.worker_id ?? null],
    ['lease expires', s.lease_expires_at_ms && s.status === 'running' ? timeCell(s.lease_expires_at_ms) : null],
    ['batches', num(s.batches_seen ?? 0)],
    ['rate', rate],
    ['dispatched', s.dispatched_at_ms ? timeCell(s.dispatched_at_ms) : null],
    ['accepted', s.accepted_at_ms ? timeCell(s.accepted_at_ms) : null],
    ['finished', s.finished_at_ms ? timeCell(s.finished_at_ms) : null],
    ['ran for', s.accepted_at_ms && s.finished_at_ms ? duration(s.finished_at_ms - s.accepted_at_ms) : null],
    ['next retry', s.next_retry_at_ms ? timeCell(s.next_retry_at_ms) : null],
    ['end reason', s.end_reason],
    ['depends on', (s.depends_on ?? []).join(', ')],
    ['fan-in', s.fan_in],
  ])
}

function lastError(e) {
  if (!e) return null
  return h(
    'div',
    { class: 'error-box' },
    h('strong', {}, e.reason_code),
    e.permanent ? ' (permanent)' : ' (transient)',
    ` at epoch ${e.attempt_epoch}, `,
    timeCell(e.at_ms),
    e.error ? h('pre', {}, e.error) : null,
  )
}

/** Renders the panel for `nodeId` into `el`; returns a refresh function. */
export function nodePanel(el, taskId, nodeId, getState) {
  let seq = 0
  const head = h('div')
  const body = h('div', {}, h('p', { class: 'muted' }, 'Loading…'))
  fill(el, h('h2', {}, 'Node ', h('code', {}, nodeId)), head, body)
  const refresh = async () => {
    const mine = ++seq
    const { node, live } = getState()
    fill(head, node ? nodeState(node, live) : null, lastError(live?.last_error ?? node?.last_error), h('h3', {}, 'Metrics (stats)'), json(live?.stats ?? node?.stats ?? {}))
    try {
      const d = await api(`/api/tasks/${encodeURIComponent(taskId)}/nodes/${encodeURIComponent(nodeId)}`)
      if (mine !== seq) return
      fill(
        body,
        h('h3', {}, 'Attempts'),
        table(
          ['epoch', 'worker', 'batches', 'partial', 'complete', 'failed', 'first', 'last', 'error'],
          d.attempts.map((a) => [num(a.attempt_epoch), a.workers.join(', '), num(a.batches), num(a.partial), num(a.complete), num(a.failed), a.first_ms ? timeCell(a.first_ms) : '', a.last_ms ? timeCell(a.last_ms) : '', a.error ? a.error.reason_code : '']),
          'Not dispatched yet.',
        ),
        h('h3', {}, `Artifacts (${num(d.artifacts.total)}${d.artifacts.total > d.artifacts.items.length ? `, newest ${d.artifacts.items.length}` : ''})`),
        table(
          ['batch', 'status', 'epoch', 'updated', 'meta'],
          d.artifacts.items.map((a) => [a.batch_uid ?? '(complete)', a.status, num(a.attempt_epoch), timeCell(a.updated_at), h('code', { class: 'meta', title: `${num(a.meta.bytes)} bytes, written by ${a.worker_id ?? '?'}` }, a.meta.json)]),
          'No artifact.',
        ),
        h('h3', {}, `Batches (${num(d.batches.total)}${d.batches.total > d.batches.items.length ? `, last ${d.batches.items.length}` : ''})`),
        table(
          ['batch', 'epoch', 'metrics'],
          d.batches.items.map((b) => [b.batch_uid === '__final__' ? '(final metrics)' : b.batch_uid, num(b.attempt_epoch), h('code', { class: 'meta' }, JSON.stringify(b.metrics))]),
          'No batch reported.',
        ),
        d.checkpoint ? [h('h3', {}, 'Checkpoint'), dl([['epoch', num(d.checkpoint.attempt_epoch)], ['saved', timeCell(d.checkpoint.saved_at_ms)]]), h('code', { class: 'meta' }, d.checkpoint.state.json)] : null,
      )
    } catch (err) {
      if (mine === seq) fill(body, errorBox(err))
    }
  }
  refresh()
  return refresh
}
