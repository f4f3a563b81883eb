// The task's DAG as SVG: laid out by dagre (vendored, left to right), nodes coloured by status,
// edges styled by how the child starts (ready: after the parent ends; first_batch / on_batch:
// streaming), routing edges dotted. Running nodes pulse and show batches/s; a streaming edge
// whose parent is running flows. Wheel zooms, drag pans, "fit" resets.
import dagre from './vendor/dagre.esm.js'
import { h, num, statsLine, svg } from './util.js'

const W = 184
const H = 60
/** Above this many nodes dagre takes too long in a browser: a plain layered layout instead. */
const DAGRE_MAX_NODES = 400
const STREAMING = new Set(['first_batch', 'on_batch'])
const KINDS = ['ready', 'first_batch', 'on_batch', 'on_success', 'on_failure']
/**
 * Least zoom (screen pixels per layout unit) a graph opens at: below it node labels cannot be
 * read, so a graph that would fit only smaller opens at this zoom on its first nodes (drag pans,
 * "fit" shows it whole, "find" goes to a node).
 */
const MIN_OPEN_ZOOM = 0.55

function cut(text, n) {
  return text.length > n ? `${text.slice(0, n - 1)}…` : text
}

function dagreLayout(graph) {
  const g = new dagre.graphlib.Graph({ multigraph: true })
  g.setGraph({ rankdir: 'LR', nodesep: 26, ranksep: 70, edgesep: 14, marginx: 20, marginy: 20 })
  g.setDefaultEdgeLabel(() => ({}))
  for (const n of graph.nodes) g.setNode(n.id, { width: W, height: H })
  graph.edges.forEach((e, i) => {
    g.setEdge(e.from, e.to, { width: STREAMING.has(e.kind) ? 60 : 0, height: 12 }, `e${i}`)
  })
  dagre.layout(g)
  const pos = new Map(graph.nodes.map((n) => [n.id, g.node(n.id)]))
  const edges = graph.edges.map((e, i) => g.edge({ v: e.from, w: e.to, name: `e${i}` })?.points ?? [])
  const info = g.graph()
  return { pos, edges, width: info.width ?? 0, height: info.height ?? 0 }
}

/** Ranks by longest path from a root; rows in graph order. Linear time, for very big graphs. */
function layeredLayout(graph) {
  const rank = new Map(graph.nodes.map((n) => [n.id, 0]))
  const out = new Map(graph.nodes.map((n) => [n.id, []]))
  const indeg = new Map(graph.nodes.map((n) => [n.id, 0]))
  for (const e of graph.edges) {
    if (!out.has(e.from) || !indeg.has(e.to)) continue
    out.get(e.from).push(e.to)
    indeg.set(e.to, indeg.get(e.to) + 1)
  }
  const queue = graph.nodes.filter((n) => indeg.get(n.id) === 0).map((n) => n.id)
  for (let i = 0; i < queue.length; i++) {
    const id = queue[i]
    for (const to of out.get(id)) {
      rank.set(to, Math.max(rank.get(to), rank.get(id) + 1))
      indeg.set(to, indeg.get(to) - 1)
      if (indeg.get(to) === 0) queue.push(to)
    }
  }
  const rows = new Map()
  const pos = new Map()
  for (const n of graph.nodes) {
    const r = rank.get(n.id)
    const row = rows.get(r) ?? 0
    rows.set(r, row + 1)
    pos.set(n.id, { x: 20 + W / 2 + r * (W + 70), y: 20 + H / 2 + row * (H + 18) })
  }
  const edges = graph.edges.map((e) => {
    const a = pos.get(e.from)
    const b = pos.get(e.to)
    return a && b ? [{ x: a.x + W / 2, y: a.y }, { x: b.x - W / 2, y: b.y }] : []
  })
  const width = Math.max(0, ...[...rank.values()].map((r) => 40 + (r + 1) * (W + 70)))
  const height = Math.max(0, ...[...rows.values()].map((c) => 40 + c * (H + 18)))
  return { pos, edges, width, height }
}

