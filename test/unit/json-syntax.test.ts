/**
 * src/util/json-syntax.ts: where a JSON text breaks (line, column, what was expected), without
 * quoting it; it agrees with JSON.parse on what is valid.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { jsonSyntaxError } from '../../src/util/json-syntax.ts'

test('valid JSON texts have no syntax error (as JSON.parse says)', () => {
  for (const text of ['{}', '[]', ' 0 ', '-1.5e+3', '"a\\u00e9\\n"', 'true', 'null', '{"a": [1, {"b": null}], "c": "d"}\n', '[[[]]]']) {
    assert.doesNotThrow(() => JSON.parse(text))
    assert.equal(jsonSyntaxError(text), null, text)
  }
})

test('broken texts: the first wrong character, by line and column, and what should be there', () => {
  const cases: [string, number, number, RegExp][] = [
    ['{\n  "password": S3cr3t"\n}', 2, 15, /a value should be here/],
    ['{"a": 1', 1, 8, /ends inside an object/],
    ['{"a" 1}', 1, 6, /':' should follow the key/],
    ['{"a": 1,}', 1, 9, /key should be here/],
    ['[1 2]', 1, 4, /',' or '\]' should be here/],
    ['{"a": "b\nc"}', 1, 9, /control character/],
    ['{"a": 01}', 1, 8, /',' or '}' should be here/],
    ['{"a": "\\x"}', 1, 8, /bad escape/],
    ['{} x', 1, 4, /more text after/],
    ['', 1, 1, /ends where a value should be/],
  ]
  for (const [text, line, column, problem] of cases) {
    assert.throws(() => JSON.parse(text), SyntaxError, text)
    const e = jsonSyntaxError(text)
    assert.ok(e !== null, text)
    assert.deepEqual([e.line, e.column], [line, column], text)
    assert.match(e.problem, problem, text)
    assert.ok(!e.problem.includes('S3cr3t'))
  }
})
