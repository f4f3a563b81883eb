/**
 * Where a JSON text is broken, without quoting it. `JSON.parse`'s messages quote the text around
 * the error and often give no position (`Unexpected token 'S', ..."assword": S3cr3t"... is not
 * valid JSON`): a config file's secret would be printed, cut where no redaction rule matches it.
 * This scanner finds the first syntax error's line and column and says what was expected.
 */

export interface JsonSyntaxError {
  /** 1-based line and column (in UTF-16 code units) of the first character that is wrong. */
  line: number
  column: number
  /** What is wrong there, without the text itself. */
  problem: string
}

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y
const ESCAPES = new Set(['"', '\\', '/', 'b', 'f', 'n', 'r', 't'])
/** Deeper than this, the scanner gives up (null) rather than recursing further. */
const MAX_DEPTH = 500

class Broken {
  readonly offset: number
  readonly problem: string
  constructor(offset: number, problem: string) {
    this.offset = offset
    this.problem = problem
  }
}

/** The first syntax error of `text` as JSON, or null when it has none (or nests too deep to tell). */
export function jsonSyntaxError(text: string): JsonSyntaxError | null {
  let i = 0
  const n = text.length
  const fail = (problem: string): never => {
    throw new Broken(i, problem)
  }
  const space = (): void => {
    while (i < n && (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r')) i++
  }
  const string = (): void => {
    i++ // the opening quote
    while (i < n) {
      const c = text.charCodeAt(i)
      if (c === 34) {
        i++
        return
      }
      if (c === 92) {
        const e = text[i + 1] ?? ''
        if (e === 'u' ? !/^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6)) : !ESCAPES.has(e)) fail('a bad escape in a string')
        i += e === 'u' ? 6 : 2
        continue
      }
      if (c < 0x20) fail('a control character (a line break?) inside a string')
      i++
    }
    fail('a string that never ends')
  }
  const value = (depth: number): void => {
    if (depth > MAX_DEPTH) throw new Broken(-1, '')
    space()
    if (i >= n) fail('the text ends where a value should be')
    const c = text[i]
    if (c === '{' || c === '[') {
      const close = c === '{' ? '}' : ']'
      i++
      space()
      if (text[i] === close) {
        i++
        return
      }
      for (;;) {
        if (c === '{') {
          space()
          if (text[i] !== '"') fail(i >= n ? 'the text ends inside an object' : 'a key should be here (a string in double quotes)')
          string()
          space()
          if (text[i] !== ':') fail("a ':' should follow the key")
          i++
        }
        value(depth + 1)
        space()
        if (text[i] === ',') {
          i++
          continue
        }
        if (text[i] === close) {
          i++
          return
        }
        fail(i >= n ? `the text ends inside ${c === '{' ? 'an object' : 'an array'}` : `a ',' or '${close}' should be here`)
      }
    }
    if (c === '"') {
      string()
      return
    }
    if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) {
      NUMBER.lastIndex = i
      if (!NUMBER.test(text)) fail('a malformed number')
      i = NUMBER.lastIndex
      return
    }
    for (const lit of ['true', 'false', 'null']) {
      if (text.startsWith(lit, i)) {
        i += lit.length
        return
      }
    }
    fail("a value should be here (a string in double quotes, a number, true, false, null, '{' or '[')")
  }
  try {
    value(0)
    space()
    if (i < n) fail('more text after the JSON value')
    return null
  } catch (err) {
    if (!(err instanceof Broken) || err.offset < 0) return null
    const before = text.slice(0, err.offset)
    const line = before.split('\n').length
    return { line, column: err.offset - before.lastIndexOf('\n'), problem: err.problem }
  }
}

/** ` at line L, column C: <problem>` for a text JSON.parse refused, or '' when the scanner finds nothing. */
export function whereJsonBreaks(text: string): string {
  const e = jsonSyntaxError(text)
  return e === null ? '' : ` at line ${e.line}, column ${e.column}: ${e.problem}`
}
