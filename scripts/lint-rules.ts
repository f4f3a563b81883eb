/**
 * Project rules the generic linter does not know:
 * - engine code takes time from the injected Clock: no bare `Date.now()` / `new Date()` outside the
 *   clock, the logger, the CLI and the adapters;
 * - a driver is imported only inside its adapter folder (`@platformatic/kafka` under
 *   src/adapters/kafka, `mongodb` under src/adapters/mongo).
 * Exits 1 and lists every violation. `checkSource` is exported for the rule's own test.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs'
import { join, relative, sep } from 'node:path'
import { fileURLToPath } from 'node:url'

export interface Violation {
  file: string
  line: number
  rule: string
  text: string
}

const TIME_EXEMPT = ['src/clock.ts', 'src/log.ts', 'src/cli/', 'src/adapters/']
const DRIVERS: Record<string, string> = { '@platformatic/kafka': 'src/adapters/kafka/', mongodb: 'src/adapters/mongo/' }

export function checkSource(file: string, source: string): Violation[] {
  const out: Violation[] = []
  const lines = source.split('\n')
  lines.forEach((text, i) => {
    const code = text.replace(/\/\/.*$/, '')
    if (!TIME_EXEMPT.some((p) => file.startsWith(p)) && /\bDate\.now\(\)|new Date\(\s*\)/.test(code)) {
      out.push({ file, line: i + 1, rule: 'no-bare-time', text: text.trim() })
    }
    const m = /\bfrom\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/.exec(code)
    const spec = m?.[1] ?? m?.[2]
    if (spec !== undefined) {
      for (const [driver, folder] of Object.entries(DRIVERS)) {
        if ((spec === driver || spec.startsWith(`${driver}/`)) && !file.startsWith(folder)) {
          out.push({ file, line: i + 1, rule: 'driver-outside-adapter', text: text.trim() })
        }
      }
    }
  })
  return out
}

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name)
    return statSync(p).isDirectory() ? walk(p) : p.endsWith('.ts') ? [p] : []
  })
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const root = join(fileURLToPath(import.meta.url), '..', '..')
  const violations = walk(join(root, 'src')).flatMap((f) => {
    const rel = relative(root, f).split(sep).join('/')
    return checkSource(rel, readFileSync(f, 'utf8'))
  })
  for (const v of violations) console.error(`${v.file}:${v.line} ${v.rule}: ${v.text}`)
  if (violations.length > 0) process.exit(1)
  console.log('lint-rules: ok')
}
