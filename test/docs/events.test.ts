/**
 * docs/observability.md lists every event name flowkit logs, and only those. The names are read
 * from the sources: string literals shaped like an event (`<area>.<name>`, area one of the event
 * prefixes), less the few such literals that are not events (NOT_EVENTS). The CLI's `--json`
 * output lines (`dev.ready`, …) are documented in docs/cli.md.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { COORDINATOR_DEFAULTS, WORKER_DEFAULTS } from 'flowkit'
import { ROOT } from './markdown.ts'

const AREAS = ['task', 'node', 'worker', 'coordinator', 'event', 'bus', 'outbox', 'vars', 'control', 'dashboard', 'store', 'ui', 'dev']
const LITERAL = new RegExp(`['"\`]((?:${AREAS.join('|')})\\.[a-z_]+(?:\\.[a-z_]+)*)['"\`]`, 'g')
/** Literals of that shape that are not event names. */
const NOT_EVENTS = new Map([
  ['vars.merge', 'the coordinator function (its event is vars.merged)'],
  ['worker.run', "a span link's attribute value (flowkit.link)"],
  ['task.v', "the task document's version field"],
  ['coordinator.cancelled', "a task document's field path"],
  ['coordinator.vars', "a task document's field path"],
])
/** `coordinator.<key>` / `worker.<key>` naming a config key (a config file's path, in messages and help). */
const CONFIG_KEYS = new Set([...Object.keys(COORDINATOR_DEFAULTS), ...Object.keys(WORKER_DEFAULTS)])
const camel = (s: string): string => s.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase())
const isConfigPath = (name: string): boolean => /^(coordinator|worker)\.[a-z_]+$/.test(name) && CONFIG_KEYS.has(camel(name.split('.')[1] as string))
/** The CLI's --json output lines on stdout (docs/cli.md), not log records. */
const CLI_OUTPUT = ['coordinator.ready', 'worker.ready', 'ui.ready', 'ui.stopped', 'dev.ready', 'dev.stopped']

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => join(e.parentPath, e.name))
}

function eventsInCode(): Set<string> {
  const out = new Set<string>()
  for (const file of sources(join(ROOT, 'src'))) {
    if (file.includes(`${join('src', 'ui', 'assets')}`)) continue
    for (const m of readFileSync(file, 'utf8').matchAll(LITERAL)) out.add(m[1] as string)
  }
  for (const k of NOT_EVENTS.keys()) out.delete(k)
  return out
}

/** Backquoted names of the "Event names" section. */
function eventsInDoc(): Set<string> {
  const doc = readFileSync(join(ROOT, 'docs', 'observability.md'), 'utf8')
  const start = doc.indexOf('\n## Event names\n')
  assert.ok(start >= 0, 'docs/observability.md has no "## Event names" section')
  const section = doc.slice(start, doc.indexOf('\n## ', start + 1))
  const out = new Set<string>()
  for (const m of section.matchAll(/`((?:[a-z]+)\.[a-z_]+(?:\.[a-z_]+)*)`/g)) {
    const name = m[1] as string
    if (AREAS.includes(name.split('.')[0] as string)) out.add(name)
  }
  return out
}

test('docs/observability.md names every event flowkit logs', () => {
  const documented = eventsInDoc()
  const cli = readFileSync(join(ROOT, 'docs', 'cli.md'), 'utf8')
  const missing = [...eventsInCode()].filter((e) => !documented.has(e) && !isConfigPath(e) && !(CLI_OUTPUT.includes(e) && cli.includes(e)))
  assert.deepEqual(missing.sort(), [], 'events logged but not in docs/observability.md "Event names" (or literals to add to NOT_EVENTS)')
})

test('docs/observability.md names no event that flowkit does not log', () => {
  const code = eventsInCode()
  const stale = [...eventsInDoc()].filter((e) => !code.has(e))
  assert.deepEqual(stale.sort(), [], 'events in docs/observability.md that nothing logs')
})

const LEVELS = ['debug', 'info', 'warn', 'error'] as const

/** Each event's levels as the sources log it: `log.warn('x.y'`, a transition's `log('warn', 'x.y'`, a level picked by a condition or by failureLevel(err). */
function levelsInCode(): Map<string, Set<string>> {
  const name = `(?:${AREAS.join('|')})\\.[a-z_]+(?:\\.[a-z_]+)*`
  const level = `(${LEVELS.join('|')})`
  const patterns: [RegExp, (m: RegExpMatchArray) => [string, string[]]][] = [
    [new RegExp(`\\b${level}\\??\\.?\\(\\s*['"\`](${name})['"\`]`, 'g'), (m) => [m[2] as string, [m[1] as string]]],
    [new RegExp(`\\blog\\(\\s*'${level}',\\s*'(${name})'`, 'g'), (m) => [m[2] as string, [m[1] as string]]],
    [new RegExp(`\\blog\\([^,()]*\\?\\s*'${level}'\\s*:\\s*'${level}',\\s*'(${name})'`, 'g'), (m) => [m[3] as string, [m[1] as string, m[2] as string]]],
    [new RegExp(`\\[failureLevel\\([^)]*\\)\\]\\(\\s*'(${name})'`, 'g'), (m) => [m[1] as string, ['warn', 'error']]],
  ]
  const out = new Map<string, Set<string>>()
  for (const file of sources(join(ROOT, 'src'))) {
    const text = readFileSync(file, 'utf8')
    for (const [re, pick] of patterns) {
      for (const m of text.matchAll(re)) {
        const [event, levels] = pick(m)
        const set = out.get(event) ?? new Set<string>()
        for (const l of levels) set.add(l)
        out.set(event, set)
      }
    }
  }
  return out
}

test('docs/observability.md "Levels" gives every event logged at a level other than info, with its levels, as the code logs it', () => {
  const doc = readFileSync(join(ROOT, 'docs', 'observability.md'), 'utf8')
  const at = doc.indexOf('\n### Levels\n')
  assert.ok(at >= 0, 'no "### Levels" table in docs/observability.md')
  const table = doc.slice(at, doc.indexOf('\n## ', at))
  const documented: Record<string, string> = {}
  for (const m of table.matchAll(/^\| `([a-z_.]+)` \| ([a-z, ]+) \|$/gm)) documented[m[1] as string] = m[2] as string
  const expected: Record<string, string> = {}
  for (const [event, set] of levelsInCode()) {
    if (set.size === 1 && set.has('info')) continue
    expected[event] = LEVELS.filter((l) => set.has(l)).join(', ')
  }
  assert.ok(Object.keys(expected).length > 50, 'the level search found the non-info events')
  assert.deepEqual(documented, expected)
})
