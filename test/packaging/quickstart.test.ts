/**
 * The README Quickstart, verbatim, in a fresh `npm init -y` project that installs flowkit from
 * the tarball `npm pack` makes: what a new user does, step by step. The package is built in a
 * copy of the checkout (so the shared dist/ is not touched), packed, installed from the tarball;
 * the README's setup commands run as written (the install line points at the tarball packed here),
 * then its code block is saved and run with the project's Node. The same project, which has no
 * driver installed (they are optional peer dependencies), checks the missing-driver messages, and
 * that the source maps shipped in the tarball resolve.
 *
 * Slow for a unit test (a tsc build and an npm install): 6-12 s here, the install ~4 s with a cold npm
 * cache; it needs the npm registry unless the cache holds pino. FLOWKIT_SKIP_PACKAGING=1 skips it.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { delimiter, dirname, join, resolve } from 'node:path'

const root = resolve(import.meta.dirname, '..', '..')
const skip = process.env['FLOWKIT_SKIP_PACKAGING'] === '1' ? 'FLOWKIT_SKIP_PACKAGING=1' : false

/** The environment of a user's shell: this Node first on PATH, no npm or test-runner variables. */
function userEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) if (!/^(npm_|NODE_TEST_CONTEXT$|FLOWKIT_)/i.test(k)) env[k] = v
  env['PATH'] = `${dirname(process.execPath)}${delimiter}${process.env['PATH'] ?? ''}`
  // Quieter and faster npm; reuses the local cache when it can.
  Object.assign(env, { npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false', npm_config_prefer_offline: 'true', npm_config_loglevel: 'error' })
  return env
}

function sh(script: string, cwd: string, env: NodeJS.ProcessEnv): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('sh', ['-ec', script], { cwd, env, encoding: 'utf8', timeout: 180_000 })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

/** The fenced blocks of the README's `## Quickstart` section, in order. */
function quickstartBlocks(): { lang: string; body: string }[] {
  const readme = readFileSync(join(root, 'README.md'), 'utf8')
  const section = /^## Quickstart\n([\s\S]*?)(?=^## )/m.exec(readme)?.[1]
  assert.ok(section, 'README has a ## Quickstart section')
  return [...section.matchAll(/^```(\w*)\n([\s\S]*?)^```$/gm)].map((m) => ({ lang: m[1] ?? '', body: m[2] ?? '' }))
}

/** Builds (npm run build) a copy of the package and packs it; returns the tarball's path. */
function buildAndPack(work: string, env: NodeJS.ProcessEnv): string {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { files: string[] }
  const stage = join(work, 'stage')
  mkdirSync(stage)
  // (`docs/*.md`: the folder is copied, the pattern picks what is packed.)
  const entries = new Set([...pkg.files.filter((f) => f !== 'dist').map((f) => f.replace(/\/\*.*$/, '')), 'src', 'package.json', 'README.md', 'LICENSE', 'tsconfig.json', 'tsconfig.build.json'])
  for (const e of entries) if (existsSync(join(root, e))) cpSync(join(root, e), join(stage, e), { recursive: true })
  symlinkSync(join(root, 'node_modules'), join(stage, 'node_modules'), 'dir')
  const build = sh('npm run build', stage, env)
  assert.equal(build.status, 0, `npm run build failed:\n${build.stdout}\n${build.stderr}`)
  const out = execFileSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], { cwd: stage, env, encoding: 'utf8' })
  const [info] = JSON.parse(out) as { filename: string; files: { path: string }[] }[]
  assert.ok(info)
  const files = info.files.map((f) => f.path)
  for (const f of ['LICENSE', 'README.md', 'package.json', 'dist/index.js', 'dist/index.d.ts', 'dist/index.js.map', 'src/index.ts', 'bin/flowkit.js', 'docs/cli.md', 'docs/graph-format.md']) {
    assert.ok(files.includes(f), `the tarball holds ${f}`)
  }
  assert.deepEqual(files.filter((f) => /^(test|scripts|reliability|bench|tools)\//.test(f)), [], 'no tests or tooling in the tarball')
  assert.deepEqual(files.filter((f) => f.startsWith('docs/') && !f.endsWith('.md')), [], 'the docs the CLI help names, not their screenshots')
  return join(work, info.filename)
}

function mapsUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile() && d.name.endsWith('.js.map'))
    .map((d) => join(d.parentPath, d.name))
}

