/**
 * The dashboard's browser files ship in the package and load nothing from elsewhere: every module
 * import is a relative file that exists, no URL points off the server, and the vendored dagre is
 * the installed @dagrejs/dagre build.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, readFileSync, readdirSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { installedDagre, vendoredText } from '../../src/ui/vendor.ts'
import { staticRoot } from '../../src/ui/static-files.ts'

const root = resolve(import.meta.dirname, '..', '..')
const dir = staticRoot()

test('assets: the static folder is the one in src/ui, shipped by package.json "files"', () => {
  assert.equal(dir, join(root, 'src', 'ui', 'static'))
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { files: string[]; devDependencies: Record<string, string> }
  assert.ok(pkg.files.includes('src'), 'package.json "files" ships src (src/ui/static with it)')
  assert.equal(typeof pkg.devDependencies['@dagrejs/dagre'], 'string')
  assert.equal(typeof pkg.devDependencies['playwright-core'], 'string')
})

test('assets: module imports are relative files that exist; nothing is loaded from another origin', () => {
  const files = readdirSync(dir).filter((f) => /\.(js|html|css)$/.test(f))
  assert.ok(files.includes('app.js') && files.includes('index.html') && files.includes('style.css'))
  for (const f of files) {
    const text = readFileSync(join(dir, f), 'utf8')
    const offsite = [...text.matchAll(/https?:\/\/[^\s'")]+/g)].map((m) => m[0]).filter((u) => u !== 'http://www.w3.org/2000/svg')
    assert.deepEqual(offsite, [], `${f} names no other origin`)
    for (const m of text.matchAll(/\bfrom\s+'([^']+)'/g)) {
      const spec = m[1] as string
      assert.match(spec, /^\.\/[\w./-]+\.js$/, `${f}: import ${spec} is a relative .js file`)
      assert.ok(existsSync(join(dir, spec)), `${f}: ${spec} exists`)
    }
  }
  const html = readFileSync(join(dir, 'index.html'), 'utf8')
  for (const m of html.matchAll(/(?:src|href)="([^"]+)"/g)) {
    const ref = m[1] as string
    if (!ref.startsWith('/assets/')) continue
    assert.ok(existsSync(join(dir, ref.slice('/assets/'.length))), `index.html: ${ref} exists`)
  }
  assert.doesNotMatch(html, /<script>(?!<\/script>)/, 'no inline script (the CSP forbids it)')
})

test('assets: the vendored dagre is the installed @dagrejs/dagre build, and lays out a graph', async () => {
  const vendored = readFileSync(join(dir, 'vendor', 'dagre.esm.js'), 'utf8')
  const installed = installedDagre()
  assert.ok(installed !== null, '@dagrejs/dagre is installed (a dev dependency)')
  assert.equal(vendored, vendoredText(installed.version, installed.esm), 'src/ui/static/vendor/dagre.esm.js is stale: run node --conditions=flowkit-source src/ui/vendor.ts')
  assert.equal(readFileSync(join(dir, 'vendor', 'dagre.LICENSE.txt'), 'utf8'), installed.license)
  const dagre = (await import('../../src/ui/static/vendor/dagre.esm.js' as string)) as { default: { graphlib: { Graph: new () => DagreGraph }; layout(g: DagreGraph): void } }
  const g = new dagre.default.graphlib.Graph()
  g.setGraph({ rankdir: 'LR' })
  g.setDefaultEdgeLabel(() => ({}))
  for (const id of ['a', 'b', 'c']) g.setNode(id, { width: 100, height: 40 })
  g.setEdge('a', 'b')
  g.setEdge('b', 'c')
  dagre.default.layout(g)
  const xs = ['a', 'b', 'c'].map((id) => g.node(id).x)
  assert.ok((xs[0] as number) < (xs[1] as number) && (xs[1] as number) < (xs[2] as number), `left to right: ${xs.join(', ')}`)
})

interface DagreGraph {
  setGraph(g: Record<string, unknown>): void
  setDefaultEdgeLabel(f: () => Record<string, unknown>): void
  setNode(id: string, v: Record<string, unknown>): void
  setEdge(a: string, b: string): void
  node(id: string): { x: number; y: number }
}
