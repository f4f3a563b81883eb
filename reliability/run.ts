/**
 * `npm run reliability`: the reliability suite (docs/reliability.md). Starts its own Kafka broker
 * and FerretDB (from the binaries scripts/services.sh caches), then per scenario a coordinator,
 * workers and an independent observer as separate processes, injects the scenario's faults, and
 * checks the invariants from the store, the handlers' effect lines and the observer's record of
 * the bus.
 *
 *   npm run reliability                      short profile  → reliability/results/short.json
 *   npm run reliability -- --long            full matrix    → reliability/results/latest.json
 *   npm run reliability -- --only store-pause[,clock-skew]   (a subset → results/only-<profile>.json)
 *   npm run reliability -- --list | --keep (keep the temp dir with every log even when all pass)
 *
 * Exit code: 0 every invariant held, 1 a violation (or a scenario the harness could not run),
 * 2 the services cannot run here (missing binaries or java), 130 interrupted.
 */
import { execFileSync, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Cluster } from './lib/cluster.ts'
import { type RunReport, failures, table, writeReport } from './lib/report.ts'
import { type ScenarioResult, runScenario } from './lib/scenario.ts'
import { PROFILES } from './lib/scenarios.ts'
import { FerretService, KafkaService, probeKafka, probeMongo, servicesUnavailable } from './lib/services.ts'

const repo = join(dirname(fileURLToPath(import.meta.url)), '..')

function parseArgs(argv: string[]): { long: boolean; only: string[]; keep: boolean; list: boolean } {
  const out = { long: false, only: [] as string[], keep: false, list: false }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string
    if (a === '--long') out.long = true
    else if (a === '--keep') out.keep = true
    else if (a === '--list') out.list = true
    else if (a === '--only') out.only.push(...(argv[++i] ?? '').split(',').filter(Boolean))
    else if (a.startsWith('--only=')) out.only.push(...a.slice(7).split(',').filter(Boolean))
    else if (a === '--help' || a === '-h') {
      console.log('usage: npm run reliability -- [--long] [--only <scenario>[,<scenario>]] [--keep] [--list]')
      process.exit(0)
    } else {
      console.error(`reliability: unknown argument ${a}`)
      process.exit(2)
    }
  }
  return out
}

function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0
}

function commit(): string | null {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: repo, encoding: 'utf8' }).trim()
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src'], { cwd: repo, encoding: 'utf8' }).trim() !== ''
    return dirty ? `${head}+uncommitted src changes` : head
  } catch {
    return null
  }
}

const args = parseArgs(process.argv.slice(2))
const profile = PROFILES[args.long ? 'long' : 'short']
if (args.list) {
  for (const p of Object.values(PROFILES)) {
    console.log(`${p.name}:`)
    for (const s of p.scenarios) console.log(`  ${s.name.padEnd(22)} ${s.description}`)
  }
  process.exit(0)
}
const unknown = args.only.filter((n) => !profile.scenarios.some((s) => s.name === n))
if (unknown.length > 0) {
  console.error(`reliability: no scenario ${unknown.join(', ')} in the ${profile.name} profile (--list shows them)`)
  process.exit(2)
}
const scenarios = args.only.length > 0 ? profile.scenarios.filter((s) => args.only.includes(s.name)) : profile.scenarios

let missing = servicesUnavailable()
if (missing !== null && have('java') && have('mvn') && have('go')) {
  console.log(`reliability: ${missing}; building with scripts/services.sh install`)
  spawnSync('bash', [join(repo, 'scripts', 'services.sh'), 'install'], { cwd: repo, stdio: 'inherit' })
  missing = servicesUnavailable()
}
if (missing !== null) {
  console.error(`reliability: cannot run: ${missing}`)
  process.exit(2)
}

const root = mkdtempSync(join(tmpdir(), 'flowkit-rel-'))
const broker = new KafkaService(join(root, 'kafka'), repo)
const store = new FerretService(join(root, 'mongo'))
let current: Cluster | null = null
let interrupted = false
const interrupt = (): void => {
  if (interrupted) return
  interrupted = true
  console.error('\nreliability: interrupted; stopping every process it started')
  void (async () => {
    await current?.killAll()
    await Promise.all([broker.kill(), store.kill()])
    console.error(`reliability: logs kept in ${root}`)
    process.exit(130)
  })()
}
process.on('SIGINT', interrupt)
process.on('SIGTERM', interrupt)

async function ensureServices(): Promise<void> {
  for (const s of [broker, store]) if (s.stopped) s.resume()
  const healthy = async (s: KafkaService | FerretService): Promise<boolean> => {
    if (!s.alive) return false
    try {
      await (s === broker ? probeKafka(broker.brokers) : probeMongo(store.url))
      return true
    } catch {
      return false
    }
  }
  for (const s of [broker, store]) {
    if (await healthy(s)) continue
    await s.terminate(20_000)
    await s.start()
  }
}

const started = Date.now()
console.log(`reliability: ${profile.name} profile, ${scenarios.length} scenario(s); working dir ${root}`)
await Promise.all([broker.start(), store.start()])
const servicesMs = Date.now() - started
console.log(`reliability: Kafka ${broker.brokers} and FerretDB ${store.url.replace(/\/\?.*$/, '')} ready in ${(servicesMs / 1000).toFixed(1)} s`)

const results: ScenarioResult[] = []
for (const [i, sc] of scenarios.entries()) {
  if (interrupted) break
  process.stdout.write(`[${i + 1}/${scenarios.length}] ${sc.name}: ${sc.description} ... `)
  await ensureServices()
  const r = await runScenario(sc, profile, { broker, store }, repo, root, i, (c) => {
    current = c
  })
  current = null
  results.push(r)
  const t = r.tasks
  console.log(
    `${r.error !== null ? 'ERROR' : r.pass ? 'pass' : 'FAIL'} in ${(r.durationMs / 1000).toFixed(0)} s (${t.finished} finished, ${t.failed} failed, ${t.cancelled} cancelled, ${t.stuck} stuck, ${r.violationCount} violation(s))`,
  )
}
await Promise.all([broker.terminate(20_000), store.terminate(20_000)])

const pass = results.length === scenarios.length && results.every((r) => r.pass)
const report: RunReport = {
  profile: profile.name,
  started_at: new Date(started).toISOString(),
  duration_ms: Date.now() - started,
  services_start_ms: servicesMs,
  commit: commit(),
  pass,
  scenarios: results,
}
const file = join(repo, 'reliability', 'results', args.only.length > 0 ? `only-${profile.name}.json` : profile.name === 'long' ? 'latest.json' : 'short.json')
writeReport(file, report)
console.log(`\n${table(results)}`)
const why = failures(results)
if (why) console.log(why)
console.log(`\nreliability: ${pass ? 'every invariant held' : 'VIOLATIONS'} — ${results.length} scenario(s) in ${((Date.now() - started) / 1000).toFixed(0)} s; results in ${file}`)
if (pass && !args.keep) rmSync(root, { recursive: true, force: true })
else console.log(`reliability: logs, effect lines and observed records kept in ${root}`)
process.exit(pass ? 0 : 1)
