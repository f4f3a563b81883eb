/**
 * `flowkit dev` (embedded runtime) through the real binary: a handlers module and a graph run to
 * `finished` (exit 0) with per-node progress; a failing task exits 1; --json is a stream of task
 * events; an invalid graph lists its problems; a type no handler serves is refused up front; without --graph it runs until SIGINT (exit 0); an
 * interrupted task exits 130; `flowkit dev` alone runs the built-in example.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { CliProcess, FIXTURES, jsonLines, runCli, tempDir } from './helpers.ts'

const HANDLERS = join(FIXTURES, 'handlers.ts')

describe('flowkit dev', () => {
  test('a handlers module and a graph run to finished (exit 0) with live per-node progress', async () => {
    const r = await runCli(['dev', '--handlers', HANDLERS, '--graph', join(FIXTURES, 'pipeline.json'), '--concurrency', '2'])
    assert.equal(r.code, 0, r.stderr)
    const id = /task (\S+) submitted \(embedded runtime/.exec(r.stdout)?.[1]
    assert.ok(id, r.stdout)
    // Progress lines as nodes change (piped: one line per change), then the summary.
    assert.match(r.stdout, /\] source\s+running\s+epoch=1/)
    assert.match(r.stdout, /\] square\s+finished\s+epoch=1 batches=3 worker=dev-worker count=9/)
    assert.match(r.stdout, new RegExp(`\\] task ${id} finished\\n`))
    assert.match(r.stdout, new RegExp(`^task ${id} finished in `, 'm'))
  })

  test('a task that fails exits 1 and names the node and its error', async () => {
    const r = await runCli(['dev', '--handlers', HANDLERS, '--graph', join(FIXTURES, 'failing.json')])
    assert.equal(r.code, 1, r.stderr)
    assert.match(r.stdout, /\] explode\s+failed\s+epoch=1 .*error=type_error \(permanent\)/)
    assert.match(r.stdout, /^task \S+ failed in .*: node explode failed: type_error/m)
    assert.match(r.stdout, /^ {2}explode: type_error: boom: this handler always fails$/m)
  })

  test('--json: one task event per line, a snapshot first, the finished task last', async () => {
    const r = await runCli(['dev', '--json', '--handlers', HANDLERS, '--graph', join(FIXTURES, 'pipeline.json')])
    assert.equal(r.code, 0, r.stderr)
    const events = jsonLines(r.stdout)
    assert.equal(events[0]?.['type'], 'snapshot')
    const last = events.at(-1)
    assert.equal(last?.['type'], 'task')
    assert.equal(last?.['status'], 'finished')
    const square = events.filter((e) => e['type'] === 'node' && e['node_id'] === 'square').map((e) => e['status'])
    assert.deepEqual([square[0], square.at(-1)], ['running', 'finished'])
    assert.ok(events.every((e) => e['task_id'] === last?.['task_id']))
  })

  test('an invalid graph exits 1 with every problem and starts no task', async () => {
    const r = await runCli(['dev', '--handlers', HANDLERS, '--graph', join(FIXTURES, 'invalid.json')])
    assert.equal(r.code, 1, r.stderr)
    assert.match(r.stdout, /invalid graph, 2 problems/)
    assert.match(r.stdout, /unknown node "ghost"/)
    assert.doesNotMatch(r.stdout, /submitted/)
  })

  test('a graph with a node type no handler of the module serves exits 1 at once, naming type and node', async () => {
    const dir = tempDir()
    const graph = join(dir, 'norole.json')
    writeFileSync(graph, JSON.stringify({ nodes: [{ node_id: 'source', type: 'numbers' }, { node_id: 'odd', type: 'nosuchrole', depends_on: ['source'] }] }))
    const r = await runCli(['dev', '--handlers', HANDLERS, '--graph', graph])
    assert.equal(r.code, 1, r.stderr)
    assert.match(r.stderr, /no handler in \S+handlers\.ts serves type "nosuchrole" \(node odd\); its roles: /)
    assert.doesNotMatch(r.stdout, /submitted/)
  })

  test('a handlers module without processBatch is a usage error (exit 2); one with a syntax error exit 1 naming the line; a missing module exit 4', async () => {
    const dir = tempDir()
    writeFileSync(join(dir, 'bad.mjs'), 'export default { step: { run() {} } }\n')
    const bad = await runCli(['dev', '--handlers', join(dir, 'bad.mjs')])
    assert.equal(bad.code, 2, bad.stderr)
    assert.match(bad.stderr, /handler "step" needs a processBatch\(batch, ctx\) function/)
    // A syntax error names its line (TypeScript and JavaScript modules alike).
    for (const name of ['broken.ts', 'broken.mjs']) {
      writeFileSync(join(dir, name), 'export default {\n  step: { processBatch() { return {} } }\n}\n}\n')
      const broken = await runCli(['dev', '--handlers', join(dir, name)])
      assert.equal(broken.code, 1, broken.stderr)
      assert.match(broken.stderr, new RegExp(`cannot load handlers module \\S+${name.replace('.', '\\.')} \\(line 4\\): `))
    }
    const missing = await runCli(['dev', '--handlers', join(dir, 'nope.ts')])
    assert.equal(missing.code, 4, missing.stderr)
  })

  test('without --graph it runs until SIGINT, then stops cleanly (exit 0)', async () => {
    const p = new CliProcess(['dev', '--handlers', HANDLERS])
    try {
      await p.waitOut(/coordinator and worker running in this process \(roles numbers, square, boom; concurrency 4\); Ctrl-C stops/)
      const r = await p.stop('SIGINT')
      assert.equal(r.code, 0, p.stderr)
      assert.match(p.stdout, /flowkit dev: stopped/)
    } finally {
      p.kill()
    }
  })

  test('--json without --graph: dev.ready, then dev.stopped on SIGINT (as ui and coordinator do)', async () => {
    const p = new CliProcess(['dev', '--json', '--no-ui', '--handlers', HANDLERS])
    try {
      await p.waitOut(/"event":"dev\.ready"/)
      const r = await p.stop('SIGINT')
      assert.equal(r.code, 0, p.stderr)
      assert.deepEqual(jsonLines(p.stdout).map((e) => e['event']), ['dev.ready', 'dev.stopped'])
    } finally {
      p.kill()
    }
  })

  test('--keep: once the task ended the runtime stays up until SIGINT; the exit code is still the task\'s', async () => {
    const p = new CliProcess(['dev', '--keep', '--no-ui', '--handlers', HANDLERS, '--graph', join(FIXTURES, 'failing.json')])
    try {
      await p.waitOut(/flowkit dev: the task ended; the runtime stays up until Ctrl-C \(--keep\)/)
      assert.match(p.stdout, /task \S+ failed in /)
      const r = await p.stop('SIGINT')
      assert.equal(r.code, 1, p.stderr)
    } finally {
      p.kill()
    }
  })

  test('SIGINT while the task runs stops the runtime cleanly and exits 130', async () => {
    const gate = join(tempDir(), 'never')
    const p = new CliProcess(['dev', '--handlers', HANDLERS, '--graph', join(FIXTURES, 'pipeline.json')], { FLOWKIT_TEST_GATE: gate })
    try {
      await p.waitOut(/\] square\s+running\s+epoch=1 batches=0 worker=dev-worker/)
      const r = await p.stop('SIGINT')
      assert.equal(r.code, 130, p.stderr)
      assert.match(p.stderr, /^flowkit: interrupted: task \S+ was still running$/m)
    } finally {
      p.kill()
    }
  })

  test('`flowkit dev` alone runs the built-in example pipeline with live progress', async () => {
    const r = await runCli(['dev'])
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /flowkit dev: task \S+ submitted/)
    assert.match(r.stdout, /\] enrich\s+running\s+epoch=1 batches=1 /)
    assert.match(r.stdout, /task finished in \d+ ms/)
    assert.equal([...r.stdout.matchAll(/^\s+\w+\s+\d+ orders\s+[\d.]+$/gm)].length, 4)
  })
})
