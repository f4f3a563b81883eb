// The dashboard's entry: a small client-side router over four pages, and the live stream shared
// by every page (/api/events) that keeps the navigation counts current.
import { deadLettersPage, workersPage } from './ops-pages.js'
import { taskPage } from './task-page.js'
import { tasksPage } from './tasks-page.js'
import { errorBox, fill, h, live, nav, num } from './util.js'

const app = document.getElementById('app')
let cleanup = null

function route(path) {
  if (path === '/' || path === '') return { name: 'tasks', page: tasksPage }
  const m = /^\/tasks\/([^/]+)\/?$/.exec(path)
  if (m) return { name: 'tasks', page: (root) => taskPage(root, decodeURIComponent(m[1])) }
  if (path === '/workers') return { name: 'workers', page: workersPage }
  if (path === '/dead-letters') return { name: 'dead-letters', page: deadLettersPage }
  return { name: '', page: async (root) => fill(root, h('h1', {}, 'Not found'), h('p', {}, h('a', { href: '/' }, 'Back to the tasks'))) }
}

async function render() {
  if (cleanup) cleanup()
  cleanup = null
  const { name, page } = route(location.pathname)
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.dataset.nav === name)
  const root = h('div', { class: 'page' })
  fill(app, root)
  try {
    const c = await page(root)
    if (typeof c === 'function') cleanup = c
  } catch (err) {
    fill(root, errorBox(err))
  }
}

nav.go = (path, options = {}) => {
  history[options.replace ? 'replaceState' : 'pushState'](null, '', path)
  window.scrollTo(0, 0)
  return render()
}

document.addEventListener('click', (e) => {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return
  const a = e.target.closest?.('a[href]')
  if (!a || a.target || a.hasAttribute('download')) return
  const url = new URL(a.href)
  if (url.origin !== location.origin || url.pathname.startsWith('/api/') || url.pathname.startsWith('/assets/')) return
  e.preventDefault()
  nav.go(url.pathname + url.search)
})
window.addEventListener('popstate', render)

function setBadge(id, text, title) {
  const el = document.getElementById(id)
  if (!el) return
  el.textContent = text
  el.title = title ?? ''
  el.hidden = text === ''
}

function connect() {
  const indicator = document.getElementById('live')
  const es = new EventSource('/api/events')
  es.addEventListener('open', () => {
    indicator.classList.add('on')
    indicator.title = 'live updates: connected'
  })
  es.addEventListener('error', () => {
    indicator.classList.remove('on')
    if (es.readyState !== EventSource.CLOSED) {
      indicator.title = 'live updates: reconnecting…'
      return
    }
    // Refused (401: the session ended), which the browser does not retry: this does, now and then.
    indicator.title = 'live updates: stopped (reload the page if this lasts)'
    setTimeout(connect, 5000)
  })
  es.addEventListener('tasks', (e) => {
    const d = JSON.parse(e.data)
    const active = (d.counts.queued ?? 0) + (d.counts.running ?? 0) + (d.counts.cancelling ?? 0)
    setBadge('nav-tasks', active > 0 ? num(active) : '', `${num(active)} active of ${num(d.all)} tasks`)
    live.dispatchEvent(new CustomEvent('tasks', { detail: d }))
  })
  es.addEventListener('workers', (e) => {
    const d = JSON.parse(e.data)
    setBadge('nav-workers', d.workers > 0 ? `${d.online}/${d.workers}` : '', `${d.online} online of ${d.workers} workers${d.silent > 0 ? `, ${d.silent} silent` : ''}`)
    setBadge('nav-dead', d.dead_letters > 0 ? num(d.dead_letters) : '', `${d.dead_letters} dead letters`)
    live.dispatchEvent(new CustomEvent('workers', { detail: d }))
  })
}

connect()
render()
