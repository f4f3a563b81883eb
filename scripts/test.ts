/**
 * `npm test`: runs every test under node:test. Real-service suites (Kafka, MongoDB protocol) need
 * FLOWKIT_KAFKA_BROKERS / FLOWKIT_MONGO_URL; when those are not set, this script starts the
 * project's own services (scripts/services.sh) if the toolchains they need (java + mvn, go) are
 * here, and stops what it started at the end. Without them the real suites are reported as skipped
 * with the reason — unless FLOWKIT_REQUIRE_REAL_SERVICES=1 (CI), where that fails the run.
 *
 * With real services, the scenario tests (test/e2e) run a second time on them
 * (FLOWKIT_E2E_RUNTIME=real). Extra arguments replace the file list (and skip the second pass).
 * FLOWKIT_RELIABILITY=1 adds a last pass: the reliability suite's short profile (reliability/).
 */
import { spawnSync, spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const env: NodeJS.ProcessEnv = { ...process.env }
// What the coordinator hands over to a store is deep-frozen under test: a change in place throws.
env['FLOWKIT_CHECK_HANDOVER'] ??= '1'
const require = env['FLOWKIT_REQUIRE_REAL_SERVICES'] === '1'
let startedServices = false

function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0
}

function readEnvFile(path: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const m = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line.trim())
    if (m) out[m[1] as string] = (m[2] as string).replace(/^["']|["']$/g, '')
  }
  return out
}

function setUpServices(): void {
  if (env['FLOWKIT_SKIP_REAL_SERVICES'] === '1') {
    env['FLOWKIT_REAL_SKIP_REASON'] = 'FLOWKIT_SKIP_REAL_SERVICES=1'
    return
  }
  if (env['FLOWKIT_KAFKA_BROKERS'] && env['FLOWKIT_MONGO_URL']) return
  const missing = ['java', 'mvn', 'go'].filter((c) => !have(c))
  if (missing.length > 0) {
    env['FLOWKIT_REAL_SKIP_REASON'] = `real Kafka/MongoDB suites need ${missing.join(', ')} to build the services (or set FLOWKIT_KAFKA_BROKERS and FLOWKIT_MONGO_URL)`
    return
  }
  const script = join(root, 'scripts', 'services.sh')
  const runDir = env['FLOWKIT_RUN_DIR'] ?? join(root, '.run')
  const envFile = join(runDir, 'services.env')
  const alreadyUp = existsSync(envFile) && spawnSync('bash', [script, 'status'], { cwd: root, env, stdio: 'ignore' }).status === 0
  if (!alreadyUp) {
    console.log('flowkit test: starting Kafka and FerretDB with scripts/services.sh (first run builds them: minutes)')
    const r = spawnSync('bash', [script, 'start'], { cwd: root, env, stdio: ['ignore', 'inherit', 'inherit'] })
    if (r.status !== 0) {
      env['FLOWKIT_REAL_SKIP_REASON'] = `scripts/services.sh start failed (exit ${r.status})`
      return
    }
    startedServices = true
  }
  if (!existsSync(envFile)) {
    env['FLOWKIT_REAL_SKIP_REASON'] = `${envFile} missing after services start`
    return
  }
  const vars = readEnvFile(envFile)
  for (const k of ['FLOWKIT_KAFKA_BROKERS', 'FLOWKIT_MONGO_URL']) if (!env[k] && vars[k]) env[k] = vars[k]
}

setUpServices()
if (env['FLOWKIT_REAL_SKIP_REASON']) {
  if (require) {
    console.error(`flowkit test: FLOWKIT_REQUIRE_REAL_SERVICES=1 but ${env['FLOWKIT_REAL_SKIP_REASON']}`)
    process.exit(1)
  }
  console.log(`flowkit test: real-service suites will be skipped: ${env['FLOWKIT_REAL_SKIP_REASON']}`)
}