/** A smooth path through the layout's points. */
function pathOf(points) {
  if (points.length === 0) return ''
  let d = `M${points[0].x},${points[0].y}`
  for (let i = 1; i < points.length - 1; i++) {
    const p = points[i]
    const q = points[i + 1]
    d += ` Q${p.x},${p.y} ${(p.x + q.x) / 2},${(p.y + q.y) / 2}`
  }
  const last = points[points.length - 1]
  return `${d} L${last.x},${last.y}`
}

export class DagView {
  constructor(graph, { onSelect } = {}) {
    this.graph = graph
    this.onSelect = onSelect ?? (() => undefined)
    this.nodes = new Map()
    this.edges = []
    this.selected = null
    const big = graph.nodes.length > DAGRE_MAX_NODES
    const lay = big ? layeredLayout(graph) : dagreLayout(graph)
    this.box = { x: 0, y: 0, w: Math.max(lay.width, 200), h: Math.max(lay.height, 100) }
    this.full = { ...this.box }
    const defs = svg(
      'defs',
      {},
      KINDS.map((k) => svg('marker', { id: `arrow-${k}`, class: `arrow arrow-${k}`, viewBox: '0 0 10 10', refX: '9', refY: '5', markerWidth: '7', markerHeight: '7', orient: 'auto-start-reverse' }, svg('path', { d: 'M0,0 L10,5 L0,10 z' }))),
    )
    const edgeLayer = svg('g', { class: 'edges' })
    const nodeLayer = svg('g', { class: 'nodes' })
    graph.edges.forEach((e, i) => {
      const points = lay.edges[i]
      const g = svg('g', { class: `edge kind-${e.kind}`, 'data-from': e.from, 'data-to': e.to, 'data-kind': e.kind })
      g.append(svg('path', { d: pathOf(points), 'marker-end': `url(#arrow-${e.kind})` }), svg('title', {}, `${e.from} → ${e.to}: ${e.kind}${e.via === 'edges_ex' ? ` (edges_ex ${e.mode}/${e.trigger})` : ` (${e.via})`}`))
      if (e.kind !== 'ready' && points.length > 0) {
        const mid = points[Math.floor(points.length / 2)]
        g.append(svg('text', { class: 'edge-label', x: String(mid.x), y: String(mid.y - 5), 'text-anchor': 'middle' }, e.kind))
      }
      edgeLayer.append(g)
      this.edges.push({ edge: e, el: g })
    })
    for (const n of graph.nodes) {
      const p = lay.pos.get(n.id) ?? { x: 0, y: 0 }
      const title = svg('title', {}, '')
      const l1 = svg('text', { class: 'l1', x: '10', y: '19' }, cut(n.id, 24))
      const l2 = svg('text', { class: 'l2', x: '10', y: '35' }, cut(n.fn ? `fn ${n.fn}` : n.type, 28))
      const l3 = svg('text', { class: 'l3', x: '10', y: '51' }, '')
      const g = svg(
        'g',
        { class: 'node st-queued', 'data-node-id': n.id, transform: `translate(${p.x - W / 2},${p.y - H / 2})`, tabindex: '0', role: 'button', 'aria-label': `node ${n.id}` },
        svg('rect', { width: String(W), height: String(H), rx: '8' }),
        l1,
        l2,
        l3,
        title,
      )
      if (n.guarded) g.append(svg('text', { class: 'flag', x: String(W - 10), y: '19', 'text-anchor': 'end' }, 'when'))
      const pick = () => this.select(n.id, true)
      g.addEventListener('click', pick)
      g.addEventListener('keydown', (ev) => {
        if (ev.key === 'Enter' || ev.key === ' ') {
          ev.preventDefault()
          pick()
        }
      })
      nodeLayer.append(g)
      this.nodes.set(n.id, { spec: n, g, l3, title, status: 'queued' })
    }
    this.viewport = svg('g', { class: 'viewport' }, edgeLayer, nodeLayer)
    this.svg = svg('svg', { class: 'dag', role: 'img', 'aria-label': `task graph: ${graph.nodes.length} nodes, ${graph.edges.length} edges`, preserveAspectRatio: 'xMidYMid meet' }, defs, this.viewport)
    this.#applyBox()
    this.#panZoom()
    this.note = h('span', { class: 'muted', hidden: true }, 'zoomed in on the first nodes: drag to pan, "fit" for the whole graph')
    const listId = `dag-nodes-${Math.random().toString(36).slice(2)}`
    const find = h('input', { type: 'search', class: 'dag-find', placeholder: 'find node', list: listId, 'aria-label': 'find a node by id' })
    find.addEventListener('change', () => {
      if (this.nodes.has(find.value)) this.focusNode(find.value)
    })
    this.el = h(
      'div',
      { class: 'dag-wrap' },
      h(
        'div',
        { class: 'dag-tools' },
        big ? h('span', { class: 'muted' }, `${num(graph.nodes.length)} nodes: simple layered layout`) : null,
        this.note,
        graph.nodes.length > 12 ? [find, h('datalist', { id: listId }, graph.nodes.map((n) => h('option', { value: n.id })))] : null,
        h('button', { type: 'button', onclick: () => this.fit() }, 'fit'),
        legend(),
      ),
      this.svg,
    )
    // The frame takes the graph's proportions at the width it gets (no more than 1.2× zoom).
    this.svg.setAttribute('height', String(Math.min(640, Math.max(160, this.box.h))))
    this.opened = false
    new ResizeObserver(() => this.#fitHeight()).observe(this.el)
  }

  #fitHeight() {
    const width = this.svg.clientWidth
    if (width === 0) return
    const scale = Math.min(1.2, width / this.full.w)
    const height = Math.round(Math.min(700, Math.max(160, this.full.h * scale)))
    this.svg.setAttribute('height', String(height))
    if (!this.opened) {
      this.opened = true
      this.#openBox(width, height)
    }
  }

