/**
 * The API reference (TypeDoc, typedoc.json): `npm run docs:api` must build it from the TSDoc of
 * `flowkit`, `flowkit/kafka` and `flowkit/mongo` with every validation on, and a broken link in a
 * doc comment (`{@link X}` naming nothing, a link TypeDoc had to rewrite) or any other TypeDoc
 * error or warning fails the test. Types the API mentions without exporting them ("notExported")
 * are reported as diagnostics only; typedoc.json lists the known ones (`intentionallyNotExported`).
 * A small fixture with a broken link checks that such a link is caught.
 *
 * Measured here (2 cores, loaded): 10-15 s, nearly all of it the TypeDoc run over the sources.
 */
import { suite, test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ROOT } from './markdown.ts'

const TYPEDOC = join(ROOT, 'node_modules', 'typedoc', 'bin', 'typedoc')
/** Terminal colour codes (TypeDoc colours its log lines). */
const ANSI = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, 'g')

interface Run {
  code: number | null
  /** The warnings and errors TypeDoc logged, one entry per message (continuation lines joined). */
  messages: { level: 'warning' | 'error'; text: string }[]
  output: string
}

function typedoc(args: string[], cwd = ROOT): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [TYPEDOC, ...args], { cwd, timeout: 120_000, maxBuffer: 8 << 20, env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' } }, (err, stdout, stderr) => {
      const output = `${stdout}${stderr}`.replace(ANSI, '')
      const messages: Run['messages'] = []
      for (const line of output.split('\n')) {
        const m = /^\[(warning|error)\] (.*)$/.exec(line)
        if (m) messages.push({ level: m[1] as 'warning' | 'error', text: m[2] as string })
        else if (/^\s/.test(line) && line.trim() !== '' && messages.length > 0) (messages.at(-1) as { text: string }).text += ` ${line.trim()}`
      }
      const e = err as (Error & { code?: unknown }) | null
      resolve({
        code: e === null ? 0 : typeof e.code === 'number' ? e.code : null,
        messages: messages.filter((m) => !/^Found \d+ errors? and \d+ warnings?$/.test(m.text)),
        output,
      })
    })
  })
}

/** A type the public API mentions but does not export: reported, not a failure. */
function isNotExported(text: string): boolean {
  return /is referenced by .* but not included in the documentation/.test(text) || /marked as intentionally not exported/.test(text)
}

suite('API reference', { concurrency: 2 }, () => {
  test('typedoc builds it from the public entry points, with no broken link', async (t) => {
    const out = mkdtempSync(join(tmpdir(), 'flowkit-api-'))
    try {
      const t0 = performance.now()
      const run = await typedoc(['--options', 'typedoc.json', '--out', out])
      t.diagnostic(`typedoc: ${Math.round(performance.now() - t0)} ms`)
      const notExported = run.messages.filter((m) => isNotExported(m.text))
      for (const m of notExported) t.diagnostic(`not exported: ${m.text}`)
      const failures = run.messages.filter((m) => !isNotExported(m.text))
      assert.deepEqual(
        failures.map((m) => `[${m.level}] ${m.text}`),
        [],
        'fix the doc comment the message names (a {@link} must name an exported symbol of the entry point, or a member of it)',
      )
      assert.equal(run.code, 0, run.output)
      for (const page of ['index.html', 'modules/index.html', 'modules/adapters_kafka.html', 'modules/adapters_mongo.html', 'classes/index.Coordinator.html', 'interfaces/index.RoleHandler.html', 'interfaces/index.RunContext.html']) {
        assert.ok(existsSync(join(out, page)), `${page} generated`)
      }
    } finally {
      rmSync(out, { recursive: true, force: true })
    }
  })

  test('a broken {@link} in a doc comment is caught', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'flowkit-api-fixture-'))
    try {
      writeFileSync(join(dir, 'package.json'), '{ "name": "fixture", "version": "0.0.0", "type": "module" }\n')
      writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: { target: 'ES2023', module: 'NodeNext', strict: true, noEmit: true }, include: ['index.ts'] }))
      writeFileSync(join(dir, 'index.ts'), '/** Runs a task. See {@link NoSuchThing} and {@link Fine}. */\nexport function run(): void {}\n/** A documented interface. */\nexport interface Fine { a: number }\n')
      const run = await typedoc(['--entryPoints', 'index.ts', '--tsconfig', 'tsconfig.json', '--emit', 'none', '--validation.invalidLink', '--disableSources', '--readme', 'none'], dir)
      const failures = run.messages.filter((m) => !isNotExported(m.text))
      assert.equal(failures.length, 1, run.output)
      assert.match(failures[0]?.text ?? '', /NoSuchThing/)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