const extra = process.argv.slice(2)
const files = extra.length > 0 ? extra : ['test/**/*.test.ts']
// No --test-force-exit: with it, node:test regularly ended a file's process before its later tests
// ran and reported the shorter count as complete (seen: 28 of 56, 223 of 249). A pass that does not
// end (a test leaving a handle open) is stopped by this watchdog and fails, saying so.
const nodeArgs = ['--conditions=flowkit-source', '--test', '--test-concurrency=2', '--test-timeout=180000']
const PASS_DEADLINE_MS = Number(env['FLOWKIT_TEST_PASS_DEADLINE_MS'] ?? 20 * 60_000)

// Each pass also writes its failures (error and stack) to a file, printed again at the end.
const failuresDir = mkdtempSync(join(tmpdir(), 'flowkit-test-failures-'))
const failureFiles: Array<{ label: string; file: string }> = []

function run(label: string, args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<number> {
  console.log(`\nflowkit test: ${label}`)
  const failures = join(failuresDir, `pass-${failureFiles.length + 1}.log`)
  failureFiles.push({ label, file: failures })
  const reporters = ['--test-reporter=spec', '--test-reporter-destination=stdout', `--test-reporter=${join(root, 'scripts', 'failures-reporter.ts')}`, `--test-reporter-destination=${failures}`]
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...nodeArgs, ...reporters, ...args], { cwd: root, env: { ...env, ...extraEnv }, stdio: 'inherit' })
    const watchdog = setTimeout(() => {
      console.error(`flowkit test: "${label}" still running after ${PASS_DEADLINE_MS / 60_000} min: stopped (a test, or a handle one left open, does not end)`)
      child.kill('SIGKILL')
    }, PASS_DEADLINE_MS)
    child.on('exit', (code, signal) => {
      clearTimeout(watchdog)
      resolve(code ?? (signal ? 1 : 0))
    })
  })
}

/** The scenario tests again, on real Kafka + the MongoDB-protocol server (see test/helpers/runtime.ts). */
function realE2eFiles(): string[] {
  const dir = join(root, 'test', 'e2e')
  return readdirSync(dir)
    .filter((f) => f.endsWith('.test.ts') && !f.startsWith('runtime.') && f !== 'readme.test.ts')
    .map((f) => join('test', 'e2e', f))
}

let code = await run('all suites (memory runtime, conformance on every adapter)', files)
if (extra.length === 0 && !env['FLOWKIT_REAL_SKIP_REASON'] && env['FLOWKIT_KAFKA_BROKERS'] && env['FLOWKIT_MONGO_URL']) {
  const realCode = await run('scenario tests again on real Kafka + MongoDB protocol', realE2eFiles(), {
    FLOWKIT_E2E_RUNTIME: 'real',
    // A file that does not end after its tests shows where its live timers were made (test/helpers/exit-guard.ts).
    FLOWKIT_TEST_TRACE_TIMERS: env['FLOWKIT_TEST_TRACE_TIMERS'] ?? '1',
  })
  if (code === 0) code = realCode
}
if (startedServices && env['FLOWKIT_KEEP_SERVICES'] !== '1') {
  spawnSync('bash', [join(root, 'scripts', 'services.sh'), 'stop'], { cwd: root, env, stdio: 'inherit' })
}
// Last pass, off unless FLOWKIT_RELIABILITY=1: the reliability suite's short profile
// (docs/reliability.md), on its own Kafka and FerretDB processes; exit 2 = binaries missing.
if (extra.length === 0 && env['FLOWKIT_RELIABILITY'] === '1' && env['FLOWKIT_SKIP_REAL_SERVICES'] !== '1') {
  console.log('\nflowkit test: reliability suite, short profile (npm run reliability)')
  const rel = spawnSync(process.execPath, ['--conditions=flowkit-source', join(root, 'reliability', 'run.ts')], { cwd: root, env, stdio: 'inherit', timeout: PASS_DEADLINE_MS })
  const relCode = rel.status ?? 1
  if (relCode === 2 && !require) console.log('flowkit test: reliability suite skipped (its Kafka/FerretDB binaries are not built)')
  else if (code === 0) code = relCode
}
for (const { label, file } of failureFiles) {
  const text = existsSync(file) ? readFileSync(file, 'utf8').trim() : ''
  if (text !== '') console.log(`\nflowkit test: failures of "${label}" (repeated from above)\n${text}`)
}
rmSync(failuresDir, { recursive: true, force: true })
process.exit(code)
