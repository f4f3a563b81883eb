/**
 * Every TypeScript example of docs/handlers.md is a complete program: this test writes each
 * ```ts block to a file of its own, runs it with this Node on the memory runtime (a failed
 * `assert` in it, an exception or a hang fails the test), and type-checks them all with the
 * project's compiler options. Examples run two at a time.
 *
 * Measured here (2 cores, loaded): 13-15 s in all, most of it the examples' Node startups
 * and the type check (5-8 s).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { runExample, typecheckExamples, writeExamples } from './examples.ts'
import { codeBlocks, readDoc } from './markdown.ts'

const DOC = 'docs/handlers.md'
const blocks = codeBlocks(readDoc(DOC)).filter((b) => b.lang === 'ts' || b.lang === 'typescript')
const { files, cleanup } = writeExamples('handlers', blocks)

test.after(cleanup)

test(`${DOC} has its examples, each a program that imports flowkit`, () => {
  assert.ok(blocks.length >= 10, `expected at least 10 examples, found ${blocks.length}`)
  for (const b of blocks) assert.match(b.code, /from 'flowkit'/, `${DOC}:${b.line} (${b.heading}) does not import flowkit`)
})

test(`${DOC}: every example runs to its end`, { concurrency: 2 }, async (t) => {
  await Promise.all(
    files.map((f) =>
      t.test(`${DOC}:${f.block.line} (${f.block.heading})`, async (st) => {
        const r = await runExample(f.runFile)
        st.diagnostic(`${r.ms} ms`)
        assert.equal(r.code, 0, `${DOC}:${f.block.line} exited with ${r.code ?? r.signal}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`)
      }),
    ),
  )
})

test(`${DOC}: every example type-checks`, () => {
  const errors = typecheckExamples(files.map((f) => f.file))
  assert.deepEqual(errors, [], errors.join('\n'))
})
