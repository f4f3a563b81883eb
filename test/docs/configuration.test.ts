/**
 * docs/configuration.md lists every config key of the Coordinator and the Worker (a key added to
 * the defaults without a line in the reference fails here), and names no key that does not exist.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { COORDINATOR_DEFAULTS, WORKER_DEFAULTS } from 'flowkit'

const doc = readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8')

/** The text of the section under `## title`, up to the next `## `. */
function section(title: string): string {
  const start = doc.indexOf(`\n## ${title}\n`)
  assert.ok(start >= 0, `docs/configuration.md has no "## ${title}" section`)
  const end = doc.indexOf('\n## ', start + 1)
  return doc.slice(start, end < 0 ? undefined : end)
}

/** Backquoted camelCase identifiers of the section's table rows (first and last columns). */
function keysNamed(text: string): Set<string> {
  const out = new Set<string>()
  for (const line of text.split('\n')) {
    if (!line.startsWith('| ')) continue
    const cells = line.split(' | ')
    for (const cell of [cells[0] as string, cells[cells.length - 1] as string]) {
      for (const m of cell.matchAll(/`([a-z][A-Za-z]+)`/g)) out.add(m[1] as string)
    }
  }
  return out
}

for (const [title, defaults] of [['Coordinator', COORDINATOR_DEFAULTS], ['Worker', WORKER_DEFAULTS]] as const) {
  test(`docs/configuration.md: every ${title.toLowerCase()} config key, and only those`, () => {
    const named = keysNamed(section(title))
    const keys = Object.keys(defaults)
    assert.deepEqual(keys.filter((k) => !named.has(k)), [], `${title} keys missing from docs/configuration.md`)
    // First-column keys that are not config keys (a renamed or removed key left in the doc).
    const rows = section(title).split('\n').filter((l) => l.startsWith('| `'))
    const firstColumn = rows.map((l) => /^\| `([A-Za-z]+)`/.exec(l)?.[1]).filter((k): k is string => k !== undefined)
    assert.deepEqual(firstColumn.filter((k) => !keys.includes(k)), [], `${title} rows naming no config key`)
  })
}
