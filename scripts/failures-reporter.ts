/**
 * A node:test reporter that writes only the failed tests, each with its file, its error and the
 * start of its stack. `npm test` (scripts/test.ts) adds it next to the spec reporter and prints
 * what it wrote once more at the very end of the run: a CI log that keeps only its last lines
 * still shows why a test of an early pass failed.
 */
import { relative } from 'node:path'

interface FailEvent {
  type: string
  data: { name?: string; file?: string; line?: number; nesting?: number; details?: { error?: unknown; type?: string } }
}

const MAX_CHARS = 3000

function describeError(err: unknown, depth = 0): string {
  if (!(err instanceof Error) || depth > 3) return String(err)
  // node:test wraps a test's error in ERR_TEST_FAILURE with the original as `cause`.
  const wrapped = (err as { code?: string }).code === 'ERR_TEST_FAILURE' && err.cause !== undefined
  if (wrapped) return describeError(err.cause, depth)
  const stack = (err.stack ?? `${err.name}: ${err.message}`).split('\n').slice(0, 8).join('\n')
  const cause = err.cause === undefined ? '' : `\n  cause: ${describeError(err.cause, depth + 1)}`
  return `${stack}${cause}`
}

export default async function* failuresReporter(source: AsyncIterable<FailEvent>): AsyncGenerator<string> {
  for await (const event of source) {
    if (event.type !== 'test:fail') continue
    const { name, file, line, details } = event.data
    // A suite fails because a test in it failed: that test is reported already.
    if (details?.type === 'suite') continue
    const where = file ? `${relative(process.cwd(), file)}${line ? `:${line}` : ''}` : '(no file)'
    const text = `✖ ${where} — ${name ?? '(unnamed)'}\n${describeError(details?.error)}`
    yield `${text.length > MAX_CHARS ? `${text.slice(0, MAX_CHARS)}…` : text}\n\n`
  }
}
