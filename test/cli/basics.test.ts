/**
 * The CLI binary without services: --version, --help, usage errors (exit 2), validate (exit 0 /
 * 1 with every problem), --json output, missing files (exit 4), an unreachable store or bus
 * (exit 3, one line, within a deadline), --debug stacks.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { FIXTURES, ROOT, runCli, tempDir } from './helpers.ts'

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }
/** Refused at once on every host (nothing listens on port 1). */
const DEAD_MONGO = 'mongodb://127.0.0.1:1/flowkit?directConnection=true'
const NO_STORE = { FLOWKIT_MONGO_URL: undefined, FLOWKIT_KAFKA_BROKERS: undefined, FLOWKIT_CONFIG: undefined }

/** One `flowkit: …` line, an optional hint line, nothing else (no stack). */
function assertOneLineError(stderr: string, re: RegExp): void {
  const lines = stderr.trimEnd().split('\n')
  assert.match(lines[0] ?? '', /^flowkit: /, stderr)
  assert.match(lines[0] ?? '', re)
  assert.ok(lines.length <= 2, `at most an error line and a hint line, got:\n${stderr}`)
  if (lines[1] !== undefined) assert.match(lines[1], /^ {2}hint: /)
  assert.doesNotMatch(stderr, /^\s+at /m, 'no stack without --debug')
}

