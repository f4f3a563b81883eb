/**
 * The README's "Documentation" section: its builder example runs and type-checks, and its links
 * (and those of docs/handlers.md and docs/protocol.md) point at files and headings that exist.
 * 5-10 s here (one Node startup, a type check).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { runExample, typecheckExamples, writeExamples } from './examples.ts'
import { brokenLinks, codeBlocks, readDoc, section } from './markdown.ts'

const docs = section(readDoc('README.md'), 'Documentation')
const blocks = codeBlocks(docs).filter((b) => b.lang === 'ts')
const { files, cleanup } = writeExamples('readme', blocks)
test.after(cleanup)

test('README Documentation: the builder example prints a graph createTask accepts', async () => {
  assert.equal(files.length, 1)
  const r = await runExample((files[0] as (typeof files)[number]).runFile)
  assert.equal(r.code, 0, r.stderr)
  const g = JSON.parse(r.stdout) as { nodes: { node_id: string; depends_on?: string[] }[] }
  assert.deepEqual(
    g.nodes.map((n) => [n.node_id, n.depends_on ?? []]),
    [
      ['read', []],
      ['enrich', ['read']],
      ['write', ['enrich']],
      ['total', ['enrich']],
    ],
  )
  const { BUILTIN_FUNCTIONS, parseGraph } = await import('flowkit')
  parseGraph(g, { coordinatorFns: new Set(Object.keys(BUILTIN_FUNCTIONS)) }) // throws if a coordinator would refuse it
})

test('README Documentation: the builder example type-checks', () => {
  const errors = typecheckExamples(files.map((f) => f.file))
  assert.deepEqual(errors, [], errors.join('\n'))
})

test('README Documentation, docs/handlers.md, docs/protocol.md: every relative link resolves', () => {
  const broken = [
    ...brokenLinks('README.md', docs).map((l) => `README.md: ${l}`),
    ...brokenLinks('docs/handlers.md').map((l) => `docs/handlers.md: ${l}`),
    ...brokenLinks('docs/protocol.md').map((l) => `docs/protocol.md: ${l}`),
  ]
  assert.deepEqual(broken, [])
  for (const doc of ['graph-format', 'handlers', 'protocol', 'cli', 'dashboard', 'fault-handling', 'limits', 'observability']) {
    assert.match(docs, new RegExp(`\\]\\(docs/${doc}\\.md\\)`), `README Documentation links docs/${doc}.md`)
  }
  assert.match(docs, /npm run docs:api/)
})
