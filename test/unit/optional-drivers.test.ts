/**
 * The drivers (@platformatic/kafka, mongodb) are optional peer dependencies. These tests run
 * flowkit in a child process whose module resolution cannot find them: a resolve hook sends every
 * lookup of a driver to Node's own resolver from an empty directory, so the import fails exactly as
 * in a project where the driver is not installed (Node's real ERR_MODULE_NOT_FOUND). The hook also
 * records every driver lookup, to show `import 'flowkit'` makes none.
 * test/packaging/quickstart.test.ts checks the same in a real project installed from the tarball.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'

const DRIVERS = ['@platformatic/kafka', 'mongodb']

function hookSource(emptyDir: string, hide: boolean, drivers: readonly string[]): string {
  return `
import { registerHooks } from 'node:module'
const drivers = ${JSON.stringify(drivers)}
const nowhere = ${JSON.stringify(pathToFileURL(join(emptyDir, 'nowhere.mjs')).href)}
globalThis.driverLookups = []
registerHooks({
  resolve(specifier, context, next) {
    const driver = drivers.find((d) => specifier === d || specifier.startsWith(d + '/'))
    if (driver === undefined) return next(specifier, context)
    globalThis.driverLookups.push(specifier)
    return ${hide} ? next(specifier, { ...context, parentURL: nowhere }) : next(specifier, context)
  },
})
`
}

interface ChildResult {
  status: number | null
  stdout: string
  stderr: string
}

/** Runs ESM `code` in the repository (so 'flowkit' resolves to this package) with the hook. */
function runChild(code: string, options: { hide: boolean; file?: string; args?: string[]; drivers?: readonly string[]; env?: Record<string, string> }): ChildResult {
  const dir = mkdtempSync(join(tmpdir(), 'flowkit-nodrivers-'))
  try {
    const hook = join(dir, 'hook.mjs')
    writeFileSync(hook, hookSource(dir, options.hide, options.drivers ?? DRIVERS))
    const env: NodeJS.ProcessEnv = { ...process.env, FLOWKIT_LOG_LEVEL: 'silent', ...options.env }
    delete env['NODE_TEST_CONTEXT']
    const args = ['--conditions=flowkit-source', '--import', pathToFileURL(hook).href]
    const r = spawnSync(process.execPath, options.file ? [...args, options.file, ...(options.args ?? [])] : [...args, '--input-type=module', '-e', code], {
      env,
      encoding: 'utf8',
      timeout: 60_000,
    })
    return { status: r.status, stdout: r.stdout, stderr: r.stderr }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

const PROBE = `
const out = {}
const describe = (e) => ({ name: e.name, code: e.code, message: e.message })
const flowkit = await import('flowkit')
out.lookupsAtLoad = [...globalThis.driverLookups]
for (const [name, make] of [
  ['KafkaBus', () => new flowkit.KafkaBus({ brokers: ['127.0.0.1:9092'] })],
  ['MongoStore', () => new flowkit.MongoStore({ url: 'mongodb://127.0.0.1:27017/x' })],
]) {
  try { make(); out[name] = 'constructed' } catch (e) { out[name] = describe(e) }
}
for (const entry of ['flowkit/kafka', 'flowkit/mongo']) {
  try { await import(entry); out[entry] = 'loaded' } catch (e) { out[entry] = describe(e) }
}
console.log(JSON.stringify(out))
`

const kafkaMissing = {
  name: 'FlowkitError',
  code: 'MISSING_DEPENDENCY',
  message: 'flowkit: KafkaBus needs the optional dependency @platformatic/kafka: npm install @platformatic/kafka',
}
const mongoMissing = { name: 'FlowkitError', code: 'MISSING_DEPENDENCY', message: 'flowkit: MongoStore needs the optional dependency mongodb: npm install mongodb' }

test('without the drivers: flowkit loads, and KafkaBus / MongoStore / flowkit/kafka / flowkit/mongo say what to install', () => {
  const r = runChild(PROBE, { hide: true })
  assert.equal(r.status, 0, r.stderr)
  const out = JSON.parse(r.stdout)
  assert.deepEqual(out, {
    lookupsAtLoad: [],
    KafkaBus: kafkaMissing,
    MongoStore: mongoMissing,
    'flowkit/kafka': kafkaMissing,
    'flowkit/mongo': mongoMissing,
  })
})

test('with the drivers installed, import "flowkit" still resolves neither driver (they load on first use)', () => {
  const r = runChild(PROBE, { hide: false })
  assert.equal(r.status, 0, r.stderr)
  const out = JSON.parse(r.stdout)
  assert.deepEqual(out.lookupsAtLoad, [])
  assert.deepEqual([out.KafkaBus, out.MongoStore, out['flowkit/kafka'], out['flowkit/mongo']], ['constructed', 'constructed', 'loaded', 'loaded'])
})

test('without the drivers, the embedded runtime runs the README quickstart to the end', () => {
  const r = runChild('', { hide: true, file: 'examples/quickstart.ts' })
  assert.equal(r.status, 0, r.stderr)
  assert.match(r.stdout, /^finished \[ \[ 'source', 10 \], \[ 'square', 10 \] \]/)
})

test('the coordinator and worker commands without a driver exit 2 naming the package to install, before trying the network', () => {
  const dir = mkdtempSync(join(tmpdir(), 'flowkit-nodrivers-cli-'))
  try {
    const handlers = join(dir, 'handlers.mjs')
    writeFileSync(handlers, 'export default { step: { async processBatch() { return {} } } }\n')
    // Unreachable services: a missing driver is still what is reported (not a connection failure).
    const env = { FLOWKIT_KAFKA_BROKERS: '127.0.0.1:1', FLOWKIT_MONGO_URL: 'mongodb://127.0.0.1:1/x', FLOWKIT_CONNECT_TIMEOUT_MS: '500' }
    for (const [driver, say] of [['mongodb', /needs the optional dependency mongodb: npm install mongodb/], ['@platformatic/kafka', /needs the optional dependency @platformatic\/kafka: npm install @platformatic\/kafka/]] as const) {
      for (const args of [['coordinator'], ['worker', '--handlers', handlers]]) {
        const r = runChild('', { hide: true, drivers: [driver], file: 'src/cli/main.ts', args, env })
        assert.equal(r.status, 2, `${args[0]} without ${driver}: ${r.stderr}`)
        assert.match(r.stderr, say, `${args[0]} without ${driver}`)
        assert.doesNotMatch(r.stderr, /Cannot find package/, 'not the loader\'s raw error')
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
