/**
 * docs/cli.md's `flowkit dev` example is a working one: its handlers module (type-checked with the
 * project's compiler options) and its pipeline.json, run by the real binary, finish the task
 * (exit 0) with the progress the doc shows.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { runCli } from '../cli/helpers.ts'
import { typecheckExamples, writeExamples } from './examples.ts'
import { codeBlocks, readDoc } from './markdown.ts'

const DOC = 'docs/cli.md'

test(`${DOC}: the handlers module and pipeline.json of the dev example run to finished`, async () => {
  const blocks = codeBlocks(readDoc(DOC))
  const i = blocks.findIndex((b) => b.lang === 'ts' && b.code.startsWith('// handlers.ts'))
  assert.ok(i >= 0, 'the handlers module example')
  const handlers = blocks[i] as (typeof blocks)[number]
  const graph = blocks[i + 1]
  assert.equal(graph?.lang, 'json', 'pipeline.json follows the handlers module')
  const { dir, files, cleanup } = writeExamples('cli', [handlers])
  try {
    assert.deepEqual(typecheckExamples(files.map((f) => f.file)), [])
    const module = join(dir, 'handlers.ts')
    writeFileSync(module, readFileSync((files[0] as { runFile: string }).runFile, 'utf8'))
    const pipeline = join(dir, 'pipeline.json')
    writeFileSync(pipeline, graph.code)
    const r = await runCli(['dev', '--no-ui', '--handlers', module, '--graph', pipeline])
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`)
    assert.match(r.stdout, /\] source\s+finished\s+epoch=1 batches=3 worker=dev-worker count=9/)
    assert.match(r.stdout, /\] square\s+finished\s+epoch=1 batches=3 worker=dev-worker count=9/)
    assert.match(r.stdout, /^task \S+ finished in /m)
  } finally {
    cleanup()
  }
})
