/** The results file and the compact table printed at the end of a run. */
import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'
import type { ScenarioResult } from './scenario.ts'

export interface RunReport {
  profile: 'short' | 'long'
  started_at: string
  duration_ms: number
  /** Kafka broker and FerretDB start, before the first scenario. */
  services_start_ms: number
  commit: string | null
  pass: boolean
  scenarios: ScenarioResult[]
}

export function writeReport(file: string, report: RunReport): void {
  mkdirSync(dirname(file), { recursive: true })
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`)
}

const COLUMNS = ['scenario', 'result', 'subm', 'fin', 'fail', 'canc', 'lost', 'stuck', 'wrong', 'dupFx', 'stale', 'fenced', 'leases', 'crash', 'viol', 'time'] as const

function row(r: ScenarioResult): string[] {
  return [
    r.name,
    r.error !== null ? 'ERROR' : r.pass ? 'pass' : 'FAIL',
    `${r.tasks.submitted}/${r.tasks.planned}`,
    String(r.tasks.finished),
    String(r.tasks.failed),
    String(r.tasks.cancelled),
    String(r.tasks.lost),
    String(r.tasks.stuck),
    String(r.tasks.wrong),
    String(r.effects.duplicated),
    String(r.stale.changes),
    String(r.owners.fencedWrites),
    String(r.liveLeases),
    String(r.crashes.total),
    String(r.violationCount),
    `${(r.durationMs / 1000).toFixed(0)}s`,
  ]
}

export function table(results: readonly ScenarioResult[]): string {
  const rows = [[...COLUMNS] as string[], ...results.map(row)]
  const widths = COLUMNS.map((_, i) => Math.max(...rows.map((r) => (r[i] as string).length)))
  return rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number))).join('  ')).join('\n')
}

/** The first violations of each failing scenario, for the console. */
export function failures(results: readonly ScenarioResult[], perScenario = 6): string {
  const out: string[] = []
  for (const r of results) {
    if (r.pass) continue
    out.push(`\n${r.name}: ${r.error !== null ? `harness error: ${r.error}` : `${r.violationCount} violation(s)`}  (logs: ${r.dir})`)
    for (const v of r.violations.slice(0, perScenario)) out.push(`  - ${v}`)
    if (r.violationCount > perScenario) out.push(`  - … ${r.violationCount - perScenario} more (the results file lists the first 25)`)
    for (const e of r.evidence.slice(0, 3)) out.push(`  log: ${e}`)
  }
  return out.join('\n')
}
