/**
 * The `prepare` script: a plain `npm install` without the dev dependencies (no tsc) goes on
 * without the build, but `npm pack` / `npm publish` fail instead of writing a tarball without
 * dist/ (its `import 'flowkit'` and its `flowkit` command would fail in every project installing it).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const prepare = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { scripts: Record<string, string> }).scripts['prepare'] as string

test('prepare without tsc: skipped for an install, a failure for pack and publish', () => {
  const dir = mkdtempSync(join(tmpdir(), 'flowkit-prepare-'))
  try {
    for (const [command, ok] of [['install', true], ['ci', true], ['pack', false], ['publish', false]] as const) {
      // No node_modules/.bin on the PATH: tsc is not there.
      const r = spawnSync('sh', ['-c', prepare], { cwd: dir, encoding: 'utf8', env: { PATH: '/usr/bin:/bin', npm_command: command } })
      assert.equal(r.status === 0, ok, `npm ${command}: exit ${r.status} ${r.stdout}${r.stderr}`)
      if (ok) assert.match(r.stdout, /build skipped/)
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