test('packaging: the README Quickstart runs verbatim in a fresh npm project installed from the packed tarball', { skip, timeout: 240_000 }, () => {
  const started = Date.now()
  const work = mkdtempSync(join(tmpdir(), 'flowkit-pack-'))
  try {
    const env = userEnv()
    const tarball = buildAndPack(work, env)

    // The README's steps, as written; its `npm install <the tarball>` installs the one packed here.
    const blocks = quickstartBlocks()
    const [setup, code, run] = [blocks.find((b) => b.lang === 'sh'), blocks.find((b) => b.lang === 'ts'), blocks.filter((b) => b.lang === 'sh').at(-1)]
    assert.ok(setup && code && run && setup !== run, 'Quickstart: a setup sh block, a ts block, a run sh block')
    assert.match(setup.body, /^npm init -y$/m)
    const installLine = /^npm install \/path\/to\/flowkit\/flowkit-<version>\.tgz.*$/m
    assert.match(setup.body, installLine)
    const file = /^node (\S+)$/m.exec(run.body)?.[1]
    assert.ok(file, 'the run block says `node <file>`')
    const project = join(work, 'project')
    mkdirSync(project)
    const installed = sh(setup.body.replace(installLine, `npm install ${JSON.stringify(tarball)}`), project, env)
    assert.equal(installed.status, 0, `setup failed:\n${installed.stdout}\n${installed.stderr}`)
    writeFileSync(join(project, file), code.body)
    const ran = sh(run.body, project, env)
    assert.equal(ran.status, 0, `the quickstart failed:\n${ran.stderr}`)
    assert.match(ran.stdout, /^finished \[ \[ 'source', 10 \], \[ 'square', 10 \] \]/)
    assert.match(ran.stdout, /batch_uid/, 'listArtifacts printed the artifacts')

    // The drivers are optional peer dependencies: not installed, and asked for by name.
    const nm = join(project, 'node_modules')
    assert.deepEqual([existsSync(join(nm, '@platformatic', 'kafka')), existsSync(join(nm, 'mongodb'))], [false, false], 'no driver installed')
    writeFileSync(
      join(project, 'drivers.mjs'),
      `import { KafkaBus, MongoStore } from 'flowkit'
const said = []
for (const make of [() => new KafkaBus({ brokers: ['127.0.0.1:9092'] }), () => new MongoStore({ url: 'mongodb://127.0.0.1/x' })]) {
  try { make(); said.push('constructed') } catch (e) { said.push(e.message) }
}
for (const entry of ['flowkit/kafka', 'flowkit/mongo']) {
  try { await import(entry); said.push('loaded') } catch (e) { said.push(e.message) }
}
console.log(JSON.stringify(said))
`,
    )
    const drivers = sh('node drivers.mjs', project, env)
    assert.equal(drivers.status, 0, drivers.stderr)
    const kafka = 'flowkit: KafkaBus needs the optional dependency @platformatic/kafka: npm install @platformatic/kafka'
    const mongo = 'flowkit: MongoStore needs the optional dependency mongodb: npm install mongodb'
    assert.deepEqual(JSON.parse(drivers.stdout), [kafka, mongo, kafka, mongo])

    // TypeScript, as the README's Install says: with skipLibCheck the quickstart type-checks
    // without either driver installed (their types are named by the adapters' declarations).
    writeFileSync(join(project, 'tsconfig.json'), JSON.stringify({ compilerOptions: { target: 'es2022', module: 'nodenext', moduleResolution: 'nodenext', strict: true, noEmit: true, skipLibCheck: true, allowImportingTsExtensions: true }, files: [file] }))
    const tsc = sh(`node ${JSON.stringify(join(root, 'node_modules', 'typescript', 'bin', 'tsc'))} -p tsconfig.json`, project, env)
    assert.equal(tsc.status, 0, `the quickstart does not type-check:\n${tsc.stdout}\n${tsc.stderr}`)

    // Every source map in the installed package points at a source file that is there too, and a
    // stack trace through flowkit maps back to its TypeScript source.
    const pkgDir = join(nm, 'flowkit')
    const maps = mapsUnder(join(pkgDir, 'dist'))
    assert.ok(maps.length > 20, `source maps shipped (${maps.length})`)
    for (const map of maps) {
      const { sources } = JSON.parse(readFileSync(map, 'utf8')) as { sources: string[] }
      for (const s of sources) assert.ok(existsSync(resolve(dirname(map), s)), `${map}: source ${s} is in the package`)
    }
    writeFileSync(join(project, 'trace.mjs'), "import { Worker } from 'flowkit'\ntry { new Worker({ handlers: {} }) } catch (e) { console.log(e.stack) }\n")
    const trace = sh('node --enable-source-maps trace.mjs', project, env)
    assert.match(trace.stdout, /node_modules\/flowkit\/src\/worker\/worker\.ts:\d+:\d+/, trace.stdout)
  } finally {
    rmSync(work, { recursive: true, force: true })
    console.log(`packaging test: ${((Date.now() - started) / 1000).toFixed(1)} s`)
  }
})