  /** The first view: the whole graph when it is legible so, else its start at a legible zoom. */
  #openBox(width, height) {
    if (Math.min(width / this.full.w, height / this.full.h) >= MIN_OPEN_ZOOM) return
    this.box = { x: this.full.x, y: this.full.y, w: width / MIN_OPEN_ZOOM, h: height / MIN_OPEN_ZOOM }
    this.#applyBox()
    this.note.hidden = false
  }

  /** Centres the view on node `id` (at a legible zoom) and selects it. */
  focusNode(id) {
    const n = this.nodes.get(id)
    if (!n) return
    const m = /translate\(([-\d.e]+),([-\d.e]+)\)/.exec(n.g.getAttribute('transform') ?? '')
    if (!m) return
    const r = this.svg.getBoundingClientRect()
    const zoom = Math.max(MIN_OPEN_ZOOM, Math.min(r.width / this.box.w, r.height / this.box.h))
    const w = (r.width || 800) / zoom
    const hgt = (r.height || 400) / zoom
    this.box = { x: Number(m[1]) + W / 2 - w / 2, y: Number(m[2]) + H / 2 - hgt / 2, w, h: hgt }
    this.#applyBox()
    this.select(id, true)
  }

  /** Node state: { status, attempt_epoch, batches_seen, stats, worker_id, last_error, rate, waiting_for_worker, suspected }. */
  update(id, s) {
    const n = this.nodes.get(id)
    if (!n) return
    n.status = s.status
    const flags = [s.waiting_for_worker ? 'waiting' : '', s.suspected ? 'suspected' : '', this.selected === id ? 'selected' : ''].filter(Boolean).join(' ')
    n.g.setAttribute('class', `node st-${s.status} ${flags}`.trim())
    n.g.setAttribute('data-status', s.status)
    let line = ''
    if (s.status === 'running' || s.status === 'cancelling') {
      line = `${num(s.batches_seen ?? 0)} batches${typeof s.rate === 'number' ? ` · ${s.rate.toFixed(1)}/s` : ''}`
      if (s.waiting_for_worker) line = 'waiting for a worker'
    } else if (s.status === 'failed' && s.last_error) line = s.last_error.reason_code
    else line = statsLine(s.stats) || (s.batches_seen ? `${num(s.batches_seen)} batches` : '')
    n.l3.textContent = cut(line, 30)
    n.title.textContent = `${id} (${n.spec.type}) ${s.status}, epoch ${s.attempt_epoch ?? 0}${s.worker_id ? `, on ${s.worker_id}` : ''}${s.last_error ? `\nlast error: ${s.last_error.reason_code}: ${s.last_error.error ?? ''}` : ''}`
    for (const e of this.edges) {
      if (e.edge.from !== id && e.edge.to !== id) continue
      const from = this.nodes.get(e.edge.from)
      const to = this.nodes.get(e.edge.to)
      const flowing = STREAMING.has(e.edge.kind) && from?.status === 'running' && to?.status === 'running'
      e.el.classList.toggle('flowing', flowing)
    }
  }

  select(id, notify = false) {
    if (this.selected) this.nodes.get(this.selected)?.g.classList.remove('selected')
    this.selected = id
    this.nodes.get(id)?.g.classList.add('selected')
    if (notify) this.onSelect(id)
  }

  fit() {
    this.box = { ...this.full }
    this.#applyBox()
    this.note.hidden = true
  }

  #applyBox() {
    const b = this.box
    this.svg.setAttribute('viewBox', `${b.x} ${b.y} ${b.w} ${b.h}`)
  }

  #panZoom() {
    let drag = null
    this.svg.addEventListener(
      'wheel',
      (ev) => {
        ev.preventDefault()
        const r = this.svg.getBoundingClientRect()
        const k = ev.deltaY > 0 ? 1.15 : 1 / 1.15
        const fx = (ev.clientX - r.left) / r.width
        const fy = (ev.clientY - r.top) / r.height
        const b = this.box
        const w = Math.min(this.full.w * 4, Math.max(120, b.w * k))
        const hgt = (w / b.w) * b.h
        this.box = { x: b.x + (b.w - w) * fx, y: b.y + (b.h - hgt) * fy, w, h: hgt }
        this.#applyBox()
      },
      { passive: false },
    )
    this.svg.addEventListener('pointerdown', (ev) => {
      if (ev.target.closest?.('.node')) return
      drag = { x: ev.clientX, y: ev.clientY, box: { ...this.box } }
      this.svg.setPointerCapture(ev.pointerId)
    })
    this.svg.addEventListener('pointermove', (ev) => {
      if (!drag) return
      const r = this.svg.getBoundingClientRect()
      const scale = Math.max(drag.box.w / r.width, drag.box.h / r.height)
      this.box = { ...drag.box, x: drag.box.x - (ev.clientX - drag.x) * scale, y: drag.box.y - (ev.clientY - drag.y) * scale }
      this.#applyBox()
    })
    this.svg.addEventListener('pointerup', () => {
      drag = null
    })
  }
}

function legend() {
  const item = (cls, text) => h('span', { class: `legend-item ${cls}` }, h('i'), text)
  return h(
    'div',
    { class: 'legend' },
    ['queued', 'running', 'deferred', 'finished', 'failed', 'cancelling', 'cancelled', 'skipped'].map((s) => item(`st-${s}`, s === 'deferred' ? 'deferred (retry waits)' : s)),
    h('span', { class: 'legend-edge kind-ready' }, h('i'), 'after parent ends'),
    h('span', { class: 'legend-edge kind-on_batch' }, h('i'), 'streaming (first_batch / on_batch)'),
    h('span', { class: 'legend-edge kind-on_failure' }, h('i'), 'routing'),
  )
}