describe('flowkit CLI basics', () => {
  test('--version prints the package version; with --json a parseable document', async () => {
    const r = await runCli(['--version'])
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout.trim(), `flowkit ${pkg.version}`)
    const j = await runCli(['--version', '--json'])
    assert.equal(j.code, 0, j.stderr)
    assert.deepEqual(JSON.parse(j.stdout), { version: pkg.version })
  })

  test('--help lists every command; each command has its own --help (exit 0)', async () => {
    const main = await runCli(['--help'])
    assert.equal(main.code, 0)
    const commands = ['dev', 'coordinator', 'worker', 'ui', 'validate', 'submit', 'status', 'ls', 'cancel', 'workers', 'dlq', 'prune']
    for (const c of commands) assert.match(main.stdout, new RegExp(`^\\s+${c}\\b`, 'm'), `main help lists ${c}`)
    assert.match(main.stdout, /exit codes: 0 ok, 1 .*2 usage.*\n?.*3 cannot connect, 4 not found/s)
    const helps = await Promise.all(commands.map((c) => runCli([c, '--help'])))
    helps.forEach((h, i) => {
      assert.equal(h.code, 0, `${commands[i]} --help: ${h.stderr}`)
      assert.match(h.stdout, new RegExp(`^usage: flowkit ${commands[i]}\\b`), `${commands[i]} --help`)
    })
  })

  test('usage errors exit 2 with one line and a hint', async () => {
    const cases: [string[], RegExp][] = [
      [['frobnicate'], /unknown command "frobnicate"/],
      [['validat', 'g.json'], /unknown command "validat" \(did you mean "validate"\?\)/],
      [['validate'], /validate: missing <graph\.json>/],
      [['validate', 'a.json', 'b.json'], /unexpected argument "b\.json"/],
      [['cancel', ''], /cancel: <task-id> is empty/],
      [['ls', '--brokers', ''], /--brokers is empty/],
      [['ls', '--frob'], /ls: Unknown option '--frob'/],
      [['ls', '--limit', 'ten'], /--limit must be an integer/],
      [['ls', '--status', 'sleeping'], /unknown status "sleeping"/],
      [['dlq'], /dlq: missing subcommand/],
      [['dlq', 'retry', 'abc', '--all'], /dlq retry --all: unexpected argument "abc"/],
      [['dlq', 'retry', 'abc', '--limit', '3'], /dlq retry: --limit goes with --all/],
      [['worker'], /worker: --handlers <module> is required/],
      [['dev', '--graph', 'g.json'], /--graph needs --handlers/],
    ]
    const results = await Promise.all(cases.map(([args]) => runCli(args, { env: NO_STORE })))
    results.forEach((r, i) => {
      const [args, re] = cases[i]!
      assert.equal(r.code, 2, `flowkit ${args.join(' ')}: ${r.stderr}`)
      assertOneLineError(r.stderr, re)
      assert.equal(r.stdout, '')
    })
  })

  test('a store command without a configured store is a usage error naming FLOWKIT_MONGO_URL (older names too)', async () => {
    for (const args of [['ls'], ['tasks']]) {
      const r = await runCli(args, { env: NO_STORE })
      assert.equal(r.code, 2, r.stderr)
      assertOneLineError(r.stderr, /FLOWKIT_MONGO_URL/)
    }
  })

  test('validate: ok exits 0; an invalid graph exits 1 with every problem, its path and code', async () => {
    const ok = await runCli(['validate', join(FIXTURES, 'pipeline.json')])
    assert.equal(ok.code, 0, ok.stderr)
    // source → square is declared twice (depends_on and edges_ex): one link.
    assert.match(ok.stdout, /pipeline\.json: ok \(2 nodes, 1 dependency link\)/)
    const bad = await runCli(['validate', join(FIXTURES, 'invalid.json')])
    assert.equal(bad.code, 1, bad.stderr)
    assert.match(bad.stdout, /invalid graph, 2 problems/)
    assert.match(bad.stdout, /nodes\[0\]\.depends_on\[0\]: node "a" depends on unknown node "ghost"\s+\[GRAPH_UNKNOWN_NODE\]/)
    assert.match(bad.stdout, /dependency cycle: b -> c -> b\s+\[GRAPH_CYCLE\]/)
    assertOneLineError(bad.stderr, /invalid graph \(2 problems\)/)
  })

  test('validate --json: parseable documents for ok and for the problems', async () => {
    const ok = await runCli(['validate', join(FIXTURES, 'pipeline.json'), '--json'])
    assert.equal(ok.code, 0)
    assert.deepEqual(JSON.parse(ok.stdout), { ok: true, file: join(FIXTURES, 'pipeline.json'), nodes: 2, node_ids: ['source', 'square'] })
    const bad = await runCli(['--json', 'validate', join(FIXTURES, 'invalid.json')])
    assert.equal(bad.code, 1)
    const doc = JSON.parse(bad.stdout) as { ok: boolean; errors: { code: string; path: string }[] }
    assert.equal(doc.ok, false)
    assert.deepEqual(doc.errors.map((e) => [e.code, e.path]), [
      ['GRAPH_UNKNOWN_NODE', 'nodes[0].depends_on[0]'],
      ['GRAPH_CYCLE', 'nodes[1].depends_on[0]'],
    ])
    const err = JSON.parse(bad.stderr) as { error: { exit_code: number; code: string } }
    assert.equal(err.error.exit_code, 1)
    assert.equal(err.error.code, 'GRAPH_INVALID', 'two problems of different codes: the graph is invalid')
  })

  test('validate: a missing file exits 4, a file that is not JSON exits 1, params that are not an object exit 1', async () => {
    const dir = tempDir()
    const missing = await runCli(['validate', join(dir, 'nope.json')])
    assert.equal(missing.code, 4)
    assertOneLineError(missing.stderr, /graph file .*nope\.json not found/)
    writeFileSync(join(dir, 'broken.json'), '{"nodes": [')
    const broken = await runCli(['validate', join(dir, 'broken.json')])
    assert.equal(broken.code, 1)
    assertOneLineError(broken.stderr, /broken\.json is not valid JSON at line 1, column 12: the text ends where a value should be/)
    writeFileSync(join(dir, 'params.json'), '[1, 2]')
    const params = await runCli(['validate', join(FIXTURES, 'pipeline.json'), '--params', join(dir, 'params.json')])
    assert.equal(params.code, 1)
    assertOneLineError(params.stderr, /params file .* must hold a JSON object/)
  })

  test('a bad FLOWKIT_LOG_LEVEL stops every command at startup, once prefixed, naming the variable', async () => {
    for (const args of [['validate', join(FIXTURES, 'pipeline.json')], ['dev', '--no-ui']]) {
      const r = await runCli(args, { env: { FLOWKIT_LOG_LEVEL: 'verbose' } })
      assert.equal(r.code, 2, args.join(' '))
      assert.match(r.stderr, /^flowkit: FLOWKIT_LOG_LEVEL="verbose" is not a log level; valid levels: /)
      assert.doesNotMatch(r.stderr, /flowkit: flowkit:/)
    }
  })

  test('a config file that is not JSON: where it breaks, never its text (it holds secrets)', async () => {
    const dir = tempDir()
    const config = join(dir, 'flowkit.json')
    writeFileSync(config, '{\n  "kafka": { "brokers": "localhost:9092", "sasl": { "mechanism": "plain", "username": "u", "password": S3cr3tPa55" } }\n}\n')
    const r = await runCli(['validate', '--config', config, join(FIXTURES, 'pipeline.json')])
    assert.equal(r.code, 2)
    assertOneLineError(r.stderr, /flowkit\.json is not valid JSON at line 2, column \d+: a value should be here .*its text is not shown/)
    assert.doesNotMatch(r.stderr + r.stdout, /S3cr3t|assword/)
    // A config path that cannot be read (a directory) is a usage error too.
    const dirConfig = await runCli(['validate', '--config', dir, join(FIXTURES, 'pipeline.json')])
    assert.equal(dirConfig.code, 2)
    assertOneLineError(dirConfig.stderr, /config file .* cannot be read: EISDIR/)
  })

  test('an unreachable MongoDB is one line and exit 3 within the connect deadline (no 30 s wait, no stack)', async () => {
    const [status, ls] = await Promise.all([
      runCli(['status', 'some-task', '--connect-timeout', '2'], { env: { FLOWKIT_MONGO_URL: DEAD_MONGO }, timeoutMs: 20_000 }),
      runCli(['ls', '--json'], { env: { FLOWKIT_MONGO_URL: DEAD_MONGO }, timeoutMs: 20_000 }),
    ])
    assert.equal(status.code, 3, status.stderr)
    assertOneLineError(status.stderr, /cannot connect to MongoDB at mongodb:\/\/127\.0\.0\.1:1\//)
    assert.ok(status.ms < 8000, `answered in ${Math.round(status.ms)} ms`)
    assert.equal(ls.code, 3, ls.stderr)
    assert.ok(ls.ms < 10_000, `answered in ${Math.round(ls.ms)} ms (default deadline 4 s)`)
    const err = JSON.parse(ls.stderr) as { error: { exit_code: number; code: string; hint: string } }
    assert.equal(err.error.exit_code, 3)
    assert.equal(err.error.code, 'STORE_UNAVAILABLE')
    assert.match(err.error.hint, /FLOWKIT_MONGO_URL/)
  })

  test('credentials in the MongoDB URL never appear in the error', async () => {
    const r = await runCli(['ls', '--connect-timeout', '1'], { env: { FLOWKIT_MONGO_URL: 'mongodb://alice:s3cr3t-pw@127.0.0.1:1/flowkit?directConnection=true' }, timeoutMs: 20_000 })
    assert.equal(r.code, 3)
    assert.doesNotMatch(r.stderr, /s3cr3t-pw/)
  })

  test('coordinator and worker exit 3 at once when Kafka and MongoDB are unreachable', async () => {
    const env = { FLOWKIT_MONGO_URL: DEAD_MONGO, FLOWKIT_KAFKA_BROKERS: '127.0.0.1:1' }
    const [c, w] = await Promise.all([
      runCli(['coordinator', '--connect-timeout', '2'], { env, timeoutMs: 20_000 }),
      runCli(['worker', '--handlers', join(FIXTURES, 'handlers.ts'), '--connect-timeout', '2'], { env, timeoutMs: 20_000 }),
    ])
    for (const r of [c, w]) {
      assert.equal(r.code, 3, r.stderr)
      assertOneLineError(r.stderr, /cannot connect to (MongoDB|Kafka)/)
      assert.ok(r.ms < 8000, `answered in ${Math.round(r.ms)} ms`)
    }
  })

  test('--debug adds the stack to the error', async () => {
    const r = await runCli(['ls', '--debug', '--connect-timeout', '1'], { env: { FLOWKIT_MONGO_URL: DEAD_MONGO }, timeoutMs: 20_000 })
    assert.equal(r.code, 3)
    assert.match(r.stderr, /^flowkit: cannot connect to MongoDB/)
    assert.match(r.stderr, /^\s+at /m)
  })

  test('a worker whose handlers module lacks a requested role is a usage error', async () => {
    const r = await runCli(['worker', '--handlers', join(FIXTURES, 'handlers.ts'), '--roles', 'numbers,ghost'], { env: NO_STORE })
    assert.equal(r.code, 2, r.stderr)
    assertOneLineError(r.stderr, /has no handler for role ghost \(it has: numbers, square, boom\)/)
  })
})
