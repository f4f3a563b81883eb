/**
 * Wrong usage the CLI used to accept or report as something else: a bad FLOWKIT_LOG_FORMAT, help
 * for a command that does not exist, a bad `--id` reported as an invalid graph, a misspelt config
 * file section or MongoDB key silently ignored.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { FIXTURES, runCli, tempDir } from './helpers.ts'
import { TASK_ID_PATTERN } from '../../src/graph/types.ts'

const PIPELINE = join(FIXTURES, 'pipeline.json')
const NO_STORE = { FLOWKIT_MONGO_URL: undefined, FLOWKIT_KAFKA_BROKERS: undefined, FLOWKIT_CONFIG: undefined }

function configFile(content: unknown): string {
  const path = join(tempDir(), 'flowkit.json')
  writeFileSync(path, JSON.stringify(content))
  return path
}

describe('flowkit CLI usage checks', () => {
  test('a bad FLOWKIT_LOG_FORMAT stops every command at startup, naming the variable (exit 2)', async () => {
    const r = await runCli(['validate', PIPELINE], { env: { FLOWKIT_LOG_FORMAT: 'xml' } })
    assert.equal(r.code, 2, r.stderr)
    assert.match(r.stderr, /^flowkit: FLOWKIT_LOG_FORMAT="xml" is not a log format; valid formats: /)
    const ok = await runCli(['validate', PIPELINE], { env: { FLOWKIT_LOG_FORMAT: 'auto' } })
    assert.equal(ok.code, 0, ok.stderr)
  })

  test('help for an unknown command is a usage error with a hint (exit 2); help for a command still works', async () => {
    const r = await runCli(['help', 'sumbit'])
    assert.equal(r.code, 2)
    assert.match(r.stderr, /^flowkit: no help for "sumbit": not a command \(did you mean "submit"\?\)/)
    const ok = await runCli(['help', 'submit'])
    assert.equal(ok.code, 0, ok.stderr)
    assert.match(ok.stdout, /submit/)
    // Older names (docs/cli.md) and `version` still have help.
    for (const name of ['tasks', 'task', 'dead-letters', 'retry-dead-letter', 'version', 'help']) {
      const r2 = await runCli(['help', name])
      assert.equal(r2.code, 0, `${name}: ${r2.stderr}`)
    }
    const older = await runCli(['help', 'tasks'])
    assert.equal(older.stdout, (await runCli(['help', 'ls'])).stdout, 'tasks stands for ls')
  })

  test('a graph file and a config file saved with a byte order mark (as some editors write UTF-8) are read', async () => {
    const dir = tempDir()
    const graph = join(dir, 'bom-graph.json')
    writeFileSync(graph, `\uFEFF${readFileSync(PIPELINE, 'utf8')}`)
    const config = join(dir, 'bom-config.json')
    writeFileSync(config, `\uFEFF${JSON.stringify({ coordinator: { max_nodes: 100 } })}`)
    const r = await runCli(['validate', graph, '--config', config])
    assert.equal(r.code, 0, r.stderr)
  })

  test('submit: a bad --id is a usage error about --id (exit 2), not an invalid graph', async () => {
    const r = await runCli(['submit', PIPELINE, '--id', 'a b'], { env: NO_STORE })
    assert.equal(r.code, 2, r.stderr)
    assert.match(r.stderr, /^flowkit: --id "a b" is not a task id: it must match /)
    assert.doesNotMatch(r.stdout + r.stderr, /invalid graph/)
    // Dots alone are path segments (the dashboard could not open such a task: the audit's `..`).
    for (const id of ['..', '.', '...']) {
      const d = await runCli(['submit', PIPELINE, '--id', id], { env: NO_STORE })
      assert.equal(d.code, 2, `${id}: ${d.stderr}`)
    }
    assert.deepEqual(['a.b', '.a', 'v1.2:x', '..', '.'].map((id) => TASK_ID_PATTERN.test(id)), [true, true, true, false, false], 'dots among other characters are fine')
  })

  test('config file: a misspelt section or an unknown mongo key is refused, naming it (exit 2)', async () => {
    const section = await runCli(['validate', '--config', configFile({ cordinator: { max_nodes: 1 } }), PIPELINE])
    assert.equal(section.code, 2, section.stderr)
    assert.match(section.stderr, /unknown section "cordinator" \(did you mean "coordinator"\?\)/)
    const mongo = await runCli(['ls', '--config', configFile({ mongo: { uri: 'mongodb://127.0.0.1:1/' } })], { env: NO_STORE })
    assert.equal(mongo.code, 2, mongo.stderr)
    assert.match(mongo.stderr, /unknown key "mongo\.uri" \(did you mean "url"\?\)/)
    // The sections as documented are fine, and a limit in them applies.
    const applied = await runCli(['validate', '--config', configFile({ coordinator: { max_nodes: 1 } }), PIPELINE])
    assert.equal(applied.code, 1, applied.stdout)
    assert.match(applied.stdout, /maxNodes/)
  })
})
