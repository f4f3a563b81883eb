import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { execFileSync } from 'node:child_process'

test('the README quickstart is examples/quickstart.ts, and it runs to finished with exact counts', () => {
  const readme = readFileSync('README.md', 'utf8')
  const block = /```ts\n([\s\S]*?)```/.exec(readme)?.[1]
  assert.equal(block, readFileSync('examples/quickstart.ts', 'utf8'), 'README quickstart and examples/quickstart.ts differ')
  const out = execFileSync(process.execPath, ['--conditions=flowkit-source', 'examples/quickstart.ts'], {
    env: { ...process.env, FLOWKIT_LOG_LEVEL: 'silent' },
    encoding: 'utf8',
    timeout: 30_000,
  })
  assert.match(out, /^finished \[ \[ 'source', 10 \], \[ 'square', 10 \] \]/)
})

test('npm start demo: the sales pipeline finishes and its totals add up', () => {
  const out = execFileSync(process.execPath, ['--conditions=flowkit-source', 'src/cli/main.ts', 'demo'], {
    env: { ...process.env, FLOWKIT_LOG_LEVEL: 'silent' },
    encoding: 'utf8',
    timeout: 30_000,
  })
  assert.match(out, /task finished/)
  const total = Number(/revenue total \(metrics\.aggregate\): ([\d.]+)/.exec(out)?.[1])
  const regions = [...out.matchAll(/^\s+\w+\s+(\d+) orders\s+([\d.]+)$/gm)]
  assert.equal(regions.length, 4)
  assert.equal(regions.reduce((s, m) => s + Number(m[1]), 0), 240, 'every CSV row is counted once')
  assert.equal(Math.round(regions.reduce((s, m) => s + Number(m[2]), 0) * 100) / 100, total)
})
